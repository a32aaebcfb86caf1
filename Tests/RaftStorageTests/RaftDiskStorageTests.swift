import ClusterModel
// Raft's durable state comes back as Raft needs it: truncations applied, snapshots honoured.
import FlotillaTestKit
import Foundation
import RaftCore
import RaftStorage
import Testing

private func entries(_ indices: ClosedRange<UInt64>, term: UInt64) -> [Entry] {
    indices.map { Entry(term: Term(term), index: LogIndex($0), payload: .command(Array("v\($0)-t\(term)".utf8))) }
}

private func snapshot(at index: UInt64, term: UInt64) -> Snapshot {
    Snapshot(
        metadata: SnapshotMetadata(
            index: LogIndex(index), term: Term(term), membership: Membership(voters: [1, 2, 3]), appliedRequests: [7: 3]
        ),
        data: Array("state at \(index)".utf8))
}

@Test func entriesAndHardStateComeBack() throws {
    let directory = try TemporaryDirectory()
    do {
        let (storage, recovered) = try RaftDiskStorage.open(directory: directory.path)
        #expect(recovered.isEmpty)
        try storage.persist(
            hardState: HardState(term: 1, vote: 1, commit: 0), entries: entries(1...5, term: 1), snapshot: nil)
        try storage.persist(
            hardState: HardState(term: 1, vote: 1, commit: 5), entries: entries(6...6, term: 1), snapshot: nil)
    }
    let (_, recovered) = try RaftDiskStorage.open(directory: directory.path)
    #expect(recovered.hardState == HardState(term: 1, vote: 1, commit: 5))
    #expect(recovered.entries == entries(1...6, term: 1))
    #expect(recovered.snapshot == nil && recovered.tornTail == nil)
}

/// A new leader's entries replace the conflicting suffix (Raft §5.3), on disk as in memory.
@Test func laterEntriesReplaceTheStoredSuffix() throws {
    let directory = try TemporaryDirectory()
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
        try storage.persist(hardState: HardState(term: 1), entries: entries(1...10, term: 1), snapshot: nil)
        try storage.persist(hardState: HardState(term: 3), entries: entries(6...8, term: 3), snapshot: nil)
    }
    let (_, recovered) = try RaftDiskStorage.open(directory: directory.path)
    #expect(recovered.entries == entries(1...5, term: 1) + entries(6...8, term: 3))
}

/// A snapshot from the leader replaces the whole log; the log goes on after it.
@Test func aSnapshotFromTheLeaderResetsTheLog() throws {
    let directory = try TemporaryDirectory()
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
        try storage.persist(hardState: HardState(term: 1), entries: entries(1...30, term: 1), snapshot: nil)
        try storage.persist(hardState: HardState(term: 4, commit: 20), entries: [], snapshot: snapshot(at: 20, term: 2))
        try storage.persist(hardState: nil, entries: entries(21...25, term: 4), snapshot: nil)
    }
    let (_, recovered) = try RaftDiskStorage.open(directory: directory.path)
    #expect(recovered.snapshot == snapshot(at: 20, term: 2))
    #expect(recovered.entries == entries(21...25, term: 4))
    #expect(recovered.hardState.commit == 20)
}

/// The application's own snapshot keeps the entries after it and lets old segments go.
@Test func compactionKeepsTheTailAndRemovesCoveredSegments() throws {
    let directory = try TemporaryDirectory()
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: directory.path, segmentBytes: 512)
        for index in stride(from: UInt64(1), through: 200, by: 4) {
            try storage.persist(
                hardState: HardState(term: 2, commit: LogIndex(index)), entries: entries(index...index + 3, term: 2),
                snapshot: nil)
        }
        let before = storage.segmentCount
        try storage.saveSnapshot(snapshot(at: 150, term: 2))
        #expect(storage.segmentCount < before)
    }
    let (_, recovered) = try RaftDiskStorage.open(directory: directory.path, segmentBytes: 512)
    #expect(recovered.snapshot?.metadata.index == 150)
    #expect(recovered.entries == entries(151...200, term: 2))
    #expect(recovered.hardState == HardState(term: 2, commit: 197))
}

/// A crash after a leader's snapshot file was written but before its log record: the old entries
/// do not continue the snapshot (their term differs), so they are dropped, not glued onto it.
@Test func entriesThatDoNotContinueTheNewestSnapshotAreDropped() throws {
    let directory = try TemporaryDirectory()
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
        try storage.persist(hardState: HardState(term: 1, commit: 3), entries: entries(1...40, term: 1), snapshot: nil)
    }
    let snapshotFiles = try SnapshotStore(directory: directory.path + "/snap")
    let leaderSnapshot = snapshot(at: 30, term: 3)
    try snapshotFiles.save(
        StoredSnapshot(index: 30, term: 3, metadata: leaderSnapshot.metadata.wireBytes, data: leaderSnapshot.data))
    let (_, recovered) = try RaftDiskStorage.open(directory: directory.path)
    #expect(recovered.snapshot == leaderSnapshot)
    #expect(recovered.entries.isEmpty)
    #expect(recovered.hardState.commit == 30)
}

/// Cut the log anywhere in its last batch: recovery yields the state before that batch or after
/// it, never a mix and never an error.
@Test func aTornLastBatchRecoversToAConsistentState() throws {
    let directory = try TemporaryDirectory()
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
        try storage.persist(hardState: HardState(term: 1, commit: 2), entries: entries(1...4, term: 1), snapshot: nil)
    }
    let wal = directory.path + "/wal/0000000000000000.wal"
    let firstBatchEnd = try WriteAheadLog.recordsLength(ofSegment: wal)
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
        try storage.persist(hardState: HardState(term: 2, commit: 4), entries: entries(3...6, term: 2), snapshot: nil)
    }
    let full = try Data(contentsOf: URL(fileURLWithPath: wal)).prefix(try WriteAheadLog.recordsLength(ofSegment: wal))
    for cut in firstBatchEnd...full.count {
        try full.prefix(cut).write(to: URL(fileURLWithPath: wal))
        let (_, recovered) = try RaftDiskStorage.open(directory: directory.path)
        let expectedPrefix = entries(1...2, term: 1)
        #expect(Array(recovered.entries.prefix(2)) == expectedPrefix, "cut at \(cut)")
        if cut == full.count {
            #expect(recovered.entries == expectedPrefix + entries(3...6, term: 2))
            #expect(recovered.hardState == HardState(term: 2, commit: 4))
        } else if cut == firstBatchEnd {
            #expect(recovered.entries == entries(1...4, term: 1))
        }
        // Every entry that came back is whole and in order.
        #expect(recovered.entries.map(\.index) == (1...UInt64(recovered.entries.count)).map { LogIndex($0) })
    }
}
