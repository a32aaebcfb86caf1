// A batch that only moves the commit index is not fsynced, and a crash that loses it is harmless.
import ClusterModel
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
        metadata: SnapshotMetadata(index: LogIndex(index), term: Term(term), membership: Membership(voters: [1])),
        data: Array("state at \(index)".utf8))
}

/// Restarts a one-voter node from what recovery found and drives it, persisting every `Ready`
/// into `storage`, until it is leader and has committed a new proposal: the node works.
private func restartAndCommitOneMore(
    _ recovered: RecoveredRaftState, storage: RaftDiskStorage
) throws -> (node: RaftNode, applied: [LogIndex], proposed: LogIndex) {
    var node = try RaftNode(
        configuration: RaftConfiguration(id: 1), hardState: recovered.hardState, snapshot: recovered.snapshot,
        entries: recovered.entries, bootstrapMembership: Membership(voters: [1]), random: SeededGenerator(seed: 4))
    var applied: [LogIndex] = []
    func drain() throws {
        while node.hasReady {
            let ready = node.ready()
            try storage.persist(hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot)
            applied += ready.committedEntries.map(\.entry.index)
            node.advance(ready)
        }
    }
    node.campaign()
    try drain()
    #expect(node.status.role == .leader)
    let proposed = try node.propose(Array("after the restart".utf8))
    try drain()
    return (node, applied, proposed)
}

@Test func onlyEntriesSnapshotsTermsAndVotesAreFsynced() throws {
    let directory = try TemporaryDirectory()
    let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
    var syncs = storage.logSyncCount
    func expectSync(_ expected: Bool, _ what: Comment) {
        #expect(storage.logSyncCount == syncs + (expected ? 1 : 0), what)
        syncs = storage.logSyncCount
    }
    try storage.persist(
        hardState: HardState(term: 1, vote: 1, commit: 0), entries: entries(1...3, term: 1), snapshot: nil)
    expectSync(true, "entries, a new term and a vote")
    for commit in 1...3 {
        try storage.persist(
            hardState: HardState(term: 1, vote: 1, commit: LogIndex(UInt64(commit))), entries: [], snapshot: nil)
        expectSync(false, "only the commit index moved to \(commit)")
    }
    try storage.persist(hardState: nil, entries: entries(4...4, term: 1), snapshot: nil)
    expectSync(true, "entries without a hard state")
    try storage.persist(hardState: HardState(term: 2, vote: nil, commit: 3), entries: [], snapshot: nil)
    expectSync(true, "a new term")
    try storage.persist(hardState: HardState(term: 2, vote: 3, commit: 3), entries: [], snapshot: nil)
    expectSync(true, "a vote")
    try storage.persist(hardState: HardState(term: 2, vote: 3, commit: 4), entries: [], snapshot: nil)
    expectSync(false, "only the commit index moved to 4")
    try storage.persist(hardState: nil, entries: [], snapshot: snapshot(at: 10, term: 2))
    expectSync(true, "a snapshot from the leader")
}

/// A crash loses the commit-only records written since the last fsync, and only those: the node
/// comes back with the older commit, catches up on its own (it is the only voter) and goes on.
@Test func aCrashLosesOnlyUnsyncedCommitsAndTheNodeGoesOn() throws {
    let directory = try TemporaryDirectory()
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
        try storage.persist(
            hardState: HardState(term: 1, vote: 1, commit: 2), entries: entries(1...5, term: 1), snapshot: nil)
        try storage.persist(hardState: HardState(term: 1, vote: 1, commit: 4), entries: [], snapshot: nil)
        try storage.persist(hardState: HardState(term: 1, vote: 1, commit: 5), entries: [], snapshot: nil)
        // The process dies here: nothing closes or syncs the storage.
    }
    let (storage, recovered) = try RaftDiskStorage.open(directory: directory.path)
    #expect(recovered.hardState == HardState(term: 1, vote: 1, commit: 2))
    #expect(recovered.entries == entries(1...5, term: 1))
    #expect(recovered.tornTail == nil, "the lost records never reached the file")

    let (node, applied, proposed) = try restartAndCommitOneMore(recovered, storage: storage)
    #expect(proposed > 5)
    #expect(node.status.commit == proposed)
    #expect(applied == (1...UInt64(proposed.rawValue)).map { LogIndex($0) }, "every entry applied once, in order")

    // The proposal's entry was fsynced with the buffered commit before it (the no-op's), so that
    // one survives the next crash; the proposal's own commit is again only buffered.
    let (_, again) = try RaftDiskStorage.open(directory: directory.path)
    #expect(again.hardState.commit == LogIndex(proposed.rawValue - 1))
    #expect(again.entries.last?.index == proposed)
}

/// A commit-only record that does reach the file (carried by a later fsync) and is then torn by a
/// crash at the end of the log is the ordinary torn tail: recovery cuts it and keeps what precedes.
@Test func aTornHardStateAtTheEndIsAnOrdinaryTornTail() throws {
    let directory = try TemporaryDirectory()
    let wal = directory.path + "/wal/0000000000000000.wal"
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
        try storage.persist(
            hardState: HardState(term: 1, vote: 1, commit: 0), entries: entries(1...5, term: 1), snapshot: nil)
        try storage.persist(hardState: HardState(term: 1, vote: 1, commit: 5), entries: [], snapshot: nil)
        // A vote in a new term must sync: it carries the commit-5 record to disk before its own.
        try storage.persist(hardState: HardState(term: 2, vote: 2, commit: 5), entries: [], snapshot: nil)
    }
    let full = try Data(contentsOf: URL(fileURLWithPath: wal)).prefix(try WriteAheadLog.recordsLength(ofSegment: wal))
    let (_, whole) = try RaftDiskStorage.open(directory: directory.path)
    #expect(whole.hardState == HardState(term: 2, vote: 2, commit: 5))
    // Cut one byte off the last record (the term-2 hard state): the commit-5 record is then last.
    try full.dropLast(1).write(to: URL(fileURLWithPath: wal))
    let (_, torn) = try RaftDiskStorage.open(directory: directory.path)
    #expect(torn.tornTail != nil)
    #expect(torn.hardState == HardState(term: 1, vote: 1, commit: 5))
    #expect(torn.entries == entries(1...5, term: 1))
}

/// The application snapshots at its applied index, which can be past the last synced commit. After
/// a crash, recovery must not report a commit below the snapshot (the core's invariant
/// `snapshotIndex <= commit`): everything the snapshot holds is committed.
@Test func aSnapshotNewerThanTheDurableCommitRaisesTheCommit() throws {
    let directory = try TemporaryDirectory()
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
        try storage.persist(
            hardState: HardState(term: 1, vote: 1, commit: 10), entries: entries(1...40, term: 1), snapshot: nil)
        try storage.persist(hardState: HardState(term: 1, vote: 1, commit: 35), entries: [], snapshot: nil)
        try storage.saveSnapshot(snapshot(at: 30, term: 1))
    }
    let (storage, recovered) = try RaftDiskStorage.open(directory: directory.path)
    #expect(recovered.snapshot?.metadata.index == 30)
    #expect(recovered.hardState.commit == 30, "the durable commit (10) is older than the snapshot")
    #expect(recovered.entries == entries(31...40, term: 1))

    let (node, applied, proposed) = try restartAndCommitOneMore(recovered, storage: storage)
    #expect(node.status.commit == proposed)
    #expect(applied == (31...UInt64(proposed.rawValue)).map { LogIndex($0) })
}
