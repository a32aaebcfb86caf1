// Disk states a crash before fsync can leave behind, which a restarting core must accept.
import ClusterModel
import FlotillaTestKit
import RaftCore
import Testing

private let voters = Membership(voters: [1, 2, 3])

private func restore(_ records: [RaftRecord]) throws {
    let state = try DurableRaftState(replaying: records)
    _ = try RaftNode(
        configuration: RaftConfiguration(id: 1), hardState: state.hardState, snapshot: state.snapshot,
        entries: state.entries, bootstrapMembership: voters, random: SeededGenerator(seed: 1))
}

/// A follower wrote a new leader's entries and was about to write the new term after them when it
/// crashed: the entries reached the disk, the hard state did not. Nothing had been acknowledged.
@Test func entriesOfANewerTermThanTheStoredHardStateRestore() {
    withKnownIssue("core bug 1a in /work/raft-bugs.md: restore rejects a stored term below the last entry's") {
        try restore([
            .entry(Entry(term: 1, index: 1, payload: .noop)),
            .hardState(HardState(term: 1, vote: 2, commit: 1)),
            .entry(Entry(term: 2, index: 2, payload: .noop)),
        ])
    }
}

/// A lagging node wrote the leader's snapshot and crashed before the hard state behind it.
@Test func aSnapshotBeyondTheStoredCommitRestores() {
    withKnownIssue("core bug 1b in /work/raft-bugs.md: restore rejects a stored commit below the snapshot") {
        let metadata = SnapshotMetadata(index: 80, term: 3, membership: voters)
        try restore([
            .hardState(HardState(term: 3, vote: nil, commit: 31)),
            .snapshot(Snapshot(metadata: metadata, data: [])),
        ])
    }
}
