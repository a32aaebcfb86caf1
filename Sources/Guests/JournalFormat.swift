// The layout of a guest's disk journal, and how its bytes are read back (pure: bytes in, records out).
public import ClusterModel

/// A record's identity: which VM wrote it, under which epoch, with which sequence number.
public struct JournalRecordID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var vm: VMID
    public var epoch: Epoch
    public var sequence: UInt64

    public init(vm: VMID, epoch: Epoch, sequence: UInt64) {
        self.vm = vm
        self.epoch = epoch
        self.sequence = sequence
    }

    public static func < (a: Self, b: Self) -> Bool {
        (a.vm, a.sequence, a.epoch) < (b.vm, b.sequence, b.epoch)
    }

    public var description: String { "\(vm) seq \(sequence) (epoch \(epoch))" }
}

/// One record as it lies on disk.
public struct JournalRecord: Hashable, Sendable {
    /// The owner's epoch when it wrote the record (its fencing token).
    public var epoch: Epoch
    /// 1 for the journal's first record, then one more for each record, across epochs.
    public var sequence: UInt64
    public var payload: [UInt8]
    /// Where the record starts in the file.
    public var offset: Int

    public init(epoch: Epoch, sequence: UInt64, payload: [UInt8], offset: Int) {
        self.epoch = epoch
        self.sequence = sequence
        self.payload = payload
        self.offset = offset
    }
}

/// A journal as read from disk: the VM it belongs to and its intact records, in file order.
public struct JournalContents: Hashable, Sendable {
    public var vm: VMID
    public var records: [JournalRecord]
    /// The bytes that hold the header and intact records; a torn tail starts here.
    public var validLength: Int
    /// The bytes after `validLength` (an append that never finished), or 0.
    public var tornBytes: Int

    public init(vm: VMID, records: [JournalRecord], validLength: Int, tornBytes: Int) {
        self.vm = vm
        self.records = records
        self.validLength = validLength
        self.tornBytes = tornBytes
    }

    public func id(of record: JournalRecord) -> JournalRecordID {
        JournalRecordID(vm: vm, epoch: record.epoch, sequence: record.sequence)
    }
}

/// The journal file's layout (all integers little-endian):
///
///     header  magic "FLOTJRN1" (8 bytes), VM id (u64)
///     record  length L (u32), ~L (u32), epoch (u64), sequence (u64), payload (L bytes),
///             CRC-32C (u32) of everything before it in the record
///
/// `~L` guards the length, so a damaged length is caught rather than trusted to skip records or
/// to mistake intact ones for a torn tail.
///
/// Reading decides between a torn tail and damage: only an append that never finished — and so
/// was never acknowledged, since acknowledgement waits for fsync — may be cut off. The tail is
/// torn when what follows the last intact record is too short for a record header, or is a
/// header whose record reaches past the end of the file, or is all zeros (space the file system
/// allocated but the write never filled). Anything else that does not check out, even the last
/// record, is damage: it is refused with the file and offset, never dropped.
public enum JournalFormat {
    public static let magic: [UInt8] = Array("FLOTJRN1".utf8)
    public static let headerSize = 16
    /// Bytes a record adds to its payload: the 24-byte front and the 4-byte checksum.
    public static let recordOverhead = 28
    /// The largest payload a record may carry.
    public static let maxPayload = 64 << 10

    public static func header(vm: VMID) -> [UInt8] {
        var bytes = magic
        append(vm.rawValue, to: &bytes)
        return bytes
    }

