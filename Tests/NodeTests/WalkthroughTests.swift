// The Hyper-V dynamic-memory walkthrough, run on a real node agent in simulated time, with the seed's figures asserted.
import ClusterModel
import ClusterState
import FlotillaAPI
import FlotillaCLI
import FlotillaTestKit
import Logging
import Node
import TestSupport
import Testing

private let quiet = Logger(label: "flotilla.test", factory: { _ in SwiftLogNoOpLogHandler() })

@Test(.timeLimit(.minutes(2)))
func theHyperVWalkthroughRunsOnTheAgentInSimulatedTime() async throws {
    let root = try TemporaryDirectory()
    let clock = ManualClock()
    let applied = AppliedState.twoNodesWithAVolume()
    // n1 is the walkthrough's 8 GB host, 7.5 GB of it for VMs.
    applied.apply(
        .registerNode(
            NodeRegistration(
                id: 1, addresses: applied.current.nodes[1]!.addresses, role: .voter,
                usableMemory: DynamicMemoryWalkthrough.usableMemory)))
    let agent = NodeAgent(
        configuration: NodeAgent.Configuration(
            node: 1, sharedRoot: root.path, journalInterval: .seconds(1), clock: NodeClock(clock),
            usableMemory: DynamicMemoryWalkthrough.usableMemory),
        readState: { applied.current }, logger: quiet)

    var steps = DynamicMemoryWalkthrough.steps(minute: .seconds(1))[...]
    var samples: [DynamicMemoryWalkthrough.Sample] = []
    let pass = Duration.milliseconds(100)
    for tick in 0...(DynamicMemoryWalkthrough.lastMinute * 10) {
        let now = pass * tick
        var changed = false
        while let step = steps.first, .seconds(step.minute) <= now {
            steps.removeFirst()
            let state = applied.current
            switch step.action {
            case .createAndStart(let creation):
                applied.apply(.createVM(try VMSpec(creation: creation)))
                let id = applied.current.vms.values.first { $0.name == creation.name }!.id
                applied.apply(.startVM(id, on: 1))
            case .setMemory(let name, let change):
                let vm = state.vms.values.first { $0.name == name }!
                var memory = vm.memory
                if let priority = change.priority { memory.priority = priority }
                applied.apply(.setVMMemory(vm.id, memory))
            }
            changed = true
        }
        if changed { await agent.reconcile() }
        if tick > 0 { clock.advance(by: pass) }
        await agent.balanceMemory()
        let facts = try #require(await agent.memoryFacts)
        #expect(facts.assigned <= DynamicMemoryWalkthrough.usableMemory, "overcommitted at \(now): \(facts)")
        guard tick % 10 == 0 else { continue }
        let minute = tick / 10
        let names = Dictionary(uniqueKeysWithValues: applied.current.vms.values.map { ($0.id, $0.name) })
        let rows = facts.vms.map {
            DynamicMemoryWalkthrough.Sample(
                minute: minute, vm: names[$0.vm]!, demand: $0.demand, assigned: $0.assigned, status: $0.status.rawValue)
        }
        if [0, 5, 10, 15, 20, 22, 25, 30].contains(minute) { samples += rows.sorted { $0.vm < $1.vm } }
        guard let checkpoint = DynamicMemoryWalkthrough.checkpoints.first(where: { $0.minute == minute }) else {
            continue
        }
        let held = Dictionary(uniqueKeysWithValues: rows.map { ($0.vm, $0.assigned ?? 0) })
        #expect(held == checkpoint.assigned, "minute \(minute)")
    }
    let end = try #require(await agent.memoryFacts)
    let finance = try #require(end.vms.first { applied.current.vms[$0.vm]?.name == "Finance" })
    #expect(finance.status == .warning && finance.pagingBytes == UInt64(512) << 20, "\(finance)")
    #expect(end.assigned == DynamicMemoryWalkthrough.usableMemory)
    print(DynamicMemoryWalkthrough.timeline(samples))
}
