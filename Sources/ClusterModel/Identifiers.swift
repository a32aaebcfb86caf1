// Identifiers and counters shared by every Flotilla module (DESIGN.md §2).

/// A number that names or counts something in the cluster. It compares, hashes and codes as its
/// number and prints its own way (`n3`, `vm2`, `mig1`; terms, indexes and epochs as bare numbers).
public protocol NumericIdentifier: RawRepresentable, Hashable, Comparable, Sendable, Codable,
    ExpressibleByIntegerLiteral
where RawValue == UInt64, IntegerLiteralType == UInt64 {
    init(rawValue: UInt64)
}

extension NumericIdentifier {
    @inlinable public init(_ rawValue: UInt64) { self.init(rawValue: rawValue) }
    @inlinable public init(integerLiteral value: UInt64) { self.init(rawValue: value) }
    @inlinable public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One `flotilla node` process, as Raft and the cluster state know it.
///
/// Raft wants a small, totally ordered id; operators want a name. The id is a number and prints
/// as `n<number>`, which is also the form configuration files and the CLI accept.
public struct NodeID: NumericIdentifier, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

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

}

/// A Raft term: a logical clock that only grows; at most one leader is elected per term.
public struct Term: NumericIdentifier, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public var description: String { String(rawValue) }
    /// The term after this one (a candidate's new term).
    public var next: Term { Term(rawValue + 1) }

}

/// A position in the replicated log. Index 0 is "before the first entry"; the first entry is 1.
public struct LogIndex: NumericIdentifier, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public var description: String { String(rawValue) }

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
public struct VMID: NumericIdentifier, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

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
}

/// A VM's ownership counter: bumped on every change of owner, never lowered. Every disk write
/// carries it, so a write from an older owner is recognised and refused (a fencing token).
public struct Epoch: NumericIdentifier, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The epoch of the VM's next ownership.
    public var next: Epoch { Epoch(rawValue + 1) }

    public var description: String { String(rawValue) }
}

/// A migration's id, assigned by the state when the migration begins.
public struct MigrationID: NumericIdentifier, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Parses `mig3` or `3`; nil for anything else (including 0, which no migration gets).
    public init?(parsing text: some StringProtocol) {
        let text = Substring(text)
        let digits = text.hasPrefix("mig") ? text.dropFirst(3) : text
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII }), let value = UInt64(digits), value != 0 else {
            return nil
        }
        self.rawValue = value
    }

    public var description: String { "mig\(rawValue)" }
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
