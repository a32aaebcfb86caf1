// A VM's append-only journal in its disk file: every record fsynced before it is acknowledged.
public import ClusterModel

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The journal a guest appends to its disk file (DESIGN.md §11), format in `JournalFormat`.
///
/// Opening replays the file: a torn tail (an append that never finished, so never acknowledged)
/// is truncated, damage anywhere is refused with the file and offset, and the sequence continues
/// after the last record. `append` returns only after the record is fsynced: that is the
/// acknowledgement, and recovery never loses an acknowledged record.
///
/// The file is opened with `O_APPEND`: were two owners ever to write at once, their records would
/// interleave in the file rather than overwrite each other, and `JournalChecker` would see it.
/// One owner (a `Guest`) uses a journal at a time; it is not shared between tasks.
public final class DiskJournal {
    public let path: String
    public let vm: VMID
    private var descriptor: Int32
    /// The sequence number the next record gets.
    public private(set) var nextSequence: UInt64
    /// The epoch of the last record in the file, or nil when it has none.
    public private(set) var lastEpoch: Epoch?
    /// The records on disk when the journal was opened, and the bytes of torn tail cut off.
    public let recovered: JournalContents

    private init(path: String, vm: VMID, descriptor: Int32, contents: JournalContents) {
        self.path = path
        self.vm = vm
        self.descriptor = descriptor
        self.recovered = contents
        self.nextSequence = (contents.records.last?.sequence ?? 0) + 1
        self.lastEpoch = contents.records.last?.epoch
    }

    deinit { if descriptor >= 0 { _ = systemClose(descriptor) } }

    /// Opens (creating if needed) the journal of `vm` at `path` and replays it.
    ///
    /// With `epoch`, refuses a journal that already holds records of a newer epoch: another
    /// node owns the VM now, and this one must not write (the disk-side half of fencing).
    public static func open(path: String, vm: VMID, epoch: Epoch? = nil) throws(JournalError) -> DiskJournal {
        let descriptor = systemOpen(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw ioError(path, "opening") }
        var journal: DiskJournal?
        defer { if journal == nil { _ = systemClose(descriptor) } }
        let bytes = try readAll(descriptor, path: path)
        let contents = try JournalFormat.parse(bytes, file: path, expectedVM: vm)
        if let epoch, let last = contents.records.last, last.epoch > epoch {
            throw JournalError(.newerEpoch(file: path, vm: vm, found: last.epoch, own: epoch))
        }
        if contents.tornBytes > 0 {
            guard ftruncate(descriptor, off_t(contents.validLength)) == 0 else { throw ioError(path, "truncating") }
        }
        if contents.validLength == 0 {
            // A new file (or a creation cut off): the header, fsynced, and the directory entry too.
            try write(JournalFormat.header(vm: vm), to: descriptor, path: path)
            try syncDirectory(of: path)
        } else if contents.tornBytes > 0 {
            guard fsync(descriptor) == 0 else { throw ioError(path, "syncing") }
        }
        journal = DiskJournal(path: path, vm: vm, descriptor: descriptor, contents: contents)
        return journal!
    }

    /// Reads the journal at `path` without changing it (for checking it from the disk alone).
    public static func read(path: String) throws(JournalError) -> JournalContents {
        let descriptor = systemOpen(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ioError(path, "opening") }
        defer { _ = systemClose(descriptor) }
        return try JournalFormat.parse(try readAll(descriptor, path: path), file: path)
    }

    /// Appends one record under `epoch` and returns once it is on disk (fsynced): acknowledged.
    @discardableResult
    public func append(epoch: Epoch, payload: [UInt8]) throws(JournalError) -> JournalRecordID {
        guard descriptor >= 0 else { throw JournalError(.closed(file: path)) }
        if let lastEpoch { precondition(epoch >= lastEpoch, "epoch \(epoch) after \(lastEpoch) in \(path)") }
        let sequence = nextSequence
        try Self.write(
            JournalFormat.record(epoch: epoch, sequence: sequence, payload: payload), to: descriptor, path: path)
        nextSequence += 1
        lastEpoch = epoch
        return JournalRecordID(vm: vm, epoch: epoch, sequence: sequence)
    }

    /// Closes the file; every appended record is already on disk.
    public func close() {
        guard descriptor >= 0 else { return }
        _ = systemClose(descriptor)
        descriptor = -1
    }

    /// Writes all of `bytes` and fsyncs. A failed or short write leaves at most a torn tail,
    /// which the next open truncates; the record was not acknowledged.
    private static func write(_ bytes: [UInt8], to descriptor: Int32, path: String) throws(JournalError) {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes {
                systemWrite(descriptor, $0.baseAddress! + written, bytes.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw ioError(path, "writing")
            }
            written += result
        }
        guard fsync(descriptor) == 0 else { throw ioError(path, "syncing") }
    }

    private static func readAll(_ descriptor: Int32, path: String) throws(JournalError) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes {
                pread(descriptor, $0.baseAddress!, $0.count, off_t(bytes.count))
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw ioError(path, "reading")
            }
            if count == 0 { return bytes }
            bytes += chunk[0..<count]
        }
    }

    /// Makes a newly created file's directory entry durable, so the file survives a crash.
    private static func syncDirectory(of path: String) throws(JournalError) {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let descriptor = systemOpen(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ioError(directory, "opening the directory of") }
        defer { _ = systemClose(descriptor) }
        guard fsync(descriptor) == 0 else { throw ioError(directory, "syncing the directory") }
    }

    private static func ioError(_ path: String, _ operation: String) -> JournalError {
        let code = errno
        return JournalError(.io(file: path, operation: operation, errno: code, detail: String(cString: strerror(code))))
    }
}

// The system calls under names of their own: inside `DiskJournal`, `open`, `write` and `close`
// mean its own methods.
private func systemOpen(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 { open(path, flags, mode) }
private func systemClose(_ descriptor: Int32) -> Int32 { close(descriptor) }
private func systemWrite(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}
