// What a VM's guest does with memory: its demand over time and how fast it dirties pages (DESIGN.md §10).

/// A VM's workload, part of its replicated spec: it moves with the VM on failover and migration.
///
/// `demand` is the memory the guest has committed at a time since the guest started; the node's
/// dynamic-memory balancer sizes the VM from it. `dirtyPagesPerSecond` is how many 4 KiB pages the
/// guest writes per second inside what it has committed: the rate a live migration must outrun.
/// Pure: time is an argument.
public struct Workload: Hashable, Sendable {
    /// How demand moves with time.
    public enum Demand: Hashable, Sendable {
        /// The same demand all the time.
        case constant(UInt64)
        /// From `from` to `to` in a straight line over `over`, then `to`.
        case ramp(from: UInt64, to: UInt64, over: Duration)
        /// Between `low` and `high` and back in a triangle, once every `period`, starting at `low`.
        case periodic(low: UInt64, high: UInt64, period: Duration)
        /// Through the points in a straight line from each to the next; the first point's demand
        /// before it, the last one's after it. Times strictly increase.
        case trace([TracePoint])
    }

    /// One point of a demand trace: `demand` bytes at `at` since the guest started.
    public struct TracePoint: Hashable, Sendable {
        public var at: Duration
        public var demand: UInt64

        public init(at: Duration, demand: UInt64) {
            self.at = at
            self.demand = demand
        }
    }

    public var demand: Demand
    public var dirtyPagesPerSecond: UInt64

    /// A guest's dirtying rate unless told otherwise: 500 pages (2 MiB) per second.
    public static let defaultDirtyPagesPerSecond: UInt64 = 500
    /// The most points a trace may have: a trace is replicated in the log with its VM.
    public static let maxTracePoints = 10_000
    /// The highest dirtying rate: 4 GiB/s of pages, beyond any network a migration could use.
    public static let maxDirtyPagesPerSecond: UInt64 = 1 << 20
    /// The longest ramp, period or trace time: a year.
    public static let longestSpan = Duration.seconds(365 * 24 * 3600)

    public init(demand: Demand, dirtyPagesPerSecond: UInt64 = defaultDirtyPagesPerSecond) {
        self.demand = demand
        self.dirtyPagesPerSecond = dirtyPagesPerSecond
    }

    /// What a VM runs until its workload is set: half its startup memory, the default dirtying rate.
    public static func standard(for memory: MemorySettings) -> Workload {
        Workload(demand: .constant(memory.startup / 2))
    }

    /// The demand at `elapsed` since the guest started (a negative time counts as the start).
    public func demand(at elapsed: Duration) -> UInt64 {
        let elapsed = max(elapsed, .zero)
        switch demand {
        case .constant(let bytes):
            return bytes
        case .ramp(let from, let to, let span):
            guard span > .zero, elapsed < span else { return to }
            return Self.between(from, to, fraction: elapsed / span)
        case .periodic(let low, let high, let period):
            guard period > .zero else { return low }
            let phase = (elapsed / period).truncatingRemainder(dividingBy: 1)
            // Up in the first half of the period, down in the second.
            return Self.between(low, high, fraction: phase < 0.5 ? phase * 2 : (1 - phase) * 2)
        case .trace(let points):
            guard let first = points.first, let last = points.last else { return 0 }
            if elapsed <= first.at { return first.demand }
            if elapsed >= last.at { return last.demand }
            // The last point at or before `elapsed`: points are few and strictly increasing.
            var low = 0
            var high = points.count - 1
            while high - low > 1 {
                let middle = (low + high) / 2
                if points[middle].at <= elapsed { low = middle } else { high = middle }
            }
            let (before, after) = (points[low], points[high])
            return Self.between(before.demand, after.demand, fraction: (elapsed - before.at) / (after.at - before.at))
        }
    }

