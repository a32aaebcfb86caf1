import ClusterModel
// `flotilla vm workload`'s options as a workload: --demand, --ramp, --periodic or a trace from a CSV file.
public import FlotillaAPI

/// Reads the workload options of the CLI into the API's `WorkloadView`.
///
/// `--demand 2G`; `--ramp 1G:3G:60s` (from, to, over); `--periodic 1G:3G:120s` (low, high, period);
/// `--trace FILE.csv` with lines `seconds,size` (`0,1G`), a header line and `#` comments allowed.
/// Pure: the CSV's text is an argument, so the command reads the file and this reads its lines.
public enum WorkloadArguments {
    /// The workload, or one line saying which option is wrong and how to write it.
    public static func workload(
        demand: String?, ramp: String?, periodic: String?, trace: (file: String, text: String)?,
        dirtyPagesPerSecond: UInt64?
    ) -> Result<WorkloadView, WorkloadViewProblem> {
        let given = [demand != nil, ramp != nil, periodic != nil, trace != nil].filter { $0 }.count
        guard given == 1 else {
            return .failure(
                WorkloadViewProblem(
                    description: "give one of --demand 2G, --ramp 1G:3G:60s, --periodic 1G:3G:120s or --trace FILE.csv")
            )
        }
        var view = WorkloadView(dirtyPagesPerSecond: dirtyPagesPerSecond)
        if let demand {
            guard let bytes = ByteCount(parsing: demand)?.bytes else {
                return .failure(WorkloadViewProblem(description: ByteCount.problem(demand, what: "--demand")))
            }
            view.demand = bytes
        } else if let ramp {
            guard let (from, to, seconds) = triple(ramp) else { return .failure(shape("--ramp", ramp, "1G:3G:60s")) }
            view.ramp = WorkloadView.Ramp(from: from, to: to, seconds: seconds)
        } else if let periodic {
            guard let (low, high, seconds) = triple(periodic) else {
                return .failure(shape("--periodic", periodic, "1G:3G:120s"))
            }
            view.periodic = WorkloadView.Periodic(low: low, high: high, seconds: seconds)
        } else if let trace {
            switch points(trace.text, file: trace.file) {
            case .success(let points): view.trace = points
            case .failure(let problem): return .failure(problem)
            }
        }
        // The same checks the server makes, so a mistake is told before anything is sent.
        if case .failure(let problem) = view.workload() { return .failure(problem) }
        return .success(view)
    }

    /// `SIZE:SIZE:SECONDSs`.
    private static func triple(_ text: String) -> (UInt64, UInt64, Double)? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let first = ByteCount(parsing: parts[0])?.bytes,
            let second = ByteCount(parsing: parts[1])?.bytes, let seconds = self.seconds(parts[2])
        else { return nil }
        return (first, second, seconds)
    }

    /// `60`, `60s` or `1.5s`.
    private static func seconds(_ text: Substring) -> Double? {
        let trimmed = text.hasSuffix("s") ? text.dropLast() : text
        guard let seconds = Double(trimmed), seconds.isFinite else { return nil }
        return seconds
    }

    private static func shape(_ option: String, _ text: String, _ example: String) -> WorkloadViewProblem {
        WorkloadViewProblem(description: "\(option) \"\(text)\" is not SIZE:SIZE:SECONDS; write it like \(example)")
    }

    /// The points of a trace file: `seconds,size` per line.
    private static func points(_ text: String, file: String) -> Result<[WorkloadView.TracePoint], WorkloadViewProblem> {
        var points: [WorkloadView.TracePoint] = []
        var sawLine = false
        for (number, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated()
        {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
                .filter { $0 != " " && $0 != "\t" }
            if line.isEmpty { continue }
            defer { sawLine = true }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            guard fields.count == 2, let seconds = seconds(fields[0]), let bytes = ByteCount(parsing: fields[1])?.bytes
            else {
                // A first line that is not a point is a header.
                if !sawLine { continue }
                return .failure(
                    WorkloadViewProblem(
                        description: "\(file) line \(number + 1): \"\(line)\" is not seconds,size (e.g. 30,2.5G)"))
            }
            points.append(WorkloadView.TracePoint(seconds: seconds, bytes: bytes))
        }
        return .success(points)
    }
}
