// Applied changes wake the agent at once: a VM failed over to a node starts without waiting for a timer.
import ClusterModel
import ClusterState
import FlotillaTestKit
import Foundation
import Guests
import Logging
import Synchronization
import TestSupport
import Testing

@testable import Node

private let quiet = Logger(label: "flotilla.test", factory: { _ in SwiftLogNoOpLogHandler() })

@Suite struct StateChangesTests {
    @Test func aSignalRunsAnotherPassAndSignalsCoalesce() async throws {
        let changes = StateChanges()
        let passes = Mutex(0)
        let follower = Task {
            await changes.follow(every: .seconds(3600)) {
                passes.withLock { $0 += 1 }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        defer { follower.cancel() }
        try await eventually("the first pass runs at once") { passes.withLock { $0 } == 1 }
        changes.signal()
        try await eventually("a signal runs a second pass") { passes.withLock { $0 } == 2 }
        // A burst while a pass runs wakes one more pass, not one per signal.
        try await Task.sleep(for: .milliseconds(100))
        changes.signal()
        try await Task.sleep(for: .milliseconds(10))
        for _ in 0..<20 { changes.signal() }
        try await Task.sleep(for: .milliseconds(300))
        #expect(passes.withLock { $0 } <= 4)
        #expect(passes.withLock { $0 } >= 3)
    }

    @Test func theStateMachineSignalsWhatChangesPlacementButNotSettings() async throws {
        let changes = StateChanges()
        var machine = ClusterStateMachine(addressBook: AddressBook(configured: []), changes: changes)
        let passes = Mutex(0)
        let follower = Task { await changes.follow(every: .seconds(3600)) { passes.withLock { $0 += 1 } } }
        defer { follower.cancel() }
        try await eventually("the first pass runs at once") { passes.withLock { $0 } == 1 }

        func apply(_ command: ClusterCommand, at index: UInt64) {
            let answer = machine.apply(CommandEnvelope(proposedAt: 0, command: command).encoded, at: LogIndex(index))
            guard case .applied = try? CommandResult(decoding: answer) else {
                Issue.record("\(command) was not applied")
                return
            }
        }
        apply(.setSetting(key: "failover.max-per-vm", value: "2"), at: 1)
        apply(.deleteSetting(key: "failover.max-per-vm"), at: 2)
        try await Task.sleep(for: .milliseconds(200))
        #expect(passes.withLock { $0 } == 1, "settings change nothing a node runs: no wake-up")

        let addresses = MemberAddresses(
            peer: Endpoint(host: "10.0.0.1", port: 7201), client: Endpoint(host: "10.0.0.1", port: 7101))
        apply(.registerNode(NodeRegistration(id: 1, addresses: addresses, role: .voter, usableMemory: 1 << 30)), at: 3)
        try await eventually("registering a node wakes the followers") { passes.withLock { $0 } == 2 }
    }
}
