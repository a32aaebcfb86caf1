// Raft's durable state on disk: hard state and entries in the write-ahead log, snapshots in files.
import ClusterModel
public import RaftCore

/// What a node finds on disk when it starts: everything needed to rebuild its `RaftNode`.
public struct RecoveredRaftState: Sendable {
    public var hardState: HardState
    public var snapshot: Snapshot?
    /// The entries after the snapshot (or from index 1), contiguous.
    public var entries: [Entry]
    /// A torn write at the end of the log that recovery cut off (never acknowledged), if any.
    public var tornTail: TornTail?
    /// True when nothing was ever stored (a new node).
    public var isEmpty: Bool { hardState == HardState() && snapshot == nil && entries.isEmpty }
}

/// The disk half of Raft's `Ready` contract (duty 1): persists snapshots, entries and hard state,
/// with one fsync per batch, and reads them back after a crash.
///
/// A batch whose only change is the commit index is not fsynced (etcd raft's `MustSync`): the
/// commit index is volatile state in Raft (Figure 2 of the paper) — every committed entry is
/// already durable on a majority, and a node that restarts with an older commit learns the newer
/// one from the leader. Such a hard-state record stays buffered in the log and reaches the disk
/// with the next batch that must sync (entries, a snapshot, a new term or vote) or a rotation — or
/// is written, unsynced, with a leader's next batch whose sync runs on another thread
/// (`persistLater`); a crash before a sync loses only unsynced records. Recovery therefore may
/// find a commit index older than the newest snapshot (the application snapshots at its applied
/// index, which can pass the last synced commit): it reports `commit = max(stored commit,
/// snapshot index)`, and `RaftNode`'s restart takes the same maximum, keeping the core's
/// invariant `log.snapshotIndex <= commit`.
///
/// Layout in its directory: `wal/` (write-ahead log segments) and `snap/` (snapshot files).
/// Log records: an entry (a later entry at an index replaces the stored suffix from there, as
/// Raft's truncation requires), the hard state, and a log reset (a snapshot from the leader
/// replaced the whole log). A snapshot file is fsynced before the reset record that refers to it
/// is written, so recovery can always trust the newest snapshot file.
///
/// Not `Sendable`: the node's storage loop owns it.
public final class RaftDiskStorage {
    enum RecordType: UInt8 {
        case entry = 1
        case hardState = 2
        case logReset = 3
    }

    private let log: WriteAheadLog
    private let snapshots: SnapshotStore
    /// The highest entry index written into each segment, to know which segments a snapshot covers.
    private var segmentLastIndex: [UInt64: LogIndex]
    /// The newest hard state handed to `persist` (written or still buffered).
    private var hardState: HardState
    /// The newest hard state known to be on disk: its term and vote decide whether a batch syncs.
    private var syncedHardState: HardState
    private var snapshotIndex: LogIndex

    private init(
        log: WriteAheadLog, snapshots: SnapshotStore, segmentLastIndex: [UInt64: LogIndex], hardState: HardState,
        snapshotIndex: LogIndex
    ) {
        self.log = log
        self.snapshots = snapshots
        self.segmentLastIndex = segmentLastIndex
        self.hardState = hardState
        self.syncedHardState = hardState
        self.snapshotIndex = snapshotIndex
    }

