// The write-ahead log: append-only segment files of checksummed records, one fsync per batch.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One record read back from the log, with the segment that holds it.
public struct RecoveredRecord: Hashable, Sendable {
    /// The sequence number of the segment file the record is in; segments are removed whole.
    public var segment: UInt64
    public var type: UInt8
    public var payload: [UInt8]
}

/// What recovery found at the end of the log.
public struct TornTail: Hashable, Sendable, CustomStringConvertible {
    /// The last segment, which held the torn record.
    public var path: String
    /// Where the torn record started; the file was truncated to this length.
    public var offset: Int
    /// How many bytes were cut off.
    public var droppedBytes: Int

    public var description: String {
        "truncated a torn write at the end of \(path): \(droppedBytes) bytes from offset \(offset) "
            + "(a record that was never acknowledged)"
    }
}

/// An append-only log of typed records in segment files, for Raft entries and hard state.
///
/// On disk: files `<16 hex digits>.wal` in one directory, numbered in order. Each starts with an
/// 8-byte magic whose last byte is the format version (`FLOTWAL1`; a newer one stops the node
/// with `StorageError.newerFormat`); then records, each `length u32 | type u8 | payload crc32c u32 | header crc32c u32
/// | payload`, integers little-endian. The header has its own checksum so a damaged length is
/// never trusted to skip over data.
///
/// Durability: `append` only buffers in memory; `sync` writes the whole batch with one `write` and
/// one `fsync` (group commit). Nothing appended is durable — and nothing may be acknowledged — until
/// `sync` returns. Records appended and never synced (Raft's commit-only hard states) are not in
/// the file at all: a crash, even of the process alone, loses exactly them and nothing before
/// them, so the file never holds bytes outside a `sync` in progress whose write order the kernel
/// could scramble. A segment is synced before the next one is started, so only the last segment
/// can have a torn tail.
///
/// Recovery (`open`): a record at the end of the last segment that is incomplete or fails its
/// checksum, with no valid record after it, is a torn write of a batch that was never
/// acknowledged; it is truncated and reported. Any other damage is a `StorageError` naming the
/// file and byte offset: the log never starts on silently lost data.
///
/// Not `Sendable`: one owner (the node's storage loop) uses it at a time.
public final class WriteAheadLog {
    public struct Configuration: Sendable {
        public var directory: String
        /// A segment is closed and a new one started once it grows past this size.
        public var segmentBytes: Int

        public init(directory: String, segmentBytes: Int = 64 << 20) {
            self.directory = directory
            self.segmentBytes = segmentBytes
        }
    }

    /// The largest payload one record may carry.
    public static let maxPayloadBytes = 64 << 20

    /// The segment format this build writes and the newest it reads: the last byte of the magic
    /// (`FLOTWAL1`), so a segment's records, and the Raft values in them, are read as that version.
    public static let formatVersion: UInt8 = 1
    static let version = MagicVersion("FLOTWAL", current: formatVersion, format: "write-ahead log format")
    static let magic: [UInt8] = version.magic
    static let headerBytes = 13

    public let configuration: Configuration
    /// Sequence numbers of the segment files, oldest first; the last is the one being written.
    public private(set) var segments: [UInt64]
    private var current: FileDescriptor
    private var currentBytes: Int
    private var pending: [UInt8] = []
    /// How many times `sync` reached the disk (an `fsync` of a segment), for tests and status.
    public private(set) var syncCount = 0

    private init(configuration: Configuration, segments: [UInt64], current: consuming FileDescriptor, currentBytes: Int)
    {
        self.configuration = configuration
        self.segments = segments
        self.current = current
        self.currentBytes = currentBytes
    }

