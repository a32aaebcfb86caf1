// The errors of Flotilla's durable storage: what failed, on which file and offset, and what to do.
public import ClusterModel

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A storage failure an operator can act on.
///
/// A struct around a private enum (like NIO's public errors) so cases can be added later without
/// breaking callers; `description` is the one line the node prints before it stops.
public struct StorageError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Kind: Hashable, Sendable {
        case system(operation: String, path: String, errno: Int32)
        case corruptRecord(path: String, offset: Int, reason: String)
        case badSegment(path: String, reason: String)
        case recordTooLarge(bytes: Int, limit: Int)
        case newerFormat(path: String, NewerFormatVersion)
    }

    private let kind: Kind

    private init(_ kind: Kind) { self.kind = kind }

    static func system(_ operation: String, path: String, errno: Int32) -> StorageError {
        StorageError(.system(operation: operation, path: path, errno: errno))
    }
    static func corruptRecord(path: String, offset: Int, reason: String) -> StorageError {
        StorageError(.corruptRecord(path: path, offset: offset, reason: reason))
    }
    static func badSegment(path: String, reason: String) -> StorageError {
        StorageError(.badSegment(path: path, reason: reason))
    }
    static func recordTooLarge(bytes: Int, limit: Int) -> StorageError {
        StorageError(.recordTooLarge(bytes: bytes, limit: limit))
    }
    static func newerFormat(path: String, _ newer: NewerFormatVersion) -> StorageError {
        StorageError(.newerFormat(path: path, newer))
    }

    /// True when the data on disk is damaged (as opposed to a failing system call).
    public var isCorruption: Bool {
        switch kind {
        case .corruptRecord, .badSegment: true
        case .system, .recordTooLarge, .newerFormat: false
        }
    }

    /// Set when a file is in a format newer than this build reads: not damage, an older build.
    public var newerFormat: NewerFormatVersion? {
        if case .newerFormat(_, let newer) = kind { return newer }
        return nil
    }

    /// The file the error is about, when there is one.
    public var path: String? {
        switch kind {
        case .system(_, let path, _), .corruptRecord(let path, _, _), .badSegment(let path, _),
            .newerFormat(let path, _):
            path
        case .recordTooLarge: nil
        }
    }

    /// A failed system call's errno.
    var systemErrno: Int32? {
        if case .system(_, _, let errno) = kind { return errno }
        return nil
    }

    /// The byte offset in `path` of a corrupt record.
    public var offset: Int? {
        if case .corruptRecord(_, let offset, _) = kind { return offset }
        return nil
    }

    public var description: String {
        switch kind {
        case .system(let operation, let path, let errno):
            let reason = String(cString: strerror(errno))
            return "\(operation) failed on \(path): \(reason) (errno \(errno)); check the disk and its permissions"
        case .corruptRecord(let path, let offset, let reason):
            return """
                corrupt write-ahead log record in \(path) at byte offset \(offset): \(reason). \
                Records after it cannot be trusted, so the node will not start on this data directory. \
                Restore the directory from a backup, or remove it and re-add this node to the cluster \
                so it catches up from the other members.
                """
        case .badSegment(let path, let reason):
            return
                "invalid write-ahead log segment \(path): \(reason); move the file aside only if you know it is not part of this log"
        case .recordTooLarge(let bytes, let limit):
            return
                "a write-ahead log record of \(bytes) bytes exceeds the limit of \(limit) bytes; split it into smaller records"
        case .newerFormat(_, let newer):
            return newer.description
        }
    }
}
