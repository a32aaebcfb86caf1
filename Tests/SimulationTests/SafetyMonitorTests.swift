// Tests that each safety check fires on a hand-made violation and stays quiet on a healthy history.
import ClusterModel
import FlotillaTestKit
import RaftCore
import Testing

private func entry(_ term: Term, _ index: LogIndex, _ text: String = "x") -> Entry {
    Entry(term: term, index: index, payload: .command(Array(text.utf8)))
}

private func log(_ entries: [Entry], commit: LogIndex = 0) throws -> DurableRaftState {
    try DurableRaftState(replaying: entries.map { .entry($0) } + [.hardState(HardState(term: 1, commit: commit))])
}

private func invariant(_ body: () throws(SafetyViolation) -> Void) -> String? {
    do {
        try body()
        return nil
    } catch {
        return error.invariant
    }
}

@Test func twoLeadersInOneTermBreakElectionSafety() throws {
    var monitor = SafetyMonitor()
    let empty = DurableRaftState()
    try monitor.observeLeader(1, term: 2, log: empty)
    try monitor.observeLeader(1, term: 2, log: empty)
    try monitor.observeLeader(2, term: 3, log: empty)
    #expect(
        invariant { () throws(SafetyViolation) in try monitor.observeLeader(3, term: 2, log: empty) }
            == "election safety")
}

@Test func differentEntriesAtOneIndexAndTermBreakLogMatching() throws {
    var monitor = SafetyMonitor()
    let first = entry(1, 1, "a")
    try monitor.observeWrite(first, by: 1, log: try log([first]))
    try monitor.observeWrite(first, by: 2, log: try log([first]))
    let impostor = entry(1, 1, "b")
    #expect(
        invariant { () throws(SafetyViolation) in try monitor.observeWrite(impostor, by: 3, log: try! log([impostor])) }
            == "log matching")
}

@Test func theSameEntryAfterADifferentTermBreaksLogMatching() throws {
    var monitor = SafetyMonitor()
    let tail = entry(3, 2)
    try monitor.observeWrite(tail, by: 1, log: try log([entry(1, 1), tail]))
    #expect(
        invariant { () throws(SafetyViolation) in
            try monitor.observeWrite(tail, by: 2, log: try! log([entry(2, 1), tail]))
        } == "log matching")
}

@Test func aLeaderMissingACommittedEntryBreaksLeaderCompleteness() throws {
    var monitor = SafetyMonitor()
    let committed = [entry(1, 1), entry(1, 2)]
    try monitor.observeLeader(1, term: 1, log: try log(committed))
    try monitor.observeCommit(2, by: 1, term: 1, isLeader: true, log: try log(committed))
    // A leader of a later term with the whole log is fine; one missing index 2 is not.
    try monitor.observeLeader(2, term: 2, log: try log(committed + [entry(2, 3)]))
    #expect(
        invariant { () throws(SafetyViolation) in
            try monitor.observeLeader(3, term: 3, log: try! log([entry(1, 1), entry(3, 2)]))
        } == "leader completeness")
}

@Test func committingOrApplyingDifferentEntriesBreaksStateMachineSafety() throws {
    var monitor = SafetyMonitor()
    let committed = [entry(1, 1, "a")]
    try monitor.observeCommit(1, by: 1, term: 1, isLeader: true, log: try log(committed))
    #expect(
        invariant { () throws(SafetyViolation) in
            try monitor.observeCommit(1, by: 2, term: 2, isLeader: false, log: try! log([entry(2, 1, "b")]))
        } == "state-machine safety")
    try monitor.observeApply(entry(1, 1, "a"), by: 1)
    #expect(
        invariant { () throws(SafetyViolation) in try monitor.observeApply(entry(2, 1, "b"), by: 3) }
            == "state-machine safety")
}

@Test func aCommittedEntryNoDiskHoldsIsLost() throws {
    var monitor = SafetyMonitor()
    let committed = [entry(1, 1), entry(1, 2)]
    try monitor.observeCommit(2, by: 1, term: 1, isLeader: true, log: try log(committed))
    try monitor.checkNothingCommittedLost(durable: [1: try log(committed, commit: 2), 2: try log([entry(1, 1)])])
    #expect(
        invariant { () throws(SafetyViolation) in
            try monitor.checkNothingCommittedLost(durable: [1: try! log([entry(1, 1)]), 2: try! log([entry(1, 1)])])
        } == "no committed entry lost")
    // A disk whose hard state claims more commitment than its log holds has lost entries too.
    #expect(
        invariant { () throws(SafetyViolation) in
            try monitor.checkNothingCommittedLost(durable: [
                1: try! log(committed), 2: try! log([entry(1, 1)], commit: 2),
            ])
        } == "no committed entry lost")
}

@Test func replacingACommittedEntryLosesIt() throws {
    var monitor = SafetyMonitor()
    let committed = [entry(1, 1), entry(1, 2)]
    try monitor.observeCommit(2, by: 1, term: 1, isLeader: true, log: try log(committed))
    // A stale leader that never held index 2 may write its own entry there; it will never commit.
    try monitor.observeWrite(entry(2, 2, "stale"), by: 2, log: try log([entry(1, 1), entry(2, 2, "stale")]))
    #expect(
        invariant { () throws(SafetyViolation) in
            try monitor.observeWrite(
                entry(3, 2, "y"), replacing: entry(1, 2), by: 3, log: try! log([entry(1, 1), entry(3, 2, "y")]))
        } == "no committed entry lost")
}
