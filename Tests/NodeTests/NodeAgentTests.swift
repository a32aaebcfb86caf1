// The node agent runs exactly the VMs the applied state says its node owns; fencing stops them all.
import ClusterModel
import ClusterState
import FlotillaAPI
import FlotillaClient
import FlotillaTestKit
import Foundation
import Guests
import Logging
import Node
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A cluster state the test changes by applying commands, as the Raft log would.
final class AppliedState: Sendable {
    let state = Mutex(ClusterState())

    func apply(_ command: ClusterCommand) {
        let result = state.withLock { $0.apply(command, proposedAt: 0) }
        if case .rejected(let rejection) = result { Issue.record("\(command) was rejected: \(rejection)") }
    }

    var current: ClusterState { state.withLock { $0 } }
}

private let quiet = Logger(label: "flotilla.test", factory: { _ in SwiftLogNoOpLogHandler() })

private func vmSpec(_ name: String) -> VMSpec {
    VMSpec(
        name: name, memory: MemorySettings(startup: 64 << 20, minimum: 32 << 20, maximum: 128 << 20),
        disk: DiskFile(volume: "csv1", file: "\(name.lowercased()).vhdx"))
}

/// Holds the agent's next state read until released, handing it the state as it was when asked.
private actor ReadGate {
    private var armed = false
    private var release: CheckedContinuation<Void, Never>?
    private(set) var holding = false

    func arm() { armed = true }

    func read(_ state: ClusterState) async -> ClusterState {
        guard armed else { return state }
        armed = false
        holding = true
        await withCheckedContinuation { release = $0 }
        holding = false
        return state
    }

    func open() {
        release?.resume()
        release = nil
    }
}

extension AppliedState {
    /// n1 and n2 (1 GiB each) and volume csv1 coordinated by n1.
    static func twoNodesWithAVolume() -> AppliedState {
        let applied = AppliedState()
        for id: NodeID in [1, 2] {
            let addresses = MemberAddresses(
                peer: Endpoint(host: "10.0.0.\(id.rawValue)", port: 7201),
                client: Endpoint(host: "10.0.0.\(id.rawValue)", port: 7101))
            applied.apply(
                .registerNode(NodeRegistration(id: id, addresses: addresses, role: .voter, usableMemory: 1 << 30)))
        }
        applied.apply(.createVolume("csv1", path: "volumes/csv1", coordinator: 1))
        return applied
    }
}

