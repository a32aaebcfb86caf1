// Applied changes wake the agent at once: a VM failed over to a node starts without waiting for a timer.
import ClusterModel
import ClusterState
import Synchronization
import TestSupport
import Testing

@testable import Node

/// Holds each pass until the test lets it finish, and counts the passes that began.
private final class PassGate: Sendable {
    private let state = Mutex<(began: Int, released: Int, waiters: [CheckedContinuation<Void, Never>])>((0, 0, []))

    var began: Int { state.withLock { $0.began } }

    /// The pass: counted, then held until `release()` lets as many passes through as it was called.
    func pass() async {
        await withCheckedContinuation { continuation in
            let go = state.withLock { state -> Bool in
                state.began += 1
                if state.released >= state.began { return true }
                state.waiters.append(continuation)
                return false
            }
            if go { continuation.resume() }
        }
    }

    func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.released += 1
            return state.waiters.isEmpty ? nil : state.waiters.removeFirst()
        }
        waiter?.resume()
    }
}

@Suite struct StateChangesTests {
    @Test func aBurstOfSignalsDuringAPassWakesOneMorePassAndTheTimerIsTheBackstop() async throws {
        let clock = ManualClock()
        let changes = StateChanges(clock: NodeClock(clock))
        let gate = PassGate()
        let follower = Task { await changes.follow(every: .seconds(60)) { await gate.pass() } }
        defer { follower.cancel() }
        try await eventually("the first pass runs at once") { gate.began == 1 }

        // Twenty signals while the first pass runs: one wake-up waits, not twenty.
        for _ in 0..<20 { changes.signal() }
        #expect(changes.signalCount == 20)
        #expect(changes.pendingWakeups == 1)
        gate.release()
        try await eventually("the burst runs a second pass") { gate.began == 2 }
        #expect(changes.pendingWakeups == 0, "the second pass took the only wake-up")

        // Nothing is due now; the next pass comes from the timer when the clock reaches it.
        gate.release()
        try await eventually("the timer waits for the clock") { clock.sleepers == 1 }
        #expect(gate.began == 2)
        clock.advance(by: .seconds(60))
        try await eventually("a minute on, the timer runs a third pass") { gate.began == 3 }
        #expect(changes.pendingWakeups == 0)
        gate.release()
    }

    @Test func theStateMachineSignalsWhatChangesPlacementButNotSettings() throws {
        let changes = StateChanges(clock: NodeClock(ManualClock()))
        var machine = ClusterStateMachine(addressBook: AddressBook(configured: []), changes: changes)

        func apply(_ command: ClusterCommand, at index: UInt64) {
            let answer = try? machine.apply(
                CommandEnvelope(proposedAt: 0, command: command).encoded, at: LogIndex(index))
            guard let answer, case .applied = try? CommandResult(decoding: answer) else {
                Issue.record("\(command) was not applied")
                return
            }
        }
        apply(.setSetting(key: "failover.max-per-vm", value: "2"), at: 1)
        apply(.deleteSetting(key: "failover.max-per-vm"), at: 2)
        #expect(changes.signalCount == 0, "settings change nothing a node runs: no wake-up")

        let addresses = MemberAddresses(
            peer: Endpoint(host: "10.0.0.1", port: 7201), client: Endpoint(host: "10.0.0.1", port: 7101))
        apply(.registerNode(NodeRegistration(id: 1, addresses: addresses, role: .voter, usableMemory: 1 << 30)), at: 3)
        #expect(changes.signalCount == 1, "registering a node wakes the followers")
    }
}
