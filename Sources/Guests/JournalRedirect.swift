// The path a guest's journal takes when its node cannot reach the disk itself: through the volume's coordinator.
public import ClusterModel

/// Redirected I/O (DESIGN.md §11): when a node's direct path to a volume is broken, its guests
/// open and append their journals through the volume's coordinator, which does the file I/O
/// and fsyncs before it answers — the same acknowledgement a direct append gives.
///
/// The guest asks `isRedirected()` before it opens and before every append, so a path that
/// breaks or heals takes effect at the next record: the guest closes one path and opens the
/// other, and the sequence goes on across the switch.
public protocol JournalRedirect: Sendable {
    /// Whether the guest must use the coordinator for its next open or append.
    func isRedirected() -> Bool
    /// Opens (replays) the journal at the coordinator under `epoch`: a torn tail is cut, damage
    /// and a newer epoch on disk are refused, as `DiskJournal.open` does.
    func open(vm: VMID, epoch: Epoch) async throws(JournalError) -> JournalPosition
    /// Appends the record `id` at the coordinator; returns once it is fsynced there.
    func append(_ id: JournalRecordID, payload: [UInt8]) async throws(JournalError)
}

/// Where a journal stands: what opening it found, and the sequence its next record gets.
public struct JournalPosition: Hashable, Sendable, Codable {
    public var recordsReplayed: Int
    public var tornBytes: Int
    public var nextSequence: UInt64
    /// The epoch of the last record, or nil when the journal has none.
    public var lastEpoch: Epoch?

    public init(recordsReplayed: Int, tornBytes: Int, nextSequence: UInt64, lastEpoch: Epoch?) {
        self.recordsReplayed = recordsReplayed
        self.tornBytes = tornBytes
        self.nextSequence = nextSequence
        self.lastEpoch = lastEpoch
    }

    public init(_ journal: DiskJournal) {
        self.init(
            recordsReplayed: journal.recovered.records.count, tornBytes: journal.recovered.tornBytes,
            nextSequence: journal.nextSequence, lastEpoch: journal.lastEpoch)
    }
}

extension JournalError {
    /// The coordinator refused or could not do a redirected open or append; `detail` says why.
    public static func redirected(file: String, _ detail: String) -> JournalError {
        JournalError(.redirected(file: file, detail: detail))
    }
}