    /// Opens (or creates) the log in `configuration.directory` and reads back every record.
    public static func open(
        _ configuration: Configuration
    ) throws(StorageError) -> (log: WriteAheadLog, records: [RecoveredRecord], tornTail: TornTail?) {
        try DurableFiles.createDirectory(configuration.directory)
        var sequences: [UInt64] = []
        for name in try DurableFiles.list(configuration.directory) where name.hasSuffix(".wal") {
            let stem = name.dropLast(4)
            guard stem.count == 16, let sequence = UInt64(stem, radix: 16) else {
                throw .badSegment(
                    path: configuration.directory + "/" + name, reason: "the name is not <16 hex digits>.wal")
            }
            sequences.append(sequence)
        }
        sequences.sort()

        if sequences.isEmpty {
            let file = try createSegment(0, in: configuration.directory)
            let log = WriteAheadLog(
                configuration: configuration, segments: [0], current: file, currentBytes: magic.count)
            return (log, [], nil)
        }

        var records: [RecoveredRecord] = []
        var tornTail: TornTail?
        for (position, sequence) in sequences.enumerated() {
            let path = segmentPath(sequence, in: configuration.directory)
            let bytes = try FileDescriptor(path: path, flags: O_RDONLY).readAll()
            let isLast = position == sequences.count - 1
            let scan = try scanSegment(bytes, path: path, sequence: sequence, isLast: isLast)
            records += scan.records
            if let torn = scan.tornAt {
                tornTail = TornTail(path: path, offset: torn, droppedBytes: bytes.count - torn)
            }
        }

        let lastPath = segmentPath(sequences.last!, in: configuration.directory)
        let file = try FileDescriptor(path: lastPath, flags: O_WRONLY)
        if let tornTail {
            try file.truncate(to: tornTail.offset)
            if tornTail.offset < magic.count {
                // The crash came while the segment's magic was being written: write it again.
                _ = try file.seekToEnd()
                try file.writeAll(magic)
            }
            try file.sync()
        }
        let size = try file.seekToEnd()
        let log = WriteAheadLog(configuration: configuration, segments: sequences, current: file, currentBytes: size)
        return (log, records, tornTail)
    }

    /// Buffers a record; it reaches the disk on the next `sync`.
    public func append(type: UInt8, payload: [UInt8]) throws(StorageError) {
        guard payload.count <= Self.maxPayloadBytes else {
            throw .recordTooLarge(bytes: payload.count, limit: Self.maxPayloadBytes)
        }
        Self.encode(type: type, payload: payload, into: &pending)
    }

    /// Bytes appended and not yet synced.
    public var pendingBytes: Int { pending.count }

    /// Writes every buffered record and fsyncs once; on return they are durable.
    public func sync() throws(StorageError) {
        guard !pending.isEmpty else { return }
        try current.writeAll(pending)
        try current.sync()
        syncCount += 1
        currentBytes += pending.count
        pending.removeAll(keepingCapacity: true)
    }

    /// True when the current segment has passed `segmentBytes` and the caller should `rotate`.
    public var needsRotation: Bool { currentBytes >= configuration.segmentBytes }

    /// Syncs what is buffered, then starts a new segment; returns its sequence number.
    ///
    /// The segment it closes is therefore fully durable: only the last segment ever ends in
    /// records that a crash may lose or tear.
    ///
    /// The caller writes into the new segment whatever must be found without reading older ones
    /// (Raft's hard state), so older segments can be removed once a snapshot covers them.
    @discardableResult
    public func rotate() throws(StorageError) -> UInt64 {
        try sync()
        let next = segments.last! + 1
        current = try Self.createSegment(next, in: configuration.directory)
        currentBytes = Self.magic.count
        segments.append(next)
        return next
    }

    /// Removes every segment numbered below `segment` (never the one being written).
    public func removeSegments(before segment: UInt64) throws(StorageError) {
        let doomed = segments.filter { $0 < segment && $0 != segments.last! }
        guard !doomed.isEmpty else { return }
        for sequence in doomed {
            try DurableFiles.remove(Self.segmentPath(sequence, in: configuration.directory))
        }
        try DurableFiles.syncDirectory(configuration.directory)
        segments.removeAll { doomed.contains($0) }
    }

    // MARK: - Format

