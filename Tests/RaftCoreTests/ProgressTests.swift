// Tests of the leader's per-follower flow control: the inflight window and the back-off on rejection.
import ClusterModel
import Testing

@testable import RaftCore

@Test func inflightWindowIsBoundedByCount() {
    var window = Inflights(capacity: 3, maxBytes: 1000)
    window.add(lastIndex: 1, bytes: 10)
    window.add(lastIndex: 2, bytes: 10)
    #expect(!window.isFull)
    window.add(lastIndex: 5, bytes: 10)
    #expect(window.isFull)
    window.free(through: 2)
    #expect(window.count == 1 && window.bytes == 10 && !window.isFull)
}

@Test func inflightWindowIsBoundedByBytes() {
    var window = Inflights(capacity: 100, maxBytes: 100)
    window.add(lastIndex: 1, bytes: 60)
    #expect(!window.isFull)
    window.add(lastIndex: 2, bytes: 60)
    #expect(window.isFull, "a message may overshoot the byte bound, but then the window is full")
    window.free(through: 1)
    #expect(window.bytes == 60 && !window.isFull)
}

@Test func freeingKeepsLaterMessagesAcrossManyRounds() {
    var window = Inflights(capacity: 8, maxBytes: 1 << 20)
    var next: UInt64 = 1
    for round in 0..<200 {
        while !window.isFull {
            window.add(lastIndex: LogIndex(next), bytes: 1)
            next += 1
        }
        // Acknowledge all but the newest three.
        window.free(through: LogIndex(next - 4))
        #expect(window.count == 3, "round \(round)")
        #expect(window.bytes == 3)
    }
}

private func progress(match: LogIndex, next: LogIndex, mode: ReplicationMode) -> Progress {
    var record = Progress(next: next, inflights: Inflights(capacity: 4, maxBytes: 1 << 20))
    record.match = match
    record.mode = mode
    return record
}

@Test func probeRejectionJumpsToTheHint() {
    var record = progress(match: 0, next: 11, mode: .probe)
    record.probeSent = true
    let accepted = record.backOff(rejected: 10, matchHint: 4)
    #expect(accepted)
    #expect(record.next == 5)
    #expect(!record.probeSent, "the next probe may go out at once")
}

@Test func staleProbeRejectionIsIgnored() {
    var record = progress(match: 0, next: 6, mode: .probe)
    // An answer to an earlier probe at index 10, after next already moved to 6.
    let accepted = record.backOff(rejected: 10, matchHint: 2)
    #expect(!accepted)
    #expect(record.next == 6)
}

@Test func probeNeverBacksOffBelowMatch() {
    var record = progress(match: 5, next: 9, mode: .probe)
    let accepted = record.backOff(rejected: 8, matchHint: 1)
    #expect(accepted)
    #expect(record.next == 6)
}

@Test func replicateRejectionAboveMatchRestartsFromMatch() {
    var record = progress(match: 5, next: 20, mode: .replicate)
    let accepted = record.backOff(rejected: 12, matchHint: 7)
    #expect(accepted)
    #expect(record.next == 6)
    let staleAccepted = record.backOff(rejected: 4, matchHint: 0)
    #expect(!staleAccepted, "a rejection at or below match is stale")
}

@Test func acknowledgementMovesMatchAndNextForwardOnly() {
    var record = progress(match: 5, next: 9, mode: .replicate)
    let updated = record.acknowledge(through: 7)
    #expect(updated)
    #expect(record.match == 7 && record.next == 9)
    let updatedAgain = record.acknowledge(through: 6)
    #expect(!updatedAgain, "an old acknowledgement tells nothing new")
    #expect(record.match == 7)
}

@Test func leavingSnapshotModeProbesAfterTheSnapshot() {
    var record = progress(match: 2, next: 3, mode: .probe)
    record.becomeSnapshot(index: 40)
    record.becomeProbe()
    #expect(record.next == 41)
}
