// registerNode, setNodeState, removeNode, createVolume, moveVolume, deleteVolume: applied and refused.
import ClusterModel
import ClusterState
import Testing

@Test func aRegisteredNodeIsUpAndCanBeReRegistered() {
    var cluster = TestCluster()
    let registration = NodeRegistration(id: 1, addresses: addresses(1), role: .voter, usableMemory: 8 * gib)
    #expect(cluster.applied(.registerNode(registration)) == .node(1, .up))
    #expect(
        cluster.state.nodes[1]
            == NodeRecord(id: 1, addresses: addresses(1), role: .voter, usableMemory: 8 * gib, state: .up))
    var changed = registration
    changed.role = .learner
    changed.usableMemory = 4 * gib
    #expect(cluster.applied(.registerNode(changed)) == .node(1, .up))
    #expect(cluster.state.nodes[1]?.role == .learner)
    #expect(cluster.state.nodes[1]?.usableMemory == 4 * gib)
    #expect(cluster.state.events.map(\.kind) == [.nodeRegistered, .nodeRegistered])
}

@Test func registeringANodeChecksMemoryAndAddresses() {
    var cluster = TestCluster.threeNodes()
    cluster.rejected(
        .registerNode(NodeRegistration(id: 4, addresses: addresses(4), role: .voter, usableMemory: 1000)), .invalid,
        "usable memory")
    cluster.rejected(
        .registerNode(NodeRegistration(id: 4, addresses: addresses(2), role: .voter, usableMemory: 8 * gib)),
        .conflict, "already belongs to n2")
    var sharedClient = addresses(4)
    sharedClient.client = addresses(3).client
    cluster.rejected(
        .registerNode(NodeRegistration(id: 4, addresses: sharedClient, role: .voter, usableMemory: 8 * gib)),
        .conflict, "client address")
    // A node may not shrink below what its VMs have reserved.
    let vm = cluster.createVM("Finance", startup: 6 * gib)
    cluster.start(vm, on: 2)
    cluster.rejected(
        .registerNode(NodeRegistration(id: 2, addresses: addresses(2), role: .voter, usableMemory: 4 * gib)),
        .insufficientMemory, "6.0 GiB reserved")
}

@Test func nodeStatesFollowTheAllowedTransitions() {
    var cluster = TestCluster.threeNodes()
    cluster.rejected(.setNodeState(9, .draining), .notFound, "no node n9")
    cluster.rejected(.setNodeState(1, .up), .conflict, "already up")
    #expect(cluster.applied(.setNodeState(1, .draining)) == .node(1, .draining))
    #expect(cluster.applied(.setNodeState(1, .paused)) == .node(1, .paused))
    #expect(cluster.applied(.setNodeState(1, .up)) == .node(1, .up))
    #expect(cluster.applied(.setNodeState(1, .down)) == .node(1, .down))
    cluster.rejected(.setNodeState(1, .draining), .conflict, "can become up")
    #expect(cluster.applied(.setNodeState(1, .up)) == .node(1, .up))
}

@Test func drainingAndPausedNodesKeepTheirVMsButTakeNoNewOnes() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance")
    let sales = cluster.createVM("Sales")
    cluster.start(finance, on: 2)
    cluster.applied(.setNodeState(2, .draining))
    #expect(cluster.vm(finance)?.owner == 2)
    cluster.rejected(.startVM(sales, on: 2), .conflict, "n2 is draining")
    cluster.applied(.setNodeState(3, .paused))
    cluster.rejected(.startVM(sales, on: 3), .conflict, "n3 is paused")
    #expect(cluster.start(sales) == 1)
}

@Test func aNodeDeclaredDownLosesItsVMsMigrationsAndVolumes() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance")
    let sales = cluster.createVM("Sales")
    cluster.start(finance, on: 1)
    cluster.start(sales, on: 2)
    guard case .migration(let migration, _, _) = cluster.applied(.beginMigration(sales, target: 1)) else { return }
    let financeEpoch = cluster.vm(finance)?.epoch ?? 0
    cluster.applied(.setNodeState(1, .down))
    #expect(cluster.vm(finance)?.state == .pending)
    #expect(cluster.vm(finance)?.owner == nil)
    #expect(cluster.vm(finance)?.epoch == financeEpoch.next)
    #expect(cluster.vm(finance)?.pendingReason?.contains("n1 went down") == true)
    // The migration to n1 failed; Sales stays where it was.
    #expect(cluster.state.migrations[migration]?.phase == .failed)
    #expect(cluster.vm(sales)?.owner == 2)
    #expect(cluster.state.volumes["csv1"]?.state == .offline)
    #expect(cluster.state.freeMemory(on: 1) == 8 * gib)
    let kinds = cluster.state.events.suffix(4).map(\.kind)
    #expect(kinds == [.nodeStateChanged, .migrationAborted, .vmPending, .volumeOffline])
    #expect(cluster.state.events.suffix(4).allSatisfy { $0.command == .setNodeState })
}

@Test func aNodeIsRemovedOnlyWhenNothingDependsOnIt() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance", preferredOwners: [3, 2])
    cluster.start(finance, on: 3)
    cluster.rejected(.removeNode(9), .notFound)
    cluster.rejected(.removeNode(3), .conflict, "owns vm1")
    cluster.rejected(.removeNode(1), .conflict, "coordinates csv1")
    cluster.applied(.beginMigration(finance, target: 2))
    cluster.rejected(.removeNode(2), .conflict, "target of mig1")
    cluster.applied(.abortMigration(1, outcome: .cancelled, reason: "operator"))
    cluster.applied(.stopVM(finance))
    #expect(cluster.applied(.removeNode(3)) == .node(3, .up))
    #expect(cluster.state.nodes[3] == nil)
    #expect(cluster.vm(finance)?.preferredOwners == [2])
}