    static func segmentPath(_ sequence: UInt64, in directory: String) -> String {
        let hex = String(sequence, radix: 16)
        return directory + "/" + String(repeating: "0", count: 16 - hex.count) + hex + ".wal"
    }

    private static func createSegment(_ sequence: UInt64, in directory: String) throws(StorageError) -> FileDescriptor {
        let path = segmentPath(sequence, in: directory)
        let file = try FileDescriptor(path: path, flags: O_WRONLY | O_CREAT | O_EXCL)
        try file.writeAll(magic)
        try file.sync()
        try DurableFiles.syncDirectory(directory)
        return file
    }

    static func encode(type: UInt8, payload: [UInt8], into buffer: inout [UInt8]) {
        let start = buffer.count
        appendLittleEndian(UInt32(payload.count), to: &buffer)
        buffer.append(type)
        appendLittleEndian(CRC32C.checksum(payload), to: &buffer)
        let headerCRC = buffer.withUnsafeBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[start..<start + 9]))
        }
        appendLittleEndian(headerCRC, to: &buffer)
        buffer.append(contentsOf: payload)
    }

    private static func appendLittleEndian(_ value: UInt32, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    private static func readLittleEndian(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian }
    }

    /// Why a record at some offset cannot be read, or nil when it is whole and intact.
    private static func defect(in bytes: [UInt8], at offset: Int) -> String? {
        guard bytes.count - offset >= headerBytes else { return "the record header is incomplete" }
        let headerCRC = bytes.withUnsafeBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[offset..<offset + 9]))
        }
        guard headerCRC == readLittleEndian(bytes, at: offset + 9) else {
            return "the record header fails its checksum"
        }
        let length = Int(readLittleEndian(bytes, at: offset))
        guard length <= maxPayloadBytes else { return "the record claims \(length) bytes, over the limit" }
        let payloadStart = offset + headerBytes
        guard bytes.count - payloadStart >= length else { return "the record's payload is incomplete" }
        let payloadCRC = bytes.withUnsafeBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[payloadStart..<payloadStart + length]))
        }
        guard payloadCRC == readLittleEndian(bytes, at: offset + 5) else {
            return "the record's payload fails its checksum"
        }
        return nil
    }

    /// Reads a segment's records. In the last segment a damaged record with no intact record
    /// anywhere after it is a torn tail (returned as `tornAt`); any other damage throws.
    private static func scanSegment(
        _ bytes: [UInt8], path: String, sequence: UInt64, isLast: Bool
    ) throws(StorageError) -> (records: [RecoveredRecord], tornAt: Int?) {
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            if isLast && bytes.count < magic.count && magic.starts(with: bytes) {
                return ([], 0)
            }
            if let newer = version.newerFormatError(in: bytes, path: path, subject: "write-ahead log segment \(path)") {
                throw newer
            }
            throw .badSegment(path: path, reason: "it does not start with the write-ahead log magic")
        }
        var records: [RecoveredRecord] = []
        var offset = magic.count
        while offset < bytes.count {
            if let reason = defect(in: bytes, at: offset) {
                guard isLast, !containsIntactRecord(bytes, after: offset) else {
                    throw .corruptRecord(path: path, offset: offset, reason: reason)
                }
                return (records, offset)
            }
            let length = Int(readLittleEndian(bytes, at: offset))
            let payloadStart = offset + headerBytes
            records.append(
                RecoveredRecord(
                    segment: sequence, type: bytes[offset + 4],
                    payload: Array(bytes[payloadStart..<payloadStart + length])))
            offset = payloadStart + length
        }
        return (records, nil)
    }

    /// Whether an intact record starts anywhere after `offset`: if one does, the damage at
    /// `offset` is not a torn tail but corruption in the middle of the log.
    private static func containsIntactRecord(_ bytes: [UInt8], after offset: Int) -> Bool {
        var candidate = offset + 1
        while candidate + headerBytes <= bytes.count {
            if defect(in: bytes, at: candidate) == nil { return true }
            candidate += 1
        }
        return false
    }
}
