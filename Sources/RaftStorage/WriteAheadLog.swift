// The write-ahead log: append-only segment files of checksummed records, one fdatasync per batch.
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
    /// How many bytes of the torn write were cut off: from `offset` to the last byte that is not
    /// zero (zeros after it are space allocated ahead of the writes, which hold nothing).
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
/// Durability: `append` only buffers in memory; `sync` writes the whole batch with one `pwrite` and
/// one `fdatasync` (group commit). Nothing appended is durable — and nothing may be acknowledged —
/// until `sync` returns. Records appended and not yet written (Raft's commit-only hard states, until
/// the next `sync` or `write`) are not in the file at all: a crash, even of the process alone,
/// loses exactly them and nothing before them. A writer that syncs on another thread uses `write` (the `pwrite` alone), then
/// `syncRequest` for a `WALSyncRequest` whose `sync` covers what was written, and reports its
/// return with `completeSync`; the next `write` may go on meanwhile. So the file holds unsynced
/// bytes only within a sync in progress and the writes that follow it until the next one, whose
/// write order a machine's crash could scramble (recovery then reports the damage; a process's
/// crash leaves them in the page cache, and `open` syncs them before the log is used). A segment is
/// synced before the next one is started, so only the last segment can have a torn tail.
///
/// Allocation ahead: the segment being written is extended `preallocationBytes` at a time with
/// `posix_fallocate` (its blocks reserved, reading as zeros), so a `sync` within that space
/// changes neither the file's size nor its block map, and its `fdatasync` writes the data alone —
/// no journal commit of the filesystem's metadata, which on ext4 is shared by every process
/// syncing on that filesystem (`scripts/bench-fsync.sh` measures both ways; docs/raft.md has the
/// figures). A segment is cut to its records' length (and fsynced) when it is closed, so only the
/// last segment ends in zeros.
///
/// Recovery (`open`): the last segment's records end at the first record that is not intact.
/// If every byte from there on is zero, that is the allocated space and the log's clean end. A
/// record there that is incomplete or fails its checksum, with no intact record after it, is a
/// torn write of a batch that was never acknowledged; it is truncated and reported. Any other
/// damage is a `StorageError` naming the file and byte offset: the log never starts on silently
/// lost data.
///
/// Not `Sendable`: one owner (the node's storage loop) uses it at a time.
public final class WriteAheadLog {
    public struct Configuration: Sendable {
        public var directory: String
        /// A segment is closed and a new one started once it grows past this size.
        public var segmentBytes: Int
        /// How far ahead of the records the segment's file is allocated, in one step; 0 writes at
        /// the end of the file, growing it with every sync.
        public var preallocationBytes: Int

        public init(directory: String, segmentBytes: Int = 64 << 20, preallocationBytes: Int = 4 << 20) {
            self.directory = directory
            self.segmentBytes = segmentBytes
            self.preallocationBytes = preallocationBytes
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
    /// The length of the current segment's magic and records: where the next batch is written.
    private var currentBytes: Int
    /// The current segment file's size: `currentBytes` and the allocated space after it.
    private var allocatedBytes: Int
    /// `configuration.preallocationBytes`, or 0 for the rest of a segment whose filesystem could
    /// not allocate ahead (it does not, or it is nearly full).
    private var preallocationBytes: Int
    private var pending: [UInt8] = []
    /// How much of the current segment is known durable: `currentBytes` after a sync; less while
    /// a sync on another thread has not returned.
    private var syncedBytes: Int
    /// The current segment opened a second time, for syncs on another thread: opened with the
    /// segment, before anything is written to it, so a write error is reported to its sync too.
    private var syncTarget: WALSyncTarget
    /// How many times a sync reached the disk (an `fsync` of a segment), for tests and status.
    public private(set) var syncCount = 0

    private init(
        configuration: Configuration, segments: [UInt64], current: consuming FileDescriptor, currentBytes: Int,
        allocatedBytes: Int
    ) throws(StorageError) {
        self.syncTarget = try WALSyncTarget(path: Self.segmentPath(segments.last!, in: configuration.directory))
        self.configuration = configuration
        self.segments = segments
        self.current = current
        self.currentBytes = currentBytes
        self.syncedBytes = currentBytes
        self.allocatedBytes = allocatedBytes
        self.preallocationBytes = max(0, configuration.preallocationBytes)
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
            let file = try createSegment(
                0, in: configuration.directory, preallocationBytes: configuration.preallocationBytes)
            let allocated = try file.size()
            let log = try WriteAheadLog(
                configuration: configuration, segments: [0], current: file, currentBytes: magic.count,
                allocatedBytes: allocated)
            return (log, [], nil)
        }

        var records: [RecoveredRecord] = []
        var tornTail: TornTail?
        var end = 0
        for (position, sequence) in sequences.enumerated() {
            let path = segmentPath(sequence, in: configuration.directory)
            let bytes = try FileDescriptor(path: path, flags: O_RDONLY).readAll()
            let isLast = position == sequences.count - 1
            let scan = try scanSegment(bytes, path: path, sequence: sequence, isLast: isLast)
            records += scan.records
            end = scan.end
            if let torn = scan.tornBytes {
                tornTail = TornTail(path: path, offset: scan.end, droppedBytes: torn)
            }
        }

        let lastPath = segmentPath(sequences.last!, in: configuration.directory)
        let file = try FileDescriptor(path: lastPath, flags: O_WRONLY)
        if let tornTail {
            try file.truncate(to: tornTail.offset)
            if tornTail.offset < magic.count {
                // The crash came while the segment's magic was being written: write it again.
                try file.truncate(to: 0)
                try file.writeAll(magic, at: 0)
                end = magic.count
            }
        }
        // Records a crashed process wrote and had not synced are read back from the page cache:
        // made durable before anything is decided on them (a vote, an acknowledgement).
        try file.sync()
        let allocated = try file.size()
        let log = try WriteAheadLog(
            configuration: configuration, segments: sequences, current: file, currentBytes: end,
            allocatedBytes: allocated)
        return (log, records, tornTail)
    }