@Test func volumesAreCreatedWithValidIdsAndPaths() {
    var cluster = TestCluster.threeNodes()
    #expect(
        cluster.state.volumes["csv1"] == VolumeRecord(id: "csv1", path: "volumes/csv1", coordinator: 1, state: .online))
    cluster.rejected(.createVolume("CSV2", path: "volumes/csv2", coordinator: 1), .invalid, "volume id")
    cluster.rejected(.createVolume("csv2", path: "/volumes/csv2", coordinator: 1), .invalid, "absolute")
    cluster.rejected(.createVolume("csv2", path: "volumes/../etc", coordinator: 1), .invalid, "'..'")
    cluster.rejected(.createVolume("csv1", path: "volumes/other", coordinator: 1), .conflict, "already exists")
    cluster.rejected(.createVolume("csv2", path: "volumes/csv1", coordinator: 1), .conflict, "overlaps csv1")
    cluster.rejected(.createVolume("csv2", path: "volumes/csv1/inner", coordinator: 1), .conflict, "overlaps csv1")
    cluster.rejected(.createVolume("csv2", path: "volumes", coordinator: 1), .conflict, "overlaps csv1")
    cluster.rejected(.createVolume("csv2", path: "volumes/csv2", coordinator: 7), .notFound, "no node n7")
    cluster.applied(.setNodeState(2, .draining))
    cluster.rejected(.createVolume("csv2", path: "volumes/csv2", coordinator: 2), .conflict, "draining")
    #expect(
        cluster.applied(.createVolume("csv2", path: "volumes/csv10", coordinator: 3))
            == .volume("csv2", coordinator: 3, .online))
}

@Test func aVolumesCoordinatorMovesAndBringsItBackOnline() {
    var cluster = TestCluster.threeNodes()
    cluster.rejected(.moveVolume("csv9", coordinator: 2), .notFound, "no volume csv9")
    cluster.rejected(.moveVolume("csv1", coordinator: 9), .notFound, "no node n9")
    cluster.rejected(.moveVolume("csv1", coordinator: 1), .conflict, "already coordinates")
    #expect(cluster.applied(.moveVolume("csv1", coordinator: 2)) == .volume("csv1", coordinator: 2, .online))
    cluster.applied(.setNodeState(2, .down))
    #expect(cluster.state.volumes["csv1"]?.state == .offline)
    cluster.rejected(.moveVolume("csv1", coordinator: 2), .conflict, "n2 is down")
    #expect(cluster.applied(.moveVolume("csv1", coordinator: 3)) == .volume("csv1", coordinator: 3, .online))
}

@Test func aVolumeIsDeletedOnlyWithoutDisksOnIt() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance")
    cluster.rejected(.deleteVolume("csv9"), .notFound)
    cluster.rejected(.deleteVolume("csv1"), .conflict, "vm1 (Finance) use csv1 for their disks")
    cluster.applied(.deleteVM(finance))
    #expect(cluster.applied(.deleteVolume("csv1")) == .volume("csv1", coordinator: 1, .online))
    #expect(cluster.state.volumes.isEmpty)
}

/// A QEMU guest that boots its kernel from a volume uses it as much as one whose disk is there.
@Test func aVolumeAVMBootsFromIsNotDeleted() {
    var cluster = TestCluster.threeNodes()
    cluster.applied(.createVolume("boot", path: "volumes/boot", coordinator: 2))
    let web = VMSpec(
        name: "web", memory: memory(startup: 256 * mib), disk: DiskFile(volume: "csv1", file: "web.disk"),
        driver: .qemu(QEMUGuestSpec(kernel: DiskFile(volume: "boot", file: "vmlinuz"))))
    cluster.applied(.createVM(web))
    cluster.rejected(.deleteVolume("boot"), .conflict, "vm1 (web) use boot for their disks or boot files")
    cluster.applied(.deleteVM(1))
    #expect(cluster.applied(.deleteVolume("boot")) == .volume("boot", coordinator: 2, .online))
}

@Test func reasonsOfNodeAndVolumeCommandsShowInTheirEvents() {
    var cluster = TestCluster.threeNodes()
    cluster.applied(.setNodeState(2, .draining, reason: "by operator"))
    #expect(cluster.state.events.last?.detail == "n2: up → draining (by operator)")
    cluster.applied(.setNodeState(2, .up))
    #expect(cluster.state.events.last?.detail == "n2: draining → up")
    cluster.applied(.moveVolume("csv1", coordinator: 3, reason: "failover: its coordinator n1 is down"))
    #expect(cluster.state.events.last?.kind == .volumeMoved)
    #expect(cluster.state.events.last?.detail == "csv1 coordinator n1 → n3 (failover: its coordinator n1 is down)")
    // An empty reason would record "()": refused before anything else is checked.
    cluster.rejected(.setNodeState(9, .down, reason: ""), .invalid, "reason of setNodeState is empty")
    cluster.rejected(.moveVolume("csv1", coordinator: 2, reason: ""), .invalid, "reason of moveVolume is empty")
}
