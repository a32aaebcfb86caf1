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

/// A VM's id, assigned by the state when the VM is created (1, 2, 3, … never reused).
///
/// The name is the operator's handle and may be reused after a delete; the id is what epochs,
/// migrations, events and disk journals refer to, so it never is.
public struct VMID: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByIntegerLiteral
{
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public init(integerLiteral value: UInt64) { self.rawValue = value }

    /// Parses `vm3` or `3`; nil for anything else (including 0, which no VM gets).
    public init?(parsing text: some StringProtocol) {
        let text = Substring(text)
        let digits = text.hasPrefix("vm") ? text.dropFirst(2) : text
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII }), let value = UInt64(digits), value != 0 else {
            return nil
        }
        self.rawValue = value
    }

    public var description: String { "vm\(rawValue)" }
    public static func < (lhs: VMID, rhs: VMID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A VM's ownership counter: bumped on every change of owner, never lowered. Every disk write
/// carries it, so a write from an older owner is recognised and refused (a fencing token).
public struct Epoch: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByIntegerLiteral
{
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public init(integerLiteral value: UInt64) { self.rawValue = value }

    /// The epoch of the VM's next ownership.
    public var next: Epoch { Epoch(rawValue + 1) }

    public var description: String { String(rawValue) }
    public static func < (lhs: Epoch, rhs: Epoch) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A migration's id, assigned by the state when the migration begins.
public struct MigrationID: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByIntegerLiteral
{
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public init(integerLiteral value: UInt64) { self.rawValue = value }

    public var description: String { "mig\(rawValue)" }
    public static func < (lhs: MigrationID, rhs: MigrationID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A Cluster Shared Volume's id, chosen by the operator (`csv1`).
public struct VolumeID: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public var rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public var description: String { rawValue }
    public static func < (lhs: VolumeID, rhs: VolumeID) -> Bool { lhs.rawValue < rhs.rawValue }

    public static let maxLength = 32

    /// Why the id is not acceptable, or nil when it is: it names a directory's metadata and
    /// appears in URLs, so it stays short, lowercase and unambiguous.
    public var problem: String? {
        let text = rawValue
        guard !text.isEmpty, text.utf8.count <= Self.maxLength,
            text.utf8.first.map({ (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) }) == true,
            text.utf8.allSatisfy({ byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-")
            })
        else {
            return
                "volume id \"\(text)\" must be 1–\(Self.maxLength) characters: a lowercase letter, then a–z, 0–9 or '-'"
        }
        return nil
    }
}
