// Snapshot files: written whole or not at all, checksummed, the newest kept with one spare.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A snapshot as stored: the log position it covers, opaque metadata (Raft's membership and
/// client-dedup table) and the state machine's bytes.
public struct StoredSnapshot: Hashable, Sendable {
    public var index: UInt64
    public var term: UInt64
    public var metadata: [UInt8]
    public var data: [UInt8]

    public init(index: UInt64, term: UInt64, metadata: [UInt8], data: [UInt8]) {
        self.index = index
        self.term = term
        self.metadata = metadata
        self.data = data
    }
}

/// The snapshot files in one directory, named `<16 hex term>-<16 hex index>.snap`.
///
/// A snapshot is written to a temporary name, fsynced, renamed into place and the directory
/// fsynced (`DurableFiles.writeAtomically`), so a crash mid-write leaves only a `.tmp` file,
/// which `loadLatest` removes. Each file is `magic (FLOTSNP + the format version digit) | index u64 | term u64 | metadata length u32 |
/// data length u64 | crc32c u32 of everything before it and after it | metadata | data`; a file
/// that fails its checksum is corruption and is reported, never skipped over silently.
public struct SnapshotStore: Sendable {
    public let directory: String

    /// The snapshot file format this build writes and the newest it reads: the magic's last byte
    /// (`FLOTSNP1`). The metadata and state inside have versions of their own.
    public static let formatVersion: UInt8 = 1
    static let version = MagicVersion("FLOTSNP", current: formatVersion, format: "Raft snapshot file format")
    static let magic: [UInt8] = version.magic
    static let headerBytes = 8 + 8 + 8 + 4 + 8 + 4

    public init(directory: String) throws(StorageError) {
        try DurableFiles.createDirectory(directory)
        self.directory = directory
    }

    /// Writes `snapshot` durably, then removes all but the newest two snapshot files.
    public func save(_ snapshot: StoredSnapshot) throws(StorageError) {
        var bytes = Self.magic
        append(snapshot.index, to: &bytes)
        append(snapshot.term, to: &bytes)
        append(UInt32(snapshot.metadata.count), to: &bytes)
        append(UInt64(snapshot.data.count), to: &bytes)
        var crc = CRC32C.checksum(bytes)
        crc = CRC32C.checksum(snapshot.metadata, continuing: crc)
        crc = CRC32C.checksum(snapshot.data, continuing: crc)
        append(crc, to: &bytes)
        bytes += snapshot.metadata
        bytes += snapshot.data
        try DurableFiles.writeAtomically(
            bytes, to: directory + "/" + Self.fileName(term: snapshot.term, index: snapshot.index))
        let names = try snapshotNames()
        for name in names.dropLast(2) { try DurableFiles.remove(directory + "/" + name) }
        if names.count > 2 { try DurableFiles.syncDirectory(directory) }
    }

    /// The newest snapshot, or nil when there is none. Leftover temporary files from a crash
    /// during `save` are removed.
    public func loadLatest() throws(StorageError) -> StoredSnapshot? {
        for name in try DurableFiles.list(directory) where name.hasSuffix(".tmp") {
            try DurableFiles.remove(directory + "/" + name)
        }
        guard let name = try snapshotNames().last else { return nil }
        let path = directory + "/" + name
        guard let bytes = try DurableFiles.read(path) else { return nil }
        return try Self.decode(bytes, path: path)
    }

    static func fileName(term: UInt64, index: UInt64) -> String {
        func hex(_ value: UInt64) -> String {
            let digits = String(value, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }
        return "\(hex(index))-\(hex(term)).snap"
    }

    /// Snapshot file names, oldest first (the index leads the name, zero-padded, so names sort).
    private func snapshotNames() throws(StorageError) -> [String] {
        try DurableFiles.list(directory).filter { $0.hasSuffix(".snap") && $0.count == 38 }.sorted()
    }

    static func decode(_ bytes: [UInt8], path: String) throws(StorageError) -> StoredSnapshot {
        guard bytes.count >= headerBytes, bytes[0..<8].elementsEqual(magic) else {
            if let newer = version.newerFormatError(in: bytes, path: path, subject: "snapshot \(path)") {
                throw newer
            }
            throw .corruptRecord(path: path, offset: 0, reason: "the snapshot header is missing or damaged")
        }
        let index = read(UInt64.self, bytes, at: 8)
        let term = read(UInt64.self, bytes, at: 16)
        let metadataCount = Int(read(UInt32.self, bytes, at: 24))
        let dataCount = read(UInt64.self, bytes, at: 28)
        guard dataCount <= UInt64(bytes.count), bytes.count == headerBytes + metadataCount + Int(dataCount) else {
            throw .corruptRecord(
                path: path, offset: 24, reason: "the snapshot's lengths do not match its size of \(bytes.count) bytes")
        }
        var crc = CRC32C.checksum(bytes[0..<36])
        crc = CRC32C.checksum(bytes[headerBytes...], continuing: crc)
        guard crc == read(UInt32.self, bytes, at: 36) else {
            throw .corruptRecord(path: path, offset: headerBytes, reason: "the snapshot fails its checksum")
        }
        let metadataEnd = headerBytes + metadataCount
        return StoredSnapshot(
            index: index, term: term, metadata: Array(bytes[headerBytes..<metadataEnd]),
            data: Array(bytes[metadataEnd...]))
    }

    private func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private static func read<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}