    /// Opens the storage in `directory` and recovers what it holds.
    public static func open(
        directory: String, segmentBytes: Int = 64 << 20
    ) throws(StorageError) -> (storage: RaftDiskStorage, recovered: RecoveredRaftState) {
        let snapshots = try SnapshotStore(directory: directory + "/snap")
        let stored = try snapshots.loadLatest()
        let snapshot: Snapshot?
        if let stored {
            do {
                snapshot = Snapshot(metadata: try SnapshotMetadata(wireBytes: stored.metadata), data: stored.data)
            } catch {
                throw .corruptRecord(
                    path: directory + "/snap", offset: 0,
                    reason: "the newest snapshot's metadata does not decode: \(error)")
            }
        } else {
            snapshot = nil
        }
        let walDirectory = directory + "/wal"
        let (log, records, tornTail) = try WriteAheadLog.open(
            .init(directory: walDirectory, segmentBytes: segmentBytes))

        var hardState = HardState()
        var entries: [Entry] = []
        var base: (index: LogIndex, term: Term)?  // the log starts after this (a snapshot's position)
        var segmentLastIndex: [UInt64: LogIndex] = [:]
        for record in records {
            func corrupt(_ reason: String) -> StorageError {
                .corruptRecord(
                    path: WriteAheadLog.segmentPath(record.segment, in: walDirectory), offset: 0, reason: reason)
            }
            do {
                switch RecordType(rawValue: record.type) {
                case .entry:
                    let entry = try Entry(wireBytes: record.payload)
                    segmentLastIndex[record.segment] = max(segmentLastIndex[record.segment] ?? 0, entry.index)
                    if let base, entry.index <= base.index { continue }
                    let first = entries.first?.index ?? (base.map { $0.index + 1 } ?? entry.index)
                    guard entry.index >= first, entry.index <= first + UInt64(entries.count) else {
                        throw corrupt(
                            "entry \(entry.index) does not follow the log \(first)..<\(first + UInt64(entries.count))")
                    }
                    entries.removeLast(entries.count - Int(entry.index - first))
                    entries.append(entry)
                case .hardState:
                    hardState = try HardState(wireBytes: record.payload)
                case .logReset:
                    let metadata = try SnapshotMetadata(wireBytes: record.payload)
                    base = (metadata.index, metadata.term)
                    entries.removeAll()
                case nil:
                    throw corrupt("unknown record type \(record.type)")
                }
            } catch let error as WireFormatError {
                throw corrupt("a record does not decode: \(error)")
            } catch let error as StorageError {
                throw error
            } catch {
                throw corrupt("\(error)")
            }
        }

        // The newest snapshot file may be newer than the log's last reset (the application took
        // it, or a crash came after the file and before its reset record). Keep the entries after
        // it only if the log holds the snapshot's own entry with its term: then they continue it.
        if let snapshot {
            let index = snapshot.metadata.index
            if let base, base.index > index {
                throw .corruptRecord(
                    path: walDirectory, offset: 0,
                    reason:
                        "the log was reset to a snapshot at \(base.index), but the newest snapshot file is at \(index)")
            }
            if base?.index != index {
                let continues = entries.contains { $0.index == index && $0.term == snapshot.metadata.term }
                entries = continues ? entries.filter { $0.index > index } : []
            }
            // The durable commit may be older than the snapshot (commit-only hard states are not
            // synced); everything up to the snapshot is committed, so the commit is at least there.
            if hardState.commit < index { hardState.commit = index }
        }
        let storage = RaftDiskStorage(
            log: log, snapshots: snapshots, segmentLastIndex: segmentLastIndex, hardState: hardState,
            snapshotIndex: snapshot?.metadata.index ?? 0)
        return (
            storage, RecoveredRaftState(hardState: hardState, snapshot: snapshot, entries: entries, tornTail: tornTail)
        )
    }

    /// Duty 1 of `Ready`: makes `snapshot`, `entries` and `hardState` durable, in that order, with
    /// one fsync for the log. When it returns, the batch's messages may be sent.
    ///
    /// A batch that only moves the commit index is buffered and not synced (see the type's
    /// documentation): it promises nothing a crash could take back.
    public func persist(hardState newHardState: HardState?, entries: [Entry], snapshot: Snapshot?) throws(StorageError)
    {
        try append(hardState: newHardState, entries: entries, snapshot: snapshot)
        // Writes a leader made with `persistLater` whose sync has not returned are synced here too:
        // this batch's messages leave when it returns, and may rest on them.
        guard mustSync(snapshot: snapshot, entries: entries) || log.hasUnsyncedWrites else { return }
        try log.sync()
        syncedHardState = hardState
        try rotateIfDue()
    }

