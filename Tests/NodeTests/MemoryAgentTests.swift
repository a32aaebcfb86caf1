// The node's dynamic-memory agent: guests get what the balancer assigns, follow their workload, and never overcommit the node.
import ClusterModel
import ClusterState
import FlotillaAPI
import FlotillaTestKit
import Logging
import Node
import TestSupport
import Testing

private let mib: UInt64 = 1 << 20
private let quiet = Logger(label: "flotilla.test", factory: { _ in SwiftLogNoOpLogHandler() })

private func spec(_ name: String, startup: UInt64, minimum: UInt64, maximum: UInt64, demand: UInt64) -> VMSpec {
    VMSpec(
        name: name, memory: MemorySettings(startup: startup, minimum: minimum, maximum: maximum),
        disk: DiskFile(volume: "csv1", file: "\(name.lowercased()).vhdx"),
        workload: Workload(demand: .constant(demand), dirtyPagesPerSecond: 100))
}

/// One node's agent on a clock the test drives, with `usable` memory to share.
private final class MemoryNode {
    let root: TemporaryDirectory
    let clock = ManualClock()
    let applied = AppliedState.twoNodesWithAVolume()
    let agent: NodeAgent

    init(usable: UInt64) throws {
        root = try TemporaryDirectory()
        let applied = applied
        agent = NodeAgent(
            configuration: NodeAgent.Configuration(
                node: 1, sharedRoot: root.path, journalInterval: .milliseconds(100), clock: NodeClock(clock),
                usableMemory: usable),
            readState: { applied.current }, logger: quiet)
    }

    /// Moves time a balance interval on and balances once; checks the node is never overcommitted.
    func pass(sourceLocation: SourceLocation = #_sourceLocation) async -> NodeMemoryFacts? {
        clock.advance(by: .milliseconds(100))
        await agent.balanceMemory()
        let facts = await agent.memoryFacts
        if let facts {
            #expect(facts.assigned <= facts.usable, "overcommitted: \(facts)", sourceLocation: sourceLocation)
            #expect(
                facts.assigned == facts.vms.reduce(0) { $0 + $1.assigned }, "\(facts)", sourceLocation: sourceLocation)
        }
        return facts
    }

    func assigned(_ name: String) async -> UInt64? {
        await agent.view.vms.first { $0.name == name }?.assigned
    }
}

@Suite struct MemoryAgentTests {
    @Test func aDemandStepReachesItsNewAssignmentWithinTwoPassesAndTheNodeIsNeverOvercommitted() async throws {
        let node = try MemoryNode(usable: 1024 * mib)
        node.applied.apply(
            .createVM(spec("Finance", startup: 256 * mib, minimum: 128 * mib, maximum: 768 * mib, demand: 100 * mib)))
        node.applied.apply(.startVM(1, on: 1))
        await node.agent.reconcile()
        #expect(await node.assigned("Finance") == 256 * mib, "a VM starts with its startup memory")
        // It demands 100 MiB: its target is 120 MiB, clamped to its 128 MiB minimum; the balloon returns the rest.
        for _ in 0..<10 { _ = await node.pass() }
        #expect(await node.assigned("Finance") == 128 * mib)

        // A step: 500 MiB demanded, a 600 MiB target, hot-added at once.
        node.applied.apply(.setVMWorkload(1, Workload(demand: .constant(500 * mib), dirtyPagesPerSecond: 100)))
        await node.agent.reconcile()
        var passes = 0
        while await node.assigned("Finance") != 600 * mib && passes < 5 {
            _ = await node.pass()
            passes += 1
        }
        #expect(passes <= 2, "took \(passes) passes")
        let facts = try #require(await node.pass())
        #expect(facts.vms.first?.status == .ok && facts.vms.first?.demand == 500 * mib)
        // The guest itself was resized: it holds what it demands, inside its assignment.
        let view = try #require(await node.agent.view.vms.first)
        #expect(view.assigned == 600 * mib && view.demand == 500 * mib)
    }

    @Test func aVMFailedOverOntoAFullNodeGetsItsStartupMemoryFromWhatOthersHoldAboveTheirMinimum() async throws {
        let node = try MemoryNode(usable: 1024 * mib)
        // Finance runs here and has grown to 900 MiB (750 demanded, 20 % buffer).
        node.applied.apply(
            .createVM(spec("Finance", startup: 256 * mib, minimum: 256 * mib, maximum: 1024 * mib, demand: 750 * mib)))
        node.applied.apply(.startVM(1, on: 1))
        await node.agent.reconcile()
        for _ in 0..<5 { _ = await node.pass() }
        #expect(await node.assigned("Finance") == 900 * mib)

        // Sales (512 MiB startup) fails over here: the state admits it (256 + 512 MiB of startups
        // fit), and the memory Finance holds above its minimum is taken back for it at once.
        node.applied.apply(
            .createVM(spec("Sales", startup: 512 * mib, minimum: 512 * mib, maximum: 512 * mib, demand: 300 * mib)))
        node.applied.apply(.startVM(2, on: 2))
        node.applied.apply(.setVMOwner(2, owner: 1, expectedEpoch: 1, reason: "failover from n2, which went down"))
        await node.agent.reconcile()
        #expect(await node.assigned("Sales") == 512 * mib, "it starts with its whole startup memory")
        #expect((await node.assigned("Finance") ?? 0) <= 512 * mib, "Finance gave back what Sales needs")
        for _ in 0..<20 { _ = await node.pass() }
        let facts = try #require(await node.agent.memoryFacts)
        #expect(facts.vms.first { $0.vm == 1 }?.status == .warning, "Finance now pages: \(facts)")
    }

    /// The state admits VMs by the memory the node registered; a node that restarted with less
    /// than that (its record not yet updated) starts a VM only when its startup memory is free.
    @Test func aVMWhoseStartupMemoryIsNotFreeWaitsWithTheReasonAndStartsWhenItIs() async throws {
        let node = try MemoryNode(usable: 1024 * mib)
        // n1 registered 2 GiB before it restarted with 1 GiB.
        node.applied.apply(
            .registerNode(
                NodeRegistration(
                    id: 1, addresses: node.applied.current.nodes[1]!.addresses, role: .voter, usableMemory: 2048 * mib))
        )
        node.applied.apply(
            .createVM(spec("Finance", startup: 768 * mib, minimum: 768 * mib, maximum: 768 * mib, demand: 600 * mib)))
        node.applied.apply(
            .createVM(spec("Sales", startup: 512 * mib, minimum: 512 * mib, maximum: 512 * mib, demand: 300 * mib)))
        node.applied.apply(.startVM(1, on: 1))
        node.applied.apply(.startVM(2, on: 1))
        await node.agent.reconcile()
        for _ in 0..<5 { _ = await node.pass() }
        let view = await node.agent.view
        #expect(view.vms.map(\.name) == ["Finance"])
        #expect(view.problems.map(\.name) == ["Sales"])
        #expect(view.problems.first?.error.hasPrefix("waiting for memory: it needs 512 MiB to start") == true)
        #expect(await node.agent.memoryFacts?.vms.first { $0.vm == 2 }?.status == .waiting)

        node.applied.apply(.stopVM(1))
        await node.agent.reconcile()
        #expect(await node.agent.view.vms.map(\.name) == ["Sales"])
        #expect(await node.agent.view.problems.isEmpty)
    }
}
