// Tests of restarting a node from disk, including the states a crash mid-write can leave.
import ClusterModel
import RaftCore
import Testing

private func entry(_ term: Term, _ index: LogIndex) -> Entry {
    Entry(term: term, index: index, payload: .command(Array("t\(term)i\(index)".utf8)))
}

private func restart(
    hardState: HardState,
    snapshot: Snapshot? = nil,
    entries: [Entry]
) throws(RestoreError) -> RaftNode {
    try RaftNode(
        configuration: RaftConfiguration(id: 1),
        hardState: hardState,
        snapshot: snapshot,
        entries: entries,
        bootstrapMembership: Membership(voters: [1, 2, 3]),
        random: SeededGenerator(seed: 1)
    )
}

@Test func restartKeepsTermVoteCommitAndLog() throws {
    let node = try restart(
        hardState: HardState(term: 3, vote: 2, commit: 2),
        entries: [entry(1, 1), entry(2, 2), entry(3, 3)]
    )
    let status = node.status
    #expect(status.term == 3 && status.vote == 2 && status.commit == 2 && status.lastIndex == 3)
    #expect(status.applied == 0, "committed entries are handed out again after a restart")
}

@Test func entriesWrittenWithoutTheirHardStateRaiseTheTermAndForgetTheVote() throws {
    // The batch with the term-5 entry crashed before its hard state reached the disk.
    let node = try restart(hardState: HardState(term: 4, vote: 1, commit: 1), entries: [entry(1, 1), entry(5, 2)])
    #expect(node.status.term == 5)
    #expect(node.status.vote == nil)
}

@Test func aSnapshotWrittenWithoutItsHardStateMovesCommitToTheSnapshot() throws {
    let snapshot = Snapshot(
        metadata: SnapshotMetadata(index: 80, term: 4, membership: Membership(voters: [1, 2, 3])),
        data: []
    )
    // The old log is still there too: it disagrees with the snapshot at index 80 and is dropped.
    let node = try restart(
        hardState: HardState(term: 4, vote: nil, commit: 31),
        snapshot: snapshot,
        entries: (1...90).map { entry(3, LogIndex(UInt64($0))) }
    )
    #expect(node.status.commit == 80)
    #expect(node.status.lastIndex == 80)
}

@Test func entriesAfterAMatchingSnapshotAreKept() throws {
    let snapshot = Snapshot(
        metadata: SnapshotMetadata(index: 2, term: 1, membership: Membership(voters: [1, 2, 3])),
        data: []
    )
    let node = try restart(
        hardState: HardState(term: 1, vote: nil, commit: 2),
        snapshot: snapshot,
        entries: [entry(1, 1), entry(1, 2), entry(1, 3)]
    )
    #expect(node.status.firstIndex == 3 && node.status.lastIndex == 3)
}

@Test func aGapInTheStoredLogIsAnError() {
    #expect {
        try restart(hardState: HardState(term: 2, commit: 0), entries: [entry(1, 1), entry(2, 3)])
    } throws: { error in
        "\(error)".contains("expected index 2")
    }
}

@Test func aCommitBeyondTheStoredLogIsAnError() {
    #expect {
        try restart(hardState: HardState(term: 1, commit: 5), entries: [entry(1, 1)])
    } throws: { error in
        "\(error)".contains("beyond the stored log")
    }
}
