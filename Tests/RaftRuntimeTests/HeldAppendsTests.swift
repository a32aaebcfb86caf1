// Appends without entries wait for the next write's append, which carries their commit, or for the delay.
import ClusterModel
import RaftCore
import Testing

@testable import RaftRuntime

private func append(to node: NodeID, entries: Int, commit: LogIndex) -> Message {
    let entries = (0..<entries).map { Entry(term: 2, index: LogIndex(UInt64(10 + $0)), payload: .noop) }
    return Message(
        from: 1, to: node, term: 2,
        kind: .append(AppendEntries(previousIndex: 9, previousTerm: 2, entries: entries, commit: commit)))
}

private let heartbeat = Message(from: 1, to: 2, term: 2, kind: .heartbeat(Heartbeat(commit: 9, readRound: 0)))

@Test func anEmptyAppendIsHeldAndTheNextAppendWithEntriesDropsIt() {
    var held = HeldAppends()
    #expect(held.route([append(to: 2, entries: 0, commit: 9), append(to: 3, entries: 0, commit: 9)], now: 100).isEmpty)
    #expect(held.due(delay: 50) == 150)
    // The next write's append to node 2 carries commit 9 and more: node 2's held append is dropped.
    let next = append(to: 2, entries: 1, commit: 9)
    #expect(held.route([next], now: 120) == [next])
    // Node 3's is still held, and leaves once it has waited the delay, not before.
    #expect(held.release(now: 149, delay: 50).isEmpty)
    #expect(held.release(now: 150, delay: 50) == [append(to: 3, entries: 0, commit: 9)])
    #expect(held.isEmpty && held.due(delay: 50) == nil)
}

@Test func aLaterEmptyAppendReplacesTheHeldOneAndKeepsItsWait() {
    var held = HeldAppends()
    _ = held.route([append(to: 2, entries: 0, commit: 9)], now: 100)
    _ = held.route([append(to: 2, entries: 0, commit: 11)], now: 140)
    // One per follower, the latest; due when the first was: no commit waits longer than the delay.
    #expect(held.due(delay: 50) == 150)
    #expect(held.release(now: 150, delay: 50) == [append(to: 2, entries: 0, commit: 11)])
}

@Test func otherMessagesLeaveAtOnceInOrderAndLeaveTheHeldAppendHeld() {
    var held = HeldAppends()
    let vote = Message(from: 1, to: 3, term: 3, kind: .vote(VoteRequest(lastIndex: 9, lastTerm: 2)))
    let sent = held.route(
        [append(to: 2, entries: 0, commit: 9), heartbeat, vote, append(to: 3, entries: 2, commit: 9)], now: 0)
    #expect(sent == [heartbeat, vote, append(to: 3, entries: 2, commit: 9)])
    #expect(held.release(now: 10, delay: 10) == [append(to: 2, entries: 0, commit: 9)])
}

@Test func removeAllForgetsWhatWasHeld() {
    var held = HeldAppends()
    _ = held.route([append(to: 2, entries: 0, commit: 9)], now: 0)
    held.removeAll()
    #expect(held.isEmpty && held.release(now: .max, delay: 0).isEmpty)
}
