// The backup file of `flotilla snapshot save`: one snapshot of the replicated state, versioned and checksummed.

/// A snapshot taken out of a cluster, as a file an operator keeps and later restores from.
///
/// Unlike `SnapshotStore`'s files, which only the node that wrote them reads, this file travels:
/// it is read by other builds, on other machines, years later. So it says which version of the
/// format it is, and its frame (magic, version, header length, header checksum) is the same for
/// every version: a reader can always tell a newer file from a damaged or truncated one.
///
/// Layout (integers little-endian):
///
/// | offset | bytes | field |
/// |---|---|---|
/// | 0 | 8 | magic `FLOTBKUP` |
/// | 8 | 4 | format version (u32), 1 today |
/// | 12 | 4 | header length H (u32) |
/// | 16 | 4 | CRC-32C of bytes 0..<16 and of the header |
/// | 20 | H | header: index u64, term u64, taken-at ms u64, metadata length u32, data length u64, cluster id length u16, cluster id (UTF-8) |
/// | 20+H | M+D | body: Raft's snapshot metadata (M bytes), then the state machine's snapshot (D bytes) |
/// | end−4 | 4 | CRC-32C of the body |
public struct SnapshotFile: Hashable, Sendable {
    /// The log index the snapshot covers: the state after applying every entry up to it.
    public var index: UInt64
    /// The term of the entry at `index`.
    public var term: UInt64
    /// When the leader took it, in milliseconds since 1970 (for the operator; never used to decide).
    public var takenAtMilliseconds: UInt64
    /// The id of the cluster it was taken from.
    public var clusterID: String
    /// Raft's snapshot metadata (membership and the client dedup table), in RaftCore's wire format.
    public var metadata: [UInt8]
    /// The state machine's snapshot (ClusterState's snapshot format).
    public var data: [UInt8]

    public init(
        index: UInt64, term: UInt64, takenAtMilliseconds: UInt64, clusterID: String, metadata: [UInt8], data: [UInt8]
    ) {
        self.index = index
        self.term = term
        self.takenAtMilliseconds = takenAtMilliseconds
        self.clusterID = clusterID
        self.metadata = metadata
        self.data = data
    }

    /// The format this build writes, and the newest it reads.
    public static let formatVersion: UInt32 = 1
    static let magic: [UInt8] = Array("FLOTBKUP".utf8)
    /// Magic, version, header length and header checksum: the part every version shares.
    static let frameBytes = 20
    /// A header longer than this is damage, not a future version's extra fields.
    static let headerLimit = 1 << 16

    /// The file's bytes.
    public var encoded: [UInt8] {
        var header: [UInt8] = []
        append(index, to: &header)
        append(term, to: &header)
        append(takenAtMilliseconds, to: &header)
        append(UInt32(metadata.count), to: &header)
        append(UInt64(data.count), to: &header)
        let cluster = Array(clusterID.utf8.prefix(Int(UInt16.max)))
        append(UInt16(cluster.count), to: &header)
        header += cluster

        var bytes = Self.magic
        append(Self.formatVersion, to: &bytes)
        append(UInt32(header.count), to: &bytes)
        let headerCRC = CRC32C.checksum(header, continuing: CRC32C.checksum(bytes))
        append(headerCRC, to: &bytes)
        bytes += header
        bytes += metadata
        bytes += data
        append(CRC32C.checksum(data, continuing: CRC32C.checksum(metadata)), to: &bytes)
        return bytes
    }