@Suite struct NodeAgentTests {
    @Test func theAgentRunsExactlyWhatItsNodeOwnsAndNothingWhileFenced() async throws {
        let root = try TemporaryDirectory()
        // The guests' beats come when this test moves the clock.
        let clock = ManualClock()
        let applied = AppliedState.twoNodesWithAVolume()
        for name in ["Finance", "Engineering", "Sales"] { applied.apply(.createVM(vmSpec(name))) }
        applied.apply(.startVM(1, on: 1))  // Finance on n1
        applied.apply(.startVM(2, on: 2))  // Engineering on n2; Sales stays stopped

        let agent = NodeAgent(
            configuration: NodeAgent.Configuration(
                node: 1, sharedRoot: root.path, journalInterval: .milliseconds(10), clock: NodeClock(clock)),
            readState: { applied.current }, logger: quiet)
        let disk = root.path + "/volumes/csv1/finance.vhdx"

        await agent.reconcile()
        var view = await agent.view
        #expect(view.vms.map(\.name) == ["Finance"], "n1 runs its own VM and not n2's or a stopped one")
        #expect(view.vms.first?.epoch == 1)
        #expect(view.vms.first?.disk == disk)
        try await clock.advance(by: .milliseconds(10), until: "Finance writes its journal") {
            try DiskJournal.read(path: disk).records.count >= 3
        }

        // Stopped and started again before the agent looked: a new epoch on the same node, a new guest.
        applied.apply(.stopVM(1))
        applied.apply(.startVM(1, on: 1))
        await agent.reconcile()
        view = await agent.view
        #expect(view.vms.map(\.epoch) == [3])
        #expect((view.vms.first?.recordsReplayed ?? 0) >= 3, "the new guest replayed the journal")

        // Fenced: everything stops at once, and nothing starts while fenced.
        await agent.fence(reason: "lease expired")
        let fencedRecords = try DiskJournal.read(path: disk).records.count
        await agent.reconcile()
        view = await agent.view
        #expect(view.vms.isEmpty)
        #expect(view.fenced == "lease expired")
        // No guest waits for its next beat any more: however far the clock moves, none writes.
        #expect(clock.sleepers == 0, "a guest still waits to write after fence()")
        clock.advance(by: .seconds(60))
        #expect(try DiskJournal.read(path: disk).records.count == fencedRecords, "no journal write after fence()")

        await agent.unfence()
        await agent.reconcile()
        #expect(await agent.view.vms.map(\.epoch) == [3])
        try await clock.advance(by: .milliseconds(10), until: "Finance writes again") {
            try DiskJournal.read(path: disk).records.count >= fencedRecords + 2
        }

        // Failover moves Finance to n2: n1 stops it at once.
        applied.apply(.setVMOwner(1, owner: 2, expectedEpoch: 3, reason: "test failover"))
        await agent.reconcile()
        #expect(await agent.view.vms.isEmpty)
        let journal = try DiskJournal.read(path: disk)
        #expect(clock.sleepers == 0, "the guest still waits to write after its VM moved away")
        clock.advance(by: .seconds(60))
        #expect(try DiskJournal.read(path: disk) == journal, "no journal write after the VM moved away")
        #expect(Set(journal.records.map(\.epoch)) == [1, 3])
        #expect(JournalChecker.check(journal).isEmpty)
    }

    /// With a clock that never moves, only the wake-ups make the agent act: an unfence, and a
    /// signalled change of the applied state (a VM failed over to this node starts at once).
    @Test func theAgentActsOnSignalledChangesWithoutWaitingForItsTimer() async throws {
        let root = try TemporaryDirectory()
        let applied = AppliedState.twoNodesWithAVolume()
        applied.apply(.createVM(vmSpec("Finance")))
        applied.apply(.startVM(1, on: 1))
        // The timed passes never come: this clock stands still.
        let clock = NodeClock(ManualClock())
        let changes = StateChanges(clock: clock)
        let configuration = NodeAgent.Configuration(
            node: 1, sharedRoot: root.path, journalInterval: .milliseconds(10), clock: clock)
        let agent = NodeAgent(
            configuration: configuration, readState: { applied.current }, changes: changes, logger: quiet)
        await agent.fence(reason: "no lease granted yet")
        let loop = Task { await agent.run() }
        defer { loop.cancel() }
        try await eventually("the agent's first pass") { await agent.passes >= 1 }
        #expect(await agent.view.vms.isEmpty, "nothing runs while fenced")

        await agent.unfence()
        try await eventually("the unfence starts Finance") { await agent.view.vms.map(\.epoch) == [1] }

        applied.apply(.createVM(vmSpec("Sales")))
        applied.apply(.startVM(2, on: 2))
        applied.apply(.setVMOwner(2, owner: 1, expectedEpoch: 1, reason: "test failover"))
        changes.signal()
        try await eventually("the signalled failover starts Sales here") {
            await agent.view.vms.map(\.name).sorted() == ["Finance", "Sales"]
        }
    }

