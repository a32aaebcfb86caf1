// Placement: admission by startup memory, anti-affinity, preferred owners, most free memory, pending reasons.
import ClusterModel
import ClusterState
import Testing

@Test func withNothingElseToGoOnTheMostFreeNodeWinsAndTiesGoToTheLowestID() {
    var cluster = TestCluster.threeNodes()
    #expect(cluster.start(cluster.createVM("A", startup: 2 * gib)) == 1)
    #expect(cluster.start(cluster.createVM("B", startup: gib)) == 2)
    #expect(cluster.start(cluster.createVM("C", startup: 3 * gib)) == 3)
    // Free now: n1 6 GiB, n2 7 GiB, n3 5 GiB.
    #expect(cluster.start(cluster.createVM("D", startup: gib)) == 2)
    // Free now: n1 6, n2 6, n3 5: a tie, so n1.
    #expect(cluster.start(cluster.createVM("E", startup: gib)) == 1)
}

@Test func admissionSkipsNodesWithoutTheStartupMemory() {
    var cluster = TestCluster.threeNodes(usableMemory: 4 * gib)
    cluster.start(cluster.createVM("Filler1", startup: 3 * gib), on: 1)
    cluster.start(cluster.createVM("Filler3", startup: 2 * gib), on: 3)
    // Preferred n1 has 1 GiB free, n3 2 GiB; only n2 (4 GiB) fits 3 GiB.
    let big = cluster.createVM("Big", startup: 3 * gib, preferredOwners: [1, 3])
    #expect(cluster.start(big) == 2)
}

@Test func preferredOwnersAreTriedInTheirOrder() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance", preferredOwners: [3, 2])
    #expect(cluster.start(finance) == 3)
    cluster.applied(.stopVM(finance))
    // A preferred owner that is not up is skipped; the next one is taken even if it is not the most free.
    cluster.applied(.setNodeState(3, .draining))
    cluster.start(cluster.createVM("Other", startup: 2 * gib), on: 2)
    #expect(cluster.start(finance) == 2)
}

@Test func antiAffinityKeepsAClassApartEvenAgainstPreference() {
    var cluster = TestCluster.threeNodes()
    let first = cluster.createVM("DC1", antiAffinityClass: "domain-controllers")
    let second = cluster.createVM("DC2", preferredOwners: [1], antiAffinityClass: "domain-controllers")
    let unrelated = cluster.createVM("Web", preferredOwners: [1], antiAffinityClass: "web")
    #expect(cluster.start(first) == 1)
    // n1 runs DC1: DC2 goes elsewhere although it prefers n1; among n2 and n3 the tie goes to n2.
    #expect(cluster.start(second) == 2)
    // Another class does not mind.
    #expect(cluster.start(unrelated) == 1)
}

@Test func antiAffinityYieldsWhenOnlyACrowdedNodeFits() {
    var cluster = TestCluster.threeNodes(usableMemory: 4 * gib)
    let first = cluster.createVM("DC1", antiAffinityClass: "dc")
    cluster.start(first, on: 1)
    cluster.start(cluster.createVM("Filler2", startup: 4 * gib), on: 2)
    cluster.applied(.setNodeState(3, .paused))
    let second = cluster.createVM("DC2", antiAffinityClass: "dc")
    #expect(cluster.start(second) == 1)
}

@Test func antiAffinityCountsAVMMigratingToANode() {
    var cluster = TestCluster.threeNodes()
    let first = cluster.createVM("DC1", antiAffinityClass: "dc")
    cluster.start(first, on: 1)
    cluster.applied(.beginMigration(first, target: 2))
    let second = cluster.createVM("DC2", antiAffinityClass: "dc")
    #expect(cluster.start(second) == 3)
}

@Test func aVMThatFitsNowhereIsPendingWithTheReason() {
    var cluster = TestCluster()
    cluster.applied(
        .registerNode(NodeRegistration(id: 1, addresses: addresses(1), role: .voter, usableMemory: 256 * mib)))
    cluster.applied(
        .registerNode(NodeRegistration(id: 2, addresses: addresses(2), role: .voter, usableMemory: 512 * mib)))
    cluster.applied(
        .registerNode(NodeRegistration(id: 3, addresses: addresses(3), role: .voter, usableMemory: 512 * mib)))
    cluster.applied(.createVolume("csv1", path: "csv1", coordinator: 1))
    let vm = cluster.createVM("Finance", startup: gib)
    guard case .vm(let outcome) = cluster.applied(.startVM(vm, on: nil)) else { return }
    let reason = "needs 1.0 GiB startup memory; the most free on any up node is 512 MiB (n2)"
    #expect(outcome == VMOutcome(id: vm, name: "Finance", state: .pending, owner: nil, epoch: 0, pendingReason: reason))
    #expect(cluster.vm(vm)?.desiredState == .running)
    #expect(cluster.state.events.last?.kind == .vmPending)
    // Once a node has room, starting it again places it.
    cluster.applied(
        .registerNode(NodeRegistration(id: 3, addresses: addresses(3), role: .voter, usableMemory: 2 * gib)))
    #expect(cluster.start(vm) == 3)
    #expect(cluster.vm(vm)?.pendingReason == nil)
}

