// Tests of how a simulated disk's Raft records replay into a log, as a restart reads them.
import ClusterModel
import FlotillaTestKit
import RaftCore
import Testing

private func entry(_ term: Term, _ index: LogIndex) -> Entry {
    Entry(term: term, index: index, payload: .command(Array("e\(index)".utf8)))
}

private func snapshot(at index: LogIndex, term: Term) -> Snapshot {
    Snapshot(metadata: SnapshotMetadata(index: index, term: term, membership: Membership(voters: [1])), data: [])
}

@Test func entriesAppendAndAConflictingEntryReplacesTheSuffix() throws {
    let state = try DurableRaftState(replaying: [
        .entry(entry(1, 1)), .entry(entry(1, 2)), .entry(entry(1, 3)),
        .hardState(HardState(term: 2, vote: 1, commit: 1)),
        .entry(entry(2, 2)),
    ])
    #expect(state.entries == [entry(1, 1), entry(2, 2)])
    #expect(state.hardState == HardState(term: 2, vote: 1, commit: 1))
    #expect(state.term(at: 2) == 2)
    #expect(state.term(at: 3) == nil)
}

@Test func anEntryThatWouldLeaveAHoleIsAnError() {
    #expect(throws: DurableRaftState.GapError.self) {
        try DurableRaftState(replaying: [.entry(entry(1, 1)), .entry(entry(1, 3))])
    }
}

@Test func aSnapshotKeepsTheMatchingSuffixAndDropsTheRest() throws {
    let entries: [RaftRecord] = (1...5).map { .entry(entry(1, LogIndex($0))) }
    let matching = try DurableRaftState(replaying: entries + [.snapshot(snapshot(at: 3, term: 1))])
    #expect(matching.firstIndex == 4 && matching.lastIndex == 5)
    #expect(matching.term(at: 3) == 1)
    #expect(matching.entry(at: 3) == nil)

    let conflicting = try DurableRaftState(replaying: entries + [.snapshot(snapshot(at: 3, term: 2))])
    #expect(conflicting.entries.isEmpty && conflicting.lastIndex == 3)

    // An older snapshot than the one held changes nothing; an entry it covers is ignored.
    let stale = try DurableRaftState(replaying: [
        .snapshot(snapshot(at: 3, term: 1)), .snapshot(snapshot(at: 2, term: 1)), .entry(entry(1, 2)),
    ])
    #expect(stale.snapshotIndex == 3 && stale.entries.isEmpty)
}

@Test func theCompactRecordsReplayToTheSameState() throws {
    let state = try DurableRaftState(replaying: [
        .entry(entry(1, 1)), .entry(entry(1, 2)), .snapshot(snapshot(at: 1, term: 1)),
        .hardState(HardState(term: 1, vote: 2, commit: 2)), .entry(entry(1, 3)),
    ])
    #expect(try DurableRaftState(replaying: state.records) == state)
}
