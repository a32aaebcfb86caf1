// What a reader says when it meets a format newer than it reads: both versions, and what to do.

/// Bytes, a file or a request in a format version newer than this build reads.
///
/// Every on-disk and on-wire format carries a version (docs/operations.md, "Formats and
/// versions"). A reader that meets a newer one throws this instead of guessing at the bytes: a
/// node stops (or a peer request is refused) until it runs a build that reads the format.
public struct NewerFormatVersion: Error, Hashable, Sendable, CustomStringConvertible {
    /// What held the version: "log entry 1234", "write-ahead log segment /d/raft/wal/….wal".
    public var subject: String
    /// The format's name as the docs give it: "entry format", "write-ahead log format".
    public var format: String
    /// The version found.
    public var found: UInt64
    /// The newest version this build reads.
    public var newest: UInt64

    public init(subject: String, format: String, found: UInt64, newest: UInt64) {
        self.subject = subject
        self.format = format
        self.found = found
        self.newest = newest
    }

    public var description: String {
        "\(subject) is \(format) \(found); this build reads up to \(newest): "
            + "upgrade this node (docs/operations.md, Upgrades)"
    }
}