    /// How many bytes at the start of the segment file at `path` hold its magic and intact records;
    /// the rest, if any, is allocated space or a torn write. For tests and tools that cut a
    /// segment as a crash would.
    public static func recordsLength(ofSegment path: String) throws(StorageError) -> Int {
        let bytes = try FileDescriptor(path: path, flags: O_RDONLY).readAll()
        return try scanSegment(bytes, path: path, sequence: 0, isLast: true).end
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

    /// Writes every buffered record and syncs once; on return they, and every record written
    /// before them, are durable.
    public func sync() throws(StorageError) {
        try write()
        guard hasUnsyncedWrites else { return }
        try current.syncData()
        syncCount += 1
        syncedBytes = currentBytes
    }

    /// Records written to the current segment and not yet known durable.
    public var hasUnsyncedWrites: Bool { syncedBytes < currentBytes }

    /// Writes every buffered record into the file without syncing it: durable once a sync that
    /// begins after this returns (`sync`, or a `syncRequest`'s).
    public func write() throws(StorageError) {
        guard !pending.isEmpty else { return }
        let end = currentBytes + pending.count
        if end > allocatedBytes && preallocationBytes > 0 {
            // The file grows here, once per `preallocationBytes`; this sync carries the metadata.
            let target = (end / preallocationBytes + 1) * preallocationBytes
            do {
                try current.allocate(length: target)
                allocatedBytes = target
            } catch {
                // A filesystem that cannot allocate ahead: write at the end of the file.
                guard Self.cannotAllocate(error) else { throw error }
                // Write at the end of the file for the rest of this segment: a disk too full for
                // the step may still hold the records, and a write that does not fit fails itself.
                preallocationBytes = 0
                allocatedBytes = try current.size()
            }
        }
        try current.writeAll(pending, at: currentBytes)
        currentBytes = end
        allocatedBytes = max(allocatedBytes, end)
        pending.removeAll(keepingCapacity: true)
    }

    /// A sync of everything written so far, to run on another thread while this log goes on
    /// (nil when nothing written is unsynced). Report its return with `completeSync`.
    public func syncRequest() -> WALSyncRequest? {
        guard hasUnsyncedWrites else { return nil }
        return WALSyncRequest(target: syncTarget, segment: segments.last!, through: currentBytes)
    }

    /// Records that `request`'s sync returned: what it covers is durable.
    public func completeSync(_ request: WALSyncRequest) {
        syncCount += 1
        // A later segment was started since: the one requested was synced when it was closed.
        guard request.segment == segments.last! else { return }
        syncedBytes = max(syncedBytes, request.through)
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
        if allocatedBytes > currentBytes {
            // Closed segments end with their last record: zeros there would be damage.
            try current.truncate(to: currentBytes)
            try current.sync()
        }
        let next = segments.last! + 1
        preallocationBytes = max(0, configuration.preallocationBytes)
        current = try Self.createSegment(next, in: configuration.directory, preallocationBytes: preallocationBytes)
        syncTarget = try WALSyncTarget(path: Self.segmentPath(next, in: configuration.directory))
        currentBytes = Self.magic.count
        syncedBytes = currentBytes
        allocatedBytes = try current.size()
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

    /// A new segment holding the magic, with `preallocationBytes` allocated (when the filesystem
    /// can), fsynced with its directory entry.
    private static func createSegment(
        _ sequence: UInt64, in directory: String, preallocationBytes: Int
    ) throws(StorageError) -> FileDescriptor {
        let path = segmentPath(sequence, in: directory)
        let file = try FileDescriptor(path: path, flags: O_WRONLY | O_CREAT | O_EXCL)
        try file.writeAll(magic, at: 0)
        if preallocationBytes > magic.count {
            do {
                try file.allocate(length: preallocationBytes)
            } catch {
                guard cannotAllocate(error) else { throw error }
            }
        }
        try file.sync()
        try DurableFiles.syncDirectory(directory)
        return file
    }

    /// The filesystem cannot allocate ahead: it does not (`posix_fallocate`'s EOPNOTSUPP or EINVAL)
    /// or has less room than the step (ENOSPC). The log then writes at the end of the file, as
    /// without `preallocationBytes`, until its next segment.
    private static func cannotAllocate(_ error: StorageError) -> Bool {
        error.systemErrno == EOPNOTSUPP || error.systemErrno == EINVAL || error.systemErrno == ENOSPC
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

    /// Reads a segment's records, which end at `end`. In the last segment, zeros from there to the
    /// end of the file are allocated space, and a damaged record with no intact record anywhere
    /// after it is a torn tail of `tornBytes` bytes; any other damage throws.
    private static func scanSegment(
        _ bytes: [UInt8], path: String, sequence: UInt64, isLast: Bool
    ) throws(StorageError) -> (records: [RecoveredRecord], end: Int, tornBytes: Int?) {
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            // Torn while the magic was written: a prefix of it, then nothing or allocated zeros.
            let written = zip(bytes, magic).prefix { $0 == $1 }.count
            if isLast && written < magic.count && bytes[written...].allSatisfy({ $0 == 0 }) {
                return ([], 0, written)
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
                guard isLast else { throw .corruptRecord(path: path, offset: offset, reason: reason) }
                // Where the bytes that are not zero end: a record can start no later (its header
                // checksum is never zero, so an all-zero header is never intact).
                let written = writtenLength(bytes, from: offset)
                if written <= offset { return (records, offset, nil) }
                guard !containsIntactRecord(bytes, after: offset, before: written) else {
                    throw .corruptRecord(path: path, offset: offset, reason: reason)
                }
                return (records, offset, written - offset)
            }
            let length = Int(readLittleEndian(bytes, at: offset))
            let payloadStart = offset + headerBytes
            records.append(
                RecoveredRecord(
                    segment: sequence, type: bytes[offset + 4],
                    payload: Array(bytes[payloadStart..<payloadStart + length])))
            offset = payloadStart + length
        }
        return (records, offset, nil)
    }

    /// One past the last byte at or after `offset` that is not zero; `offset` if there is none.
    /// Compares 4 KiB at a time from the end, since allocated space is megabytes of zeros.
    private static func writtenLength(_ bytes: [UInt8], from offset: Int) -> Int {
        bytes.withUnsafeBytes { buffer in
            var end = buffer.count
            while end > offset {
                let start = max(offset, end - zeroPage.count)
                let isZero = zeroPage.withUnsafeBytes { zeros in
                    memcmp(buffer.baseAddress! + start, zeros.baseAddress!, end - start) == 0
                }
                if !isZero { break }
                end = start
            }
            while end > offset && buffer[end - 1] == 0 { end -= 1 }
            return end
        }
    }

    private static let zeroPage = [UInt8](repeating: 0, count: 4096)

    /// Whether an intact record starts after `offset` and before `limit`: if one does, the damage
    /// at `offset` is not a torn tail but corruption in the middle of the log.
    private static func containsIntactRecord(_ bytes: [UInt8], after offset: Int, before limit: Int) -> Bool {
        var candidate = offset + 1
        while candidate < limit && candidate + headerBytes <= bytes.count {
            if defect(in: bytes, at: candidate) == nil { return true }
            candidate += 1
        }
        return false
    }
}

/// A segment file opened a second time for syncs on another thread: it stays open while a sync
/// holds it, even once the log has closed the segment and moved on (or a snapshot removed it).
///
/// Its own open (not a `dup`): Linux reports a write-back error once per open file description,
/// to the first sync on it, so a duplicate's sync could take the error and leave the log's own
/// `sync` a success; with two descriptions, each sees it.
public final class WALSyncTarget: Sendable {
    private let file: FileDescriptor

    init(path: String) throws(StorageError) {
        self.file = try FileDescriptor(path: path, flags: O_WRONLY)
    }

    /// `fdatasync` of the segment: blocks until what was written to it is durable.
    func syncData() throws(StorageError) {
        try file.syncData()
    }
}

/// A sync of a log's writes up to a point, made by `WriteAheadLog.syncRequest` for another thread.
public struct WALSyncRequest: Sendable {
    let target: WALSyncTarget
    let segment: UInt64
    /// The segment's length when the request was made: the sync covers the records before it.
    let through: Int

    /// Blocks until the records the request covers are durable: call it off the log's thread,
    /// then hand the request back to `WriteAheadLog.completeSync`.
    public func sync() throws(StorageError) {
        try target.syncData()
    }
}
