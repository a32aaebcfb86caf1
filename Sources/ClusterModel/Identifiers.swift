// Identifiers and counters shared by every Flotilla module (DESIGN.md §2).

/// One `flotilla node` process, as Raft and the cluster state know it.
///
/// Raft wants a small, totally ordered id; operators want a name. The id is a number and prints
/// as `n<number>`, which is also the form configuration files and the CLI accept.
public struct NodeID: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByIntegerLiteral
{
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public init(integerLiteral value: UInt64) { self.rawValue = value }

    /// Parses `n3` or `3`; returns nil for anything else (including `n0`: 0 means "no node" in Raft).
    public init?(parsing text: some StringProtocol) {
        let text = Substring(text)
        let digits = text.hasPrefix("n") ? text.dropFirst() : text
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII }), let value = UInt64(digits), value != 0 else {
            return nil
        }
        self.rawValue = value
    }

    public var description: String { "n\(rawValue)" }

    public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A Raft term: a logical clock that only grows; at most one leader is elected per term.
public struct Term: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByIntegerLiteral
{
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public init(integerLiteral value: UInt64) { self.rawValue = value }

    public var description: String { String(rawValue) }
    /// The term after this one (a candidate's new term).
    public var next: Term { Term(rawValue + 1) }

    public static func < (lhs: Term, rhs: Term) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A position in the replicated log. Index 0 is "before the first entry"; the first entry is 1.
public struct LogIndex: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByIntegerLiteral
{
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public init(integerLiteral value: UInt64) { self.rawValue = value }

    public var description: String { String(rawValue) }

    public static func < (lhs: LogIndex, rhs: LogIndex) -> Bool { lhs.rawValue < rhs.rawValue }
    public static func + (lhs: LogIndex, rhs: UInt64) -> LogIndex { LogIndex(lhs.rawValue + rhs) }
    /// Precondition: `rhs <= lhs.rawValue`; a log index never goes below zero.
    public static func - (lhs: LogIndex, rhs: UInt64) -> LogIndex {
        precondition(rhs <= lhs.rawValue, "log index \(lhs) - \(rhs) would be negative")
        return LogIndex(lhs.rawValue - rhs)
    }
    /// The number of entries from `rhs` (exclusive) to `lhs` (inclusive); zero when `lhs <= rhs`.
    public static func - (lhs: LogIndex, rhs: LogIndex) -> UInt64 {
        lhs.rawValue > rhs.rawValue ? lhs.rawValue - rhs.rawValue : 0
    }
}
