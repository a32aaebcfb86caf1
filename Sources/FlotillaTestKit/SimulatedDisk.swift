// A simulated disk for one node: writes become durable only when synced, and a crash tears them.

/// An append-only record store with the failure modes of a real disk.
///
/// A write lands in the page cache (`unsynced`) and becomes durable at `sync()`. A crash keeps
/// an arbitrary prefix of the unsynced writes (the kernel may have flushed some of them) and may
/// leave the next record torn: partly on disk, with a checksum that does not match. Recovery
/// truncates a torn record at the tail, as the real write-ahead log does.
public struct SimulatedDisk<Record> {
    /// What is physically on disk after a crash: whole records, or a torn one.
    public enum StoredRecord {
        case intact(Record)
        /// A record cut short by a crash; `writtenFraction` says how much of it reached the disk.
        case torn(writtenFraction: Double)
    }

    /// What a crash did to the writes that had not been synced.
    public struct CrashDamage: Hashable, Sendable {
        /// Unsynced records that survived the crash whole.
        public var survived: Int
        /// Unsynced records lost entirely (the torn one included).
        public var lost: Int
        /// Whether the first lost record was left half-written.
        public var tornRecord: Bool
    }

    /// Recovery found damage that is not a torn tail: data that was synced is unreadable.
    public struct CorruptionError: Error, CustomStringConvertible {
        public var recordPosition: Int
        public var description: String {
            "record \(recordPosition) is torn but is not the last record: synced data is damaged; "
                + "restore this node from a peer's snapshot"
        }
    }

    private var stored: [StoredRecord] = []
    /// Written but not yet synced, in write order.
    public private(set) var unsynced: [Record] = []
    public private(set) var syncCount = 0
    public private(set) var tornRecordsTruncated = 0

    public init() {}

    /// The records that survive any crash (ignoring a torn tail, which recovery removes).
    public var durableRecords: [Record] {
        stored.compactMap { if case .intact(let record) = $0 { record } else { nil } }
    }

    /// Whether the disk holds a torn record that recovery has not yet removed.
    public var hasTornTail: Bool {
        if case .torn = stored.last { true } else { false }
    }

    /// Records written since the disk was made, synced or not: what a sync requested now covers.
    public private(set) var writtenCount = 0

    public mutating func write(_ record: Record) {
        unsynced.append(record)
        writtenCount += 1
    }

    /// Makes durable the records written before `writtenCount` was `count`: an fsync that began
    /// then, on another thread, and returned now (what was written after it may stay unsynced).
    public mutating func sync(writtenBefore count: Int) {
        let alreadySynced = writtenCount - unsynced.count
        let covered = min(unsynced.count, max(0, count - alreadySynced))
        guard covered > 0 else { return }
        stored.append(contentsOf: unsynced[..<covered].map { .intact($0) })
        unsynced.removeFirst(covered)
        syncCount += 1
    }

    /// Makes every written record durable (fsync).
    public mutating func sync() {
        guard !unsynced.isEmpty else { return }
        stored.append(contentsOf: unsynced.map { .intact($0) })
        unsynced.removeAll(keepingCapacity: true)
        syncCount += 1
    }

    /// Replaces the whole durable content at once, as writing a new file under a temporary name,
    /// syncing it and renaming it over the old one does (log compaction after a snapshot).
    public mutating func replaceDurable(with records: [Record]) {
        precondition(unsynced.isEmpty, "compacting with \(unsynced.count) unsynced records would reorder writes")
        stored = records.map { .intact($0) }
    }

    /// The process dies: a random prefix of the unsynced writes survives, the rest is lost, and
    /// with probability `tornWriteProbability` the first lost record is left torn on disk.
    public mutating func crash(random: inout SimulationRandom, tornWriteProbability: Double) -> CrashDamage {
        let pending = unsynced
        unsynced.removeAll()
        let survived = random.int(in: 0...pending.count)
        stored.append(contentsOf: pending[..<survived].map { .intact($0) })
        let lost = pending.count - survived
        var torn = false
        if lost > 0 && random.chance(tornWriteProbability) {
            stored.append(.torn(writtenFraction: Double(random.int(in: 1...99)) / 100))
            torn = true
        }
        return CrashDamage(survived: survived, lost: lost, tornRecord: torn)
    }

    /// Reads the disk back after a restart, truncating a torn tail record.
    public mutating func recover() throws(CorruptionError) -> [Record] {
        unsynced.removeAll()
        var records: [Record] = []
        records.reserveCapacity(stored.count)
        for (position, record) in stored.enumerated() {
            switch record {
            case .intact(let record):
                records.append(record)
            case .torn:
                guard position == stored.count - 1 else { throw CorruptionError(recordPosition: position) }
                stored.removeLast()
                tornRecordsTruncated += 1
            }
        }
        return records
    }
}
