// Disk states a crash before fsync can leave behind, which a restarting core must accept (core bug 1).
import ClusterModel
import FlotillaTestKit
import RaftCore
import Testing

private let voters = Membership(voters: [1, 2, 3])

private func restore(_ records: [RaftRecord]) throws -> RaftNode {
    let state = try DurableRaftState(replaying: records)
    return try RaftNode(
        configuration: RaftConfiguration(id: 1), hardState: state.hardState, snapshot: state.snapshot,
        entries: state.entries, bootstrapMembership: voters, random: SeededGenerator(seed: 1))
}

/// A follower wrote a new leader's entries and was about to write the new term after them when it
/// crashed: the entries reached the disk, the hard state did not. Nothing had been acknowledged.
@Test func entriesOfANewerTermThanTheStoredHardStateRestore() throws {
    let node = try restore([
        .entry(Entry(term: 1, index: 1, payload: .noop)),
        .hardState(HardState(term: 1, vote: 2, commit: 1)),
        .entry(Entry(term: 2, index: 2, payload: .noop)),
    ])
    #expect(node.term >= 2)
    #expect(node.status.lastIndex == 2)
}

/// A lagging node wrote the leader's snapshot and crashed before the hard state behind it.
@Test func aSnapshotBeyondTheStoredCommitRestores() throws {
    let metadata = SnapshotMetadata(index: 80, term: 3, membership: voters)
    let node = try restore([
        .hardState(HardState(term: 3, vote: nil, commit: 31)),
        .snapshot(Snapshot(metadata: metadata, data: [])),
    ])
    #expect(node.status.commit == 80)
}
