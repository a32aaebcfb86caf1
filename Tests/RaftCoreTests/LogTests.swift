// Tests of the in-memory log: term lookups across the snapshot boundary and the conflict hint.
import ClusterModel
import Testing

@testable import RaftCore

/// A log holding one entry per term in `terms`, starting at index `snapshotIndex + 1`.
private func makeLog(snapshotIndex: LogIndex = 0, snapshotTerm: Term = 0, terms: [UInt64]) -> RaftLog {
    let entries = terms.enumerated().map { offset, term in
        Entry(term: Term(term), index: snapshotIndex + UInt64(offset + 1), payload: .noop)
    }
    return RaftLog(snapshotIndex: snapshotIndex, snapshotTerm: snapshotTerm, entries: entries)
}

@Test func termLookupCoversSnapshotAndEntriesOnly() {
    let log = makeLog(snapshotIndex: 5, snapshotTerm: 2, terms: [2, 3, 3])
    #expect(log.term(at: 4) == nil)
    #expect(log.term(at: 5) == 2)
    #expect(log.term(at: 7) == 3)
    #expect(log.term(at: 9) == nil)
    #expect(log.firstIndex == 6 && log.lastIndex == 8 && log.lastTerm == 3)
}

/// Figure 7's follower (f) against a leader probing at index 10 with term 6: (f) holds terms
/// 1 1 1 2 2 2 3 3 3 3 3, so the last index at or below 10 with a term of at most 6 is 10 (term 3).
/// The leader (1 1 1 4 4 5 5 6 6 6) then skips to its last entry with term <= 3: index 3.
@Test func conflictHintSkipsAWholeTermPerRoundTrip() {
    let follower = makeLog(terms: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3])
    let hint = follower.lastIndex(atOrBelow: 10, withTermAtMost: 6)
    #expect(hint.index == 10 && hint.term == 3)
    let leader = makeLog(terms: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6])
    let probe = leader.lastIndex(atOrBelow: hint.index, withTermAtMost: hint.term)
    #expect(probe.index == 3 && probe.term == 1)
}

@Test func conflictHintOfAShortLogIsItsLastEntry() {
    let follower = makeLog(terms: [1, 1, 1, 4])
    let hint = follower.lastIndex(atOrBelow: 10, withTermAtMost: 6)
    #expect(hint.index == 4 && hint.term == 4)
}

@Test func conflictHintStopsAtTheSnapshot() {
    let log = makeLog(snapshotIndex: 5, snapshotTerm: 2, terms: [7, 7])
    let hint = log.lastIndex(atOrBelow: 7, withTermAtMost: 3)
    #expect(hint.index == 5 && hint.term == 2)
}

@Test func firstConflictFindsTheFirstDifferingTerm() {
    let log = makeLog(terms: [1, 1, 2, 2])
    let incoming = [
        Entry(term: 1, index: 2, payload: .noop),
        Entry(term: 3, index: 3, payload: .noop),
        Entry(term: 3, index: 4, payload: .noop),
    ]
    #expect(log.firstConflict(in: incoming) == 1)
    #expect(log.firstConflict(in: Array(incoming.prefix(1))) == nil)
}

@Test func compactionKeepsTheTermOfTheLastCompactedEntry() {
    var log = makeLog(terms: [1, 2, 3, 4])
    log.compact(through: 3)
    #expect(log.snapshotIndex == 3 && log.snapshotTerm == 3)
    #expect(log.entries(from: 0).map(\.index) == [4])
    #expect(log.entries(from: 4, through: 4, maxBytes: 0).count == 1, "at least one entry per message")
}