    /// Duty 1 for a batch whose messages promise nothing about this disk (`Ready.canSendBeforePersisting`,
    /// no snapshot; its term and vote are durable already): the records are written, not synced,
    /// and this storage takes the next batches. True: the batch needs a sync, which `pendingSync`
    /// hands out for another thread. False: it needs none (only the commit moved), or it was done
    /// here (the segment was full and was closed, which syncs it).
    public func persistLater(hardState newHardState: HardState?, entries: [Entry]) throws(StorageError) -> Bool {
        precondition(
            newHardState.map { $0.term == syncedHardState.term && $0.vote == syncedHardState.vote } ?? true,
            "persistLater with a new term or vote, which must be durable before the batch's messages leave")
        try append(hardState: newHardState, entries: entries, snapshot: nil)
        guard mustSync(snapshot: nil, entries: entries) else { return false }
        if log.needsRotation {
            try log.sync()
            syncedHardState = hardState
            try rotateIfDue()
            return false
        }
        try log.write()
        return log.hasUnsyncedWrites
    }

    /// Records that a sync from `pendingSync` returned.
    public func completeSync(_ sync: DeferredSync) {
        log.completeSync(sync.request)
    }

    /// A sync that a batch of `persistLater` may still need, and that none is running for:
    /// everything written since the last one returned. Nil when all of it is durable.
    public func pendingSync() -> DeferredSync? {
        guard let request = log.syncRequest() else { return nil }
        return DeferredSync(request: request)
    }

    /// Buffers a batch's records in the log, in duty 1's order.
    private func append(hardState newHardState: HardState?, entries: [Entry], snapshot: Snapshot?)
        throws(StorageError)
    {
        if let snapshot {
            try snapshots.save(
                StoredSnapshot(
                    index: snapshot.metadata.index.rawValue, term: snapshot.metadata.term.rawValue,
                    metadata: snapshot.metadata.wireBytes, data: snapshot.data))
            try log.append(type: RecordType.logReset.rawValue, payload: snapshot.metadata.wireBytes)
            snapshotIndex = snapshot.metadata.index
        }
        if let last = entries.last {
            for entry in entries { try log.append(type: RecordType.entry.rawValue, payload: entry.wireBytes) }
            let segment = log.segments.last!
            segmentLastIndex[segment] = max(segmentLastIndex[segment] ?? 0, last.index)
        }
        if let newHardState {
            try log.append(type: RecordType.hardState.rawValue, payload: newHardState.wireBytes)
            hardState = newHardState
        }
    }

    /// A batch with a snapshot, entries, or a new term or vote must sync; one that moved only the
    /// commit need not (see the type's documentation).
    private func mustSync(snapshot: Snapshot?, entries: [Entry]) -> Bool {
        snapshot != nil || !entries.isEmpty || hardState.term != syncedHardState.term
            || hardState.vote != syncedHardState.vote
    }

    /// Starts a new segment once the current one is full (after a sync).
    private func rotateIfDue() throws(StorageError) {
        guard log.needsRotation else { return }
        // The new segment opens with the hard state, so older segments are never needed for it.
        try log.rotate()
        try log.append(type: RecordType.hardState.rawValue, payload: hardState.wireBytes)
        try log.sync()
    }

    /// Stores a snapshot the application took at an applied index (from `RaftNode.compact`), then
    /// removes the log segments it makes unnecessary.
    public func saveSnapshot(_ snapshot: Snapshot) throws(StorageError) {
        try snapshots.save(
            StoredSnapshot(
                index: snapshot.metadata.index.rawValue, term: snapshot.metadata.term.rawValue,
                metadata: snapshot.metadata.wireBytes, data: snapshot.data))
        snapshotIndex = max(snapshotIndex, snapshot.metadata.index)
        // Keep the segment holding the snapshot's own entry: recovery checks its term there.
        let keepFrom = log.segments.first { (segmentLastIndex[$0] ?? 0) >= snapshotIndex } ?? log.segments.last!
        try log.removeSegments(before: keepFrom)
        segmentLastIndex = segmentLastIndex.filter { $0.key >= keepFrom }
    }

    /// The number of log segment files (for status and tests).
    public var segmentCount: Int { log.segments.count }

    /// How many times the log was fsynced since the storage was opened (for tests and status).
    public var logSyncCount: Int { log.syncCount }
}

/// The sync a batch of `RaftDiskStorage.persistLater` needs: run `sync()` on another thread, then
/// hand it back to `RaftDiskStorage.completeSync` on the storage's own.
public struct DeferredSync: Sendable {
    let request: WALSyncRequest

    /// Blocks until the writes the sync covers are durable.
    public func sync() throws(StorageError) {
        try request.sync()
    }
}