    /// Why the workload cannot run, or nil when it can: sizes within a VM's possible memory, spans
    /// within a year, a trace's times from zero up and strictly increasing.
    public var problem: String? {
        let largest = MemorySettings.largestBytes
        func tooLarge(_ bytes: UInt64, _ what: String) -> String? {
            bytes > largest ? "\(what) \(ByteCount(bytes)) is above the limit of \(ByteCount(largest))" : nil
        }
        func badSpan(_ span: Duration, _ what: String) -> String? {
            span > .zero && span <= Self.longestSpan
                ? nil : "\(what) must be more than 0 s and at most a year, got \(span)"
        }
        guard dirtyPagesPerSecond <= Self.maxDirtyPagesPerSecond else {
            return "a dirty rate of \(dirtyPagesPerSecond) pages/s is above the limit of \(Self.maxDirtyPagesPerSecond)"
        }
        switch demand {
        case .constant(let bytes):
            return tooLarge(bytes, "demand")
        case .ramp(let from, let to, let span):
            return tooLarge(from, "a ramp's start") ?? tooLarge(to, "a ramp's end") ?? badSpan(span, "a ramp's length")
        case .periodic(let low, let high, let period):
            if let problem = tooLarge(high, "a period's high") ?? badSpan(period, "a period") { return problem }
            return low <= high ? nil : "a period's low \(ByteCount(low)) is above its high \(ByteCount(high))"
        case .trace(let points):
            guard !points.isEmpty else { return "a trace needs at least one point" }
            guard points.count <= Self.maxTracePoints else {
                return "a trace has \(points.count) points; at most \(Self.maxTracePoints) are allowed"
            }
            for (index, point) in points.enumerated() {
                if let problem = tooLarge(point.demand, "the demand of trace point \(index + 1)") { return problem }
                guard point.at >= .zero, point.at <= Self.longestSpan else {
                    return "trace point \(index + 1) is at \(point.at); times run from 0 s to a year"
                }
                if index > 0, point.at <= points[index - 1].at {
                    return "trace point \(index + 1) at \(point.at) is not after point \(index) at "
                        + "\(points[index - 1].at); times must increase"
                }
            }
            return nil
        }
    }

    /// `low` + `fraction` of the way to `high` (either may be the larger), rounded down to whole bytes.
    private static func between(_ low: UInt64, _ high: UInt64, fraction: Double) -> UInt64 {
        let fraction = min(max(fraction, 0), 1)
        if high >= low { return low + UInt64(Double(high - low) * fraction) }
        return low - UInt64(Double(low - high) * fraction)
    }
}

extension Workload {
    /// The workload's binary form (in log entries and snapshots): the demand's kind and figures,
    /// durations in milliseconds, then the dirtying rate.
    public func encode(into writer: inout ByteWriter) {
        switch demand {
        case .constant(let bytes):
            writer.write(UInt8(1))
            writer.writeVarint(bytes)
        case .ramp(let from, let to, let span):
            writer.write(UInt8(2))
            writer.writeVarint(from)
            writer.writeVarint(to)
            writer.writeVarint(span.wholeMilliseconds)
        case .periodic(let low, let high, let period):
            writer.write(UInt8(3))
            writer.writeVarint(low)
            writer.writeVarint(high)
            writer.writeVarint(period.wholeMilliseconds)
        case .trace(let points):
            writer.write(UInt8(4))
            writer.writeVarint(points.count)
            for point in points {
                writer.writeVarint(point.at.wholeMilliseconds)
                writer.writeVarint(point.demand)
            }
        }
        writer.writeVarint(dirtyPagesPerSecond)
    }

    public init(from reader: inout ByteReader) throws(WireFormatError) {
        let demand: Demand
        switch try reader.readByte() {
        case 1:
            demand = .constant(try reader.readVarint())
        case 2:
            demand = .ramp(
                from: try reader.readVarint(), to: try reader.readVarint(), over: .milliseconds(try reader.readVarint())
            )
        case 3:
            demand = .periodic(
                low: try reader.readVarint(), high: try reader.readVarint(),
                period: .milliseconds(try reader.readVarint()))
        case 4:
            let count = try reader.readCount(elementBytes: 2)
            var points: [TracePoint] = []
            points.reserveCapacity(count)
            for _ in 0..<count {
                points.append(TracePoint(at: .milliseconds(try reader.readVarint()), demand: try reader.readVarint()))
            }
            demand = .trace(points)
        case let kind:
            throw WireFormatError("workload demand kind \(kind) is not known (this build reads 1 to 4)")
        }
        self.init(demand: demand, dirtyPagesPerSecond: try reader.readVarint())
    }
}

extension Duration {
    /// Whole milliseconds, rounded down; a negative span counts as zero.
    fileprivate var wholeMilliseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) * 1000 + UInt64(attoseconds / 1_000_000_000_000_000)
    }
}

extension Workload: CustomStringConvertible {
    /// `demand 2.0 GiB`, `ramp 1.0 GiB → 3.0 GiB over 60 s`, …, then the dirtying rate.
    public var description: String {
        let shape: String
        switch demand {
        case .constant(let bytes): shape = "demand \(ByteCount(bytes))"
        case .ramp(let from, let to, let span): shape = "ramp \(ByteCount(from)) → \(ByteCount(to)) over \(span)"
        case .periodic(let low, let high, let period):
            shape = "periodic \(ByteCount(low)) – \(ByteCount(high)) every \(period)"
        case .trace(let points):
            shape =
                "trace of \(points.count) points"
                + (points.first.map { first in
                    ", \(ByteCount(first.demand)) at \(first.at) to \(ByteCount(points.last!.demand)) at \(points.last!.at)"
                } ?? "")
        }
        return "\(shape), dirtying \(dirtyPagesPerSecond) pages/s"
    }
}
