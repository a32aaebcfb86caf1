// `flotilla vm workload`'s options: each shape, a trace file, and what is refused and why.
import FlotillaAPI
import FlotillaCLI
import Testing

private let gib: UInt64 = 1 << 30

private func workload(
    demand: String? = nil, ramp: String? = nil, periodic: String? = nil, trace: String? = nil, rate: UInt64? = nil
) -> Result<WorkloadView, WorkloadViewProblem> {
    WorkloadArguments.workload(
        demand: demand, ramp: ramp, periodic: periodic, trace: trace.map { ("load.csv", $0) }, dirtyPagesPerSecond: rate
    )
}

@Test func eachShapeReadsFromItsOption() throws {
    #expect(try workload(demand: "2G", rate: 900).get() == WorkloadView(demand: 2 * gib, dirtyPagesPerSecond: 900))
    #expect(try workload(ramp: "1G:3G:60s").get().ramp == .init(from: gib, to: 3 * gib, seconds: 60))
    #expect(
        try workload(periodic: "512M:1.5G:120").get().periodic == .init(low: gib / 2, high: 3 * gib / 2, seconds: 120))
}

@Test func aTraceFileIsReadLineByLineWithAHeaderAndComments() throws {
    let text = "seconds,size\n0,1G   # boot\n\n30, 2.5G\n60,2G\r\n"
    #expect(
        try workload(trace: text).get().trace == [
            .init(seconds: 0, bytes: gib), .init(seconds: 30, bytes: 5 * gib / 2), .init(seconds: 60, bytes: 2 * gib),
        ])
}

@Test(arguments: [
    (nil, nil, "give one of --demand 2G"),
    ("1X", nil, "--demand \"1X\" is not a size"),
    (nil, "1G:3G", "--ramp \"1G:3G\" is not SIZE:SIZE:SECONDS; write it like 1G:3G:60s"),
    (nil, "1G:3G:0s", "a ramp's length must be more than 0 s"),
])
func badOptionsSayWhatIsWrong(_ demand: String?, _ ramp: String?, _ problem: String) {
    guard case .failure(let failure) = workload(demand: demand, ramp: ramp) else {
        Issue.record("accepted")
        return
    }
    #expect(failure.description.hasPrefix(problem), "\(failure)")
}

@Test func aTraceLineThatIsNotAPointNamesTheFileAndLine() {
    guard case .failure(let failure) = workload(trace: "0,1G\n30;2G\n") else {
        Issue.record("accepted")
        return
    }
    #expect(failure.description == #"load.csv line 2: "30;2G" is not seconds,size (e.g. 30,2.5G)"#)
    guard case .failure(let unordered) = workload(trace: "0,1G\n30,2G\n20,3G\n") else {
        Issue.record("accepted")
        return
    }
    #expect(unordered.description.hasPrefix("trace point 3 at 20.0 seconds is not after point 2"))
}
