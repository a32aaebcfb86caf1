// --force-new-cluster: a survivor keeps what it saw committed, lists what it drops, and becomes the only voter.
import ClusterModel
import ClusterState
import FlotillaTestKit
import Logging
import RaftCore
import RaftStorage
import Testing

@testable import Node

private let quiet = Logger(label: "flotilla.test", factory: { _ in SwiftLogNoOpLogHandler() })

private func command(_ key: String) -> EntryPayload {
    .command(CommandEnvelope(proposedAt: 1, command: .setSetting(key: key, value: "v")).encoded)
}

@Test func forcingANewClusterKeepsTheCommittedEntriesAndListsTheRest() throws {
    let work = try TemporaryDirectory()
    let raft = work.path + "/raft"
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: raft)
        let entries = [
            Entry(term: 1, index: 1, payload: .noop),
            Entry(term: 1, index: 2, payload: command("kept")),
            Entry(term: 2, index: 3, payload: .noop),
            Entry(term: 2, index: 4, payload: command("committed.too")),
            Entry(term: 2, index: 5, payload: command("maybe.lost")),
            Entry(term: 2, index: 6, payload: .membership(Membership(voters: [1, 2]))),
        ]
        try storage.persist(hardState: HardState(term: 3, vote: 2, commit: 4), entries: entries, snapshot: nil)
    }
    let plan = try ForcedNewCluster.rewrite(
        raftDirectory: raft, local: 1, bootstrapMembership: Membership(voters: [1, 2, 3]), logger: quiet)
    #expect(plan.previousMembership == Membership(voters: [1, 2, 3]))
    #expect(plan.discarded.map(\.index) == [5, 6])
    #expect(
        plan.lostEntries == [
            "entry 5 (term 2): command setSetting", "entry 6 (term 2): membership change to voters=(n1 n2)",
        ])
    #expect(plan.membershipEntry == Entry(term: 3, index: 5, payload: .membership(Membership(voters: [1]))))
    #expect(plan.hardState == HardState(term: 3, vote: 2, commit: 5))

    // What the node then starts from: entries 1–4, the new membership committed, a cluster of one that elects itself.
    let (_, recovered) = try RaftDiskStorage.open(directory: raft)
    #expect(recovered.entries.map(\.index) == [1, 2, 3, 4, 5])
    #expect(recovered.hardState.commit == 5)
    var node = try RaftNode(
        configuration: RaftConfiguration(id: 1), hardState: recovered.hardState, snapshot: nil,
        entries: recovered.entries, bootstrapMembership: Membership(voters: [1, 2, 3]), random: SeededGenerator(seed: 1)
    )
    #expect(node.status.membership == Membership(voters: [1]))
    node.campaign()
    while node.hasReady { node.advance(node.ready()) }
    #expect(node.role == .leader && node.term == 4)
    let index = try node.propose(Array("after".utf8))
    while node.hasReady { node.advance(node.ready()) }
    #expect(node.status.commit == index)
}

@Test func forcingANewClusterAfterASnapshotKeepsTheSnapshot() throws {
    let work = try TemporaryDirectory()
    let raft = work.path + "/raft"
    let snapshot = Snapshot(
        metadata: SnapshotMetadata(index: 40, term: 5, membership: Membership(voters: [1, 2, 3])), data: [6, 1, 2])
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: raft)
        try storage.persist(hardState: HardState(term: 5, vote: nil, commit: 40), entries: [], snapshot: snapshot)
    }
    let plan = try ForcedNewCluster.rewrite(
        raftDirectory: raft, local: 3, bootstrapMembership: Membership(), logger: quiet)
    #expect(plan.discarded.isEmpty && plan.previousMembership == Membership(voters: [1, 2, 3]))
    let (_, recovered) = try RaftDiskStorage.open(directory: raft)
    #expect(recovered.snapshot == snapshot)
    #expect(recovered.entries == [Entry(term: 5, index: 41, payload: .membership(Membership(voters: [3])))])
}

@Test func forcingANewClusterOnAnEmptyDirectoryIsRefused() throws {
    let work = try TemporaryDirectory()
    let error = #expect(throws: ForcedNewClusterError.self) {
        try ForcedNewCluster.rewrite(
            raftDirectory: work.path + "/raft", local: 1, bootstrapMembership: Membership(voters: [1]), logger: quiet)
    }
    #expect(error?.description.contains("holds no log") == true)
}