@Test func withNoNodeUpTheReasonSaysSo() {
    var cluster = TestCluster.threeNodes()
    let vm = cluster.createVM("Finance")
    for node: NodeID in [1, 2, 3] { cluster.applied(.setNodeState(node, .down)) }
    #expect(cluster.start(vm) == nil)
    #expect(cluster.vm(vm)?.pendingReason == "needs 1.0 GiB startup memory; no node is up")
}

@Test func placementIsAPureFunctionFailoverCanCall() {
    var cluster = TestCluster.threeNodes(usableMemory: 4 * gib)
    let finance = cluster.createVM("Finance", startup: 3 * gib, preferredOwners: [1, 3])
    let sales = cluster.createVM("Sales", startup: 2 * gib)
    cluster.start(finance, on: 1)
    cluster.start(sales, on: 3)
    // A running VM's own reservation does not count against it: it fits where it is.
    guard let running = cluster.vm(finance) else { return }
    #expect(cluster.state.placement(for: running) == .node(1))
    cluster.applied(.setNodeState(1, .down))
    guard let lost = cluster.vm(finance) else { return }
    let before = cluster.state
    // n3 is preferred but has 2 GiB free; n2 fits.
    #expect(cluster.state.placement(for: lost) == .node(2))
    #expect(cluster.state == before)
    cluster.applied(.setVMOwner(finance, owner: 2, expectedEpoch: lost.epoch, reason: "failover from n1"))
    #expect(cluster.vm(finance)?.owner == 2)
    #expect(cluster.vm(finance)?.epoch == lost.epoch.next)
}

/// The nodes' memory reports steer placement to the node with the most memory really free; they
/// never admit a VM the committed state does not.
@Test func reportedMemoryPicksTheRoomiestNodeButNeverAdmitsMore() throws {
    var cluster = TestCluster.threeNodes(usableMemory: 4 * gib)
    cluster.start(cluster.createVM("Grown", startup: gib), on: 1)
    cluster.start(cluster.createVM("Small", startup: gib), on: 2)
    let nextID = cluster.createVM("Next", startup: gib)
    let next = try #require(cluster.vm(nextID))
    // Committed, n3 is the roomiest (4 GiB free against 3 and 3).
    #expect(cluster.state.placement(for: next) == .node(3))
    // n3 reports 3.5 GiB assigned (a VM arriving by migration, say), n1 1 GiB, n2 2.5 GiB.
    let reported: [NodeID: NodeMemoryFacts] = [
        1: NodeMemoryFacts(
            usable: 4 * gib, assigned: gib,
            vms: [VMMemoryFacts(vm: 1, assigned: gib, demand: gib / 2, status: .ok, pagingBytes: 0)]),
        2: NodeMemoryFacts(
            usable: 4 * gib, assigned: 5 * gib / 2,
            vms: [VMMemoryFacts(vm: 2, assigned: 5 * gib / 2, demand: 2 * gib, status: .ok, pagingBytes: 0)]),
        3: NodeMemoryFacts(usable: 4 * gib, assigned: 7 * gib / 2, vms: []),
    ]
    #expect(cluster.state.placement(for: next, reported: reported) == .node(1))
    // A VM placed since the report counts at its startup memory: two more on n1 make n2 the roomier.
    cluster.start(cluster.createVM("Later1", startup: gib), on: 1)
    cluster.start(cluster.createVM("Later2", startup: gib), on: 1)
    #expect(cluster.state.placement(for: next, reported: reported) == .node(2))
    // Reports of plenty do not admit what the committed state does not.
    let hugeID = cluster.createVM("Huge", startup: 5 * gib)
    let huge = try #require(cluster.vm(hugeID))
    let roomy = Dictionary(
        uniqueKeysWithValues: (1...3).map { (NodeID($0), NodeMemoryFacts(usable: 4 * gib, assigned: 0, vms: [])) })
    guard case .pending = cluster.state.placement(for: huge, reported: roomy) else {
        Issue.record("placed a VM no node admits")
        return
    }
}