    /// Reads a file's bytes, checking its frame, version, lengths and both checksums.
    public init(decoding bytes: [UInt8]) throws(SnapshotFileError) {
        let magicSeen = bytes.prefix(Self.magic.count)
        guard magicSeen.elementsEqual(Self.magic.prefix(magicSeen.count)) else {
            throw SnapshotFileError(.notASnapshotFile)
        }
        guard bytes.count >= Self.frameBytes else {
            throw SnapshotFileError(.truncated(expected: "at least \(Self.frameBytes)", found: bytes.count))
        }
        let version = Self.read(UInt32.self, bytes, at: 8)
        let headerCount = Int(Self.read(UInt32.self, bytes, at: 12))
        guard headerCount <= Self.headerLimit else {
            throw SnapshotFileError(.damaged("its header length (\(headerCount) bytes) is not believable"))
        }
        let headerEnd = Self.frameBytes + headerCount
        guard bytes.count >= headerEnd else {
            throw SnapshotFileError(.truncated(expected: "at least \(headerEnd)", found: bytes.count))
        }
        let headerCRC = CRC32C.checksum(bytes[Self.frameBytes..<headerEnd], continuing: CRC32C.checksum(bytes[0..<16]))
        guard headerCRC == Self.read(UInt32.self, bytes, at: 16) else {
            throw SnapshotFileError(.damaged("its header fails its checksum"))
        }
        guard version <= Self.formatVersion, version >= 1 else {
            throw SnapshotFileError(.unknownVersion(version))
        }
        // Version 1's header.
        guard headerCount >= 38 else {
            throw SnapshotFileError(.damaged("its header is \(headerCount) bytes, too short for version 1"))
        }
        let index = Self.read(UInt64.self, bytes, at: 20)
        let term = Self.read(UInt64.self, bytes, at: 28)
        let takenAt = Self.read(UInt64.self, bytes, at: 36)
        let metadataCount = Int(Self.read(UInt32.self, bytes, at: 44))
        let dataCount = Self.read(UInt64.self, bytes, at: 48)
        let clusterCount = Int(Self.read(UInt16.self, bytes, at: 56))
        guard 38 + clusterCount == headerCount, dataCount <= UInt64(Int.max / 2) else {
            throw SnapshotFileError(.damaged("its header's lengths do not add up"))
        }
        let clusterID = String(decoding: bytes[58..<headerEnd], as: UTF8.self)
        let metadataEnd = headerEnd + metadataCount
        let dataEnd = metadataEnd + Int(dataCount)
        let expected = dataEnd + 4
        guard bytes.count >= expected else {
            throw SnapshotFileError(.truncated(expected: "\(expected)", found: bytes.count))
        }
        guard bytes.count == expected else {
            throw SnapshotFileError(.damaged("it has \(bytes.count - expected) bytes after its end"))
        }
        guard CRC32C.checksum(bytes[headerEnd..<dataEnd]) == Self.read(UInt32.self, bytes, at: dataEnd) else {
            throw SnapshotFileError(.damaged("its snapshot fails its checksum"))
        }
        self.init(
            index: index, term: term, takenAtMilliseconds: takenAt, clusterID: clusterID,
            metadata: Array(bytes[headerEnd..<metadataEnd]), data: Array(bytes[metadataEnd..<dataEnd]))
    }

    /// Reads and checks the file at `path`.
    public static func read(path: String) throws(SnapshotFileError) -> SnapshotFile {
        let bytes: [UInt8]?
        do {
            bytes = try DurableFiles.read(path)
        } catch {
            throw SnapshotFileError(.unreadable(error.description), path: path)
        }
        guard let bytes else { throw SnapshotFileError(.unreadable("no such file"), path: path) }
        do {
            return try SnapshotFile(decoding: bytes)
        } catch {
            throw SnapshotFileError(error, path: path)
        }
    }

    /// Writes the file durably: a temporary file beside it, fsynced, renamed over `path`, the
    /// directory fsynced. A failure leaves no temporary file behind and `path` as it was.
    public func write(to path: String) throws(StorageError) {
        do {
            try DurableFiles.writeAtomically(encoded, to: path)
        } catch {
            try? DurableFiles.remove(path + ".tmp")
            throw error
        }
    }

    private func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private static func read<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}

/// A snapshot file that cannot be used: what is wrong with it and what to do.
public struct SnapshotFileError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of problem it is, for callers that act on it (and tests).
    public struct Problem: Hashable, Sendable {
        fileprivate let name: String
        public static let notASnapshotFile = Problem(name: "not a snapshot file")
        public static let truncated = Problem(name: "truncated")
        public static let damaged = Problem(name: "damaged")
        public static let unknownVersion = Problem(name: "unknown version")
        public static let unreadable = Problem(name: "unreadable")
    }

    fileprivate enum Kind: Hashable, Sendable {
        case notASnapshotFile
        case truncated(expected: String, found: Int)
        case damaged(String)
        case unknownVersion(UInt32)
        case unreadable(String)
    }

    private let kind: Kind
    /// The file, when the error came from reading one.
    public let path: String?

    fileprivate init(_ kind: Kind, path: String? = nil) {
        self.kind = kind
        self.path = path
    }

    fileprivate init(_ error: SnapshotFileError, path: String) {
        self.init(error.kind, path: path)
    }

    public var problem: Problem {
        switch kind {
        case .notASnapshotFile: .notASnapshotFile
        case .truncated: .truncated
        case .damaged: .damaged
        case .unknownVersion: .unknownVersion
        case .unreadable: .unreadable
        }
    }

    public var description: String {
        let file = path ?? "the snapshot file"
        switch kind {
        case .notASnapshotFile:
            return "\(file) is not a Flotilla snapshot file (it does not start with FLOTBKUP); "
                + "name a file written by `flotilla snapshot save`"
        case .truncated(let expected, let found):
            return "\(file) is truncated: it is \(found) bytes long and its header needs \(expected); "
                + "the copy or the save did not finish: use another copy of the snapshot, or save a new one"
        case .damaged(let reason):
            return "\(file) is damaged: \(reason); do not restore from it: use another copy of the snapshot, "
                + "or save a new one"
        case .unknownVersion(let version):
            return "\(file) is in snapshot file format \(version), which this build does not read "
                + "(it reads format 1 to \(SnapshotFile.formatVersion)); restore it with the Flotilla release "
                + "that saved it, or a newer one"
        case .unreadable(let reason):
            return "cannot read \(file): \(reason); check the path and its permissions"
        }
    }
}
