// The simulator's readable trace: the last events before a failure, or every event when replaying.

/// A ring of the most recent trace lines, optionally echoing every line as it is recorded.
public struct SimulationTrace: Sendable {
    public let capacity: Int
    /// When set, every line is also printed as it happens (the replay of one seed).
    public let echo: Bool
    private var lines: [String] = []
    private var start = 0
    public private(set) var recordedCount = 0

    public init(capacity: Int, echo: Bool) {
        precondition(capacity > 0, "a trace must keep at least one line")
        self.capacity = capacity
        self.echo = echo
        lines.reserveCapacity(capacity)
    }

    public mutating func record(_ text: String) {
        recordedCount += 1
        if echo { print(text) }
        if lines.count < capacity {
            lines.append(text)
        } else {
            lines[start] = text
            start = (start + 1) % capacity
        }
    }

    /// The kept lines, oldest first.
    public var recentLines: [String] {
        Array(lines[start...] + lines[..<start])
    }
}