    public static func record(epoch: Epoch, sequence: UInt64, payload: [UInt8]) -> [UInt8] {
        precondition(
            payload.count <= maxPayload, "a journal payload is at most \(maxPayload) bytes, got \(payload.count)")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(recordOverhead + payload.count)
        let length = UInt32(payload.count)
        append(length, to: &bytes)
        append(~length, to: &bytes)
        append(epoch.rawValue, to: &bytes)
        append(sequence, to: &bytes)
        bytes += payload
        append(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    /// Reads a journal's bytes; `file` names it in errors. An empty file, or a header cut off
    /// while the file was being created, reads as an empty journal of `expectedVM`.
    public static func parse(_ bytes: [UInt8], file: String, expectedVM: VMID? = nil) throws(JournalError)
        -> JournalContents
    {
        // A file of zeros, however long, is space allocated that nothing was written to yet (a
        // QEMU guest's disk is such a file until its guest writes the header).
        if bytes.count < headerSize || bytes.allSatisfy({ $0 == 0 }) {
            // Creating the file writes the header and fsyncs it before any record is appended:
            // a short header is a creation cut off, with nothing acknowledged in it.
            let expected = expectedVM.map { header(vm: $0) } ?? magic
            guard bytes.allSatisfy({ $0 == 0 }) || expected.starts(with: bytes) || bytes.starts(with: expected)
            else {
                throw JournalError(
                    .notAJournal(file: file, detail: "its first \(bytes.count) bytes are not a journal header"))
            }
            guard let expectedVM else {
                throw JournalError(
                    .notAJournal(
                        file: file,
                        detail: bytes.count < headerSize
                            ? "it is \(bytes.count) bytes, shorter than a header" : "it is all zeros, with no header"))
            }
            return JournalContents(vm: expectedVM, records: [], validLength: 0, tornBytes: bytes.count)
        }
        guard Array(bytes[0..<8]) == magic else {
            throw JournalError(.notAJournal(file: file, detail: "it does not start with \"FLOTJRN1\""))
        }
        let vm = VMID(load(UInt64.self, bytes, at: 8))
        if let expectedVM, vm != expectedVM {
            throw JournalError(.wrongVM(file: file, found: vm, expected: expectedVM))
        }
        var records: [JournalRecord] = []
        var offset = headerSize
        while offset < bytes.count {
            let remaining = bytes.count - offset
            if bytes[offset...].allSatisfy({ $0 == 0 }) || remaining < 8 { break }
            let length = load(UInt32.self, bytes, at: offset)
            guard load(UInt32.self, bytes, at: offset + 4) == ~length else {
                throw JournalError(
                    .damaged(file: file, offset: offset, detail: "its length field does not match its check"))
            }
            guard Int(length) <= maxPayload else {
                throw JournalError(
                    .damaged(
                        file: file, offset: offset, detail: "its length \(length) is above the limit \(maxPayload)"))
            }
            let end = offset + recordOverhead + Int(length)
            if end > bytes.count { break }
            let stored = load(UInt32.self, bytes, at: end - 4)
            let computed = bytes.withUnsafeBytes {
                CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[offset..<end - 4]))
            }
            guard stored == computed else {
                throw JournalError(
                    .damaged(file: file, offset: offset, detail: "its checksum does not match its bytes"))
            }
            records.append(
                JournalRecord(
                    epoch: Epoch(load(UInt64.self, bytes, at: offset + 8)),
                    sequence: load(UInt64.self, bytes, at: offset + 16),
                    payload: Array(bytes[offset + 24..<end - 4]), offset: offset))
            offset = end
        }
        return JournalContents(vm: vm, records: records, validLength: offset, tornBytes: bytes.count - offset)
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    private static func load<T: FixedWidthInteger>(_ type: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}

/// A journal that cannot be used, with the file, where, and what to do.
public struct JournalError: Error, Hashable, Sendable, CustomStringConvertible {
    package enum Kind: Hashable, Sendable {
        case notAJournal(file: String, detail: String)
        case wrongVM(file: String, found: VMID, expected: VMID)
        case damaged(file: String, offset: Int, detail: String)
        case newerEpoch(file: String, vm: VMID, found: Epoch, own: Epoch)
        case io(file: String, operation: String, errno: Int32, detail: String)
        case closed(file: String)
        case redirected(file: String, detail: String)
    }

    package let kind: Kind

    package init(_ kind: Kind) { self.kind = kind }

    /// The byte offset of the damaged record, for damage.
    public var damagedOffset: Int? {
        if case .damaged(_, let offset, _) = kind { return offset }
        return nil
    }

    /// Whether another owner has written the journal under a newer epoch.
    public var isNewerEpoch: Bool {
        if case .newerEpoch = kind { return true }
        return false
    }

    public var description: String {
        switch kind {
        case .notAJournal(let file, let detail):
            "\(file) is not a Flotilla disk journal: \(detail); check the VM's disk file, or move the file away to start an empty journal"
        case .wrongVM(let file, let found, let expected):
            "\(file) is the journal of \(found), not \(expected); two VMs name the same disk file, or the file was copied — check the disk files"
        case .damaged(let file, let offset, let detail):
            "\(file) is damaged at byte \(offset): \(detail); records after it may be acknowledged writes, so it is not truncated — restore the file from a copy, or inspect it and cut it at that offset by hand"
        case .newerEpoch(let file, let vm, let found, let own):
            "\(file) holds records of \(vm) at epoch \(found), newer than this owner's epoch \(own): another node owns the VM now, so this one must not write"
        case .io(let file, let operation, let errno, let detail):
            "\(operation) \(file) failed (errno \(errno): \(detail)); check the shared volume is mounted and writable"
        case .closed(let file):
            "the journal \(file) is closed; start the guest again to reopen it"
        case .redirected(let file, let detail):
            "redirected I/O to \(file) through the volume's coordinator failed: \(detail)"
        }
    }
}

/// CRC-32C (Castagnoli, reflected 0x1EDC6F41), the checksum on each journal record.
enum CRC32C {
    static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = ~0
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return ~crc
    }

    private static let table: [UInt32] = (0..<256).map { byte in
        var crc = UInt32(byte)
        for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }
}
