// Rebalancing by live migration: a node whose VMs stay in warning gives its lowest-priority VM to a node with room.
import ClusterModel
import ClusterState
import Controllers
import Testing

@Suite struct RebalanceTests {
    /// n1 runs `important` (priority 80) and `batch` (priority 20) and pages; n2 has room, n3 little.
    static func crowded(rebalance: String?) -> (Leader, important: VMID, batch: VMID) {
        var fixture = Fixture.threeNodes()
        if let rebalance { fixture.applied(.setSetting(key: Setting.rebalanceMemoryKey, value: rebalance)) }
        let important = fixture.runningVM("important", on: 1)
        let batch = fixture.runningVM("batch", on: 1)
        var memory = fixture.vm(important).memory
        memory.priority = 80
        fixture.applied(.setVMMemory(important, memory))
        memory = fixture.vm(batch).memory
        memory.priority = 20
        fixture.applied(.setVMMemory(batch, memory))
        var leader = Leader(fixture)
        leader.reported = [
            1: NodeMemoryFacts(
                usable: 8 * gib, assigned: 8 * gib,
                vms: [
                    VMMemoryFacts(
                        vm: important, assigned: 5 * gib, demand: 6 * gib, status: .warning, pagingBytes: gib),
                    VMMemoryFacts(vm: batch, assigned: 3 * gib, demand: 3 * gib, status: .low, pagingBytes: 0),
                ]),
            2: NodeMemoryFacts(usable: 8 * gib, assigned: 1 * gib, vms: []),
            3: NodeMemoryFacts(usable: 8 * gib, assigned: 6 * gib, vms: []),
        ]
        return (leader, important, batch)
    }

    @Test func offByDefault() {
        var (leader, _, _) = Self.crowded(rebalance: nil)
        leader.warningSince = [1: leader.now - .seconds(600)]
        #expect(leader.round().isEmpty)
    }

    @Test func afterAWhileInWarningTheLowestPriorityVMMovesToTheNodeWithRoom() {
        var (leader, important, batch) = Self.crowded(rebalance: "on")
        leader.warningSince = [1: leader.now - .seconds(10)]
        #expect(leader.round().isEmpty, "not before rebalance.after-s (30 s) in warning")
        leader.warningSince = [1: leader.now - .seconds(30)]
        let proposals = leader.round()
        #expect(
            proposals.map(\.command) == [.beginMigration(batch, target: 2, reason: proposals.first?.command.reason)])
        #expect(proposals.first?.reason.contains("rebalancing: n1 has had a VM in warning for 30 s") == true)
        #expect(leader.fixture.vm(batch).owner == 2)
        #expect(leader.fixture.vm(important).owner == 1)
        // batch is not moved again for a while, and n1 still pages: important goes next, but only where
        // its demand fits (n2 reported 1 GiB used of 8 GiB: 6 GiB fits).
        leader.reported[1]!.vms.removeAll { $0.vm == batch }
        let next = leader.round()
        #expect(next.count == 1)
        #expect(leader.fixture.vm(important).owner == 2)
        #expect(leader.fixture.vm(batch).owner == 2)
    }

    @Test func nothingMovesWhileAMigrationRunsOrWhereNoNodeHasRoom() {
        var (leader, important, batch) = Self.crowded(rebalance: "on")
        leader.warningSince = [1: leader.now - .seconds(60)]
        leader.migrationsComplete = false
        leader.fixture.applied(.beginMigration(important, target: 3))
        #expect(leader.round().isEmpty, "its memory is not where the reports say yet")
        var (roomless, _, _) = Self.crowded(rebalance: "on")
        roomless.warningSince = [1: roomless.now - .seconds(60)]
        roomless.reported[2] = NodeMemoryFacts(usable: 8 * gib, assigned: 7 * gib, vms: [])
        #expect(roomless.round().isEmpty)
        _ = batch
    }
}

extension ClusterCommand {
    /// The reason of a `beginMigration`, for comparing commands whose reason is long.
    var reason: String? {
        if case .beginMigration(_, _, let reason) = self { return reason }
        return nil
    }
}