    /// A pass whose state read waited across a fence and an unfence must not act on that read: the
    /// state was from before the entries the unfence waited for, so the VM may run elsewhere now.
    @Test func aPassOvertakenByAFenceStartsNothingFromTheStateItReadBefore() async throws {
        let root = try TemporaryDirectory()
        let applied = AppliedState.twoNodesWithAVolume()
        applied.apply(.createVM(vmSpec("Finance")))
        applied.apply(.startVM(1, on: 1))
        let gate = ReadGate()
        let agent = NodeAgent(
            configuration: NodeAgent.Configuration(
                node: 1, sharedRoot: root.path, journalInterval: .milliseconds(10)),
            readState: { await gate.read(applied.current) }, logger: quiet)

        // The pass reads the state while n1 still owns Finance, and is held there.
        await gate.arm()
        let pass = Task { await agent.reconcile() }
        try await eventually("the pass holds its state read") { await gate.holding }
        // Meanwhile n1's lease runs out, Finance fails over to n2, and n1 gets a lease again.
        await agent.fence(reason: "lease expired")
        applied.apply(.setVMOwner(1, owner: 2, expectedEpoch: 1, reason: "test failover"))
        await agent.unfence()
        await gate.open()
        await pass.value

        #expect(await agent.view.vms.isEmpty, "n1 started Finance from a state read before its fence")
        #expect(!FileManager.default.fileExists(atPath: root.path + "/volumes/csv1/finance.vhdx"))
        await agent.reconcile()
        #expect(await agent.view.vms.isEmpty, "n1 does not own Finance any more")
    }

    /// A whole node in this process: a VM started through the API runs on its owner, its journal
    /// grows on the shared root, and stopping the VM through the API stops it.
    @Test func aVMStartedThroughTheAPIRunsOnItsOwnerUntilStopped() async throws {
        let root = try TemporaryDirectory()
        let ports = try freeLoopbackPorts(2)
        let configuration = try NodeConfiguration.resolve(
            file: nil, environment: [:],
            flags: [
                "node-id": "n1", "peer-address": "127.0.0.1:\(ports[0])", "client-address": "127.0.0.1:\(ports[1])",
                "data-dir": root.path + "/n1", "journal-interval-ms": "20",
            ])
        #expect(configuration.sharedRoot == root.path + "/shared")
        let node = Task { try await NodeDaemon(configuration: configuration, logger: quiet).run() }
        let client = APIClient(
            endpoint: Endpoint(host: "127.0.0.1", port: ports[1]), timeout: .seconds(5), noLeaderPatience: .seconds(10))
        defer { node.cancel() }

        // On a loaded machine n1's own heartbeats can be late enough for its leader (itself) to
        // count it down for a moment: it then takes no volume and runs nothing until it is up again.
        try await eventually("n1 registers itself and is up") { (try? await client.nodes())?.first?.state == "up" }
        try await eventually("csv1 is created with n1 as its coordinator") {
            if (try? await client.volumes())?.contains(where: { $0.id == "csv1" }) == true { return true }
            return (try? await client.createVolume("csv1", coordinator: "n1")) != nil
        }
        _ = try await client.createVM(
            VMCreation(name: "Finance", startup: 64 << 20, minimum: 32 << 20, maximum: 128 << 20, volume: "csv1"))
        _ = try await client.startVM("Finance")
        try await eventually("Finance is placed on n1") { (try? await client.vm("Finance"))?.owner == "n1" }

        try await eventually("n1 runs Finance and its journal grows") {
            let vm = try await client.agent().vms.first
            return vm?.name == "Finance" && (vm?.journalSequence ?? 0) >= 3 && (vm?.pagesTouched ?? 0) > 0
        }
        let view = try await client.agent()
        #expect(view.node == "n1")
        #expect(view.vms.count == 1)
        let disk = try #require(view.vms.first?.disk)
        #expect(disk == root.path + "/shared/volumes/csv1/finance.vhdx")
        #expect(try DiskJournal.read(path: disk).records.allSatisfy { $0.epoch == 1 })

        _ = try await client.stopVM("Finance")
        try await eventually("n1 stops Finance") { try await client.agent().vms.isEmpty }
        // (That a stopped guest writes nothing more is shown with a clock the test drives, above.)
        let journal = try DiskJournal.read(path: disk)
        #expect(journal.records.count >= 3)
        #expect(JournalChecker.check(journal).isEmpty)

        await client.close()
        node.cancel()
        try await node.value
    }
}
