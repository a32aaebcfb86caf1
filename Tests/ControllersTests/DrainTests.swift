// Drain: a draining node's VMs leave by live migration, its volumes get other coordinators, and it is paused once it holds nothing.
import ClusterModel
import ClusterState
import Controllers
import Testing

@Suite struct DrainTests {
    static let all: Set<NodeID> = [1, 2, 3]

    @Test func itsVMsLeaveByPriorityItsVolumesMoveAndThenItIsPaused() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.createVolume("csv2", path: "volumes/csv2", coordinator: 2))
        let low = fixture.runningVM("low", on: 2, priority: .low)
        let high = fixture.runningVM("high", on: 2, priority: .high)
        let medium = fixture.runningVM("medium", on: 2, priority: .medium)
        let elsewhere = fixture.runningVM("elsewhere", on: 3)
        let epochs = [low, high, medium].map { fixture.vm($0).epoch }
        fixture.applied(.setNodeState(2, .draining))
        var leader = Leader(fixture)
        leader.migrationsComplete = false

        let first = leader.round()
        let migrated = first.compactMap { proposal -> VMID? in
            if case .beginMigration(let vm, _, let reason) = proposal.command, reason == "drain of n2" { return vm }
            return nil
        }
        #expect(migrated == [high, medium, low], "restart priority orders the drain")
        // Two per node may run (migration.max-per-node); the third waits its turn.
        #expect(leader.state.migrations.values.filter { $0.phase == .preparing }.count == 2)
        #expect(leader.state.migrations.values.filter { $0.phase == .queued }.map(\.vm) == [low])
        #expect(leader.state.volumes["csv2"]?.coordinator != 2)
        #expect(leader.state.nodes[2]?.state == .draining, "not paused while it still owns VMs")

        leader.fixture.completeMigrations()
        leader.round()
        #expect(leader.state.nodes[2]?.state == .paused)
        for (vm, epoch) in zip([low, high, medium], epochs) {
            #expect(leader.fixture.vm(vm).owner != 2)
            #expect(leader.fixture.vm(vm).epoch == epoch.next, "moved by a switchover, not a restart")
        }
        #expect(leader.fixture.vm(elsewhere).owner == 3)
        #expect(leader.round().isEmpty, "a paused node is left alone")
    }

    @Test func aQEMUGuestLeavesADrainingNodeByLiveMigrationToo() {
        var fixture = Fixture.threeNodes()
        let real = fixture.runningVM(
            "real", on: 2,
            driver: .qemu(QEMUGuestSpec(vcpus: 1, kernel: DiskFile(volume: "csv1", file: "boot/vmlinuz"))))
        let epoch = fixture.vm(real).epoch
        fixture.applied(.setNodeState(2, .draining))
        var leader = Leader(fixture)
        leader.migrationsComplete = false
        let begun = leader.round().compactMap { proposal -> VMID? in
            if case .beginMigration(let vm, _, _) = proposal.command { return vm }
            return nil
        }
        #expect(begun == [real])
        leader.fixture.completeMigrations()
        leader.round()
        #expect(leader.fixture.vm(real).owner != 2 && leader.fixture.vm(real).epoch == epoch.next)
        #expect(leader.state.nodes[2]?.state == .paused)
    }

    /// The pause is decided on the state of one round; if the operator resumed the node before it
    /// committed, it must not pause a node that is up again.
    @Test func aPauseDecidedBeforeTheOperatorResumedTheNodeIsRefused() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.setNodeState(2, .draining))
        var leader = Leader(fixture)
        let proposals = FailoverController.proposals(
            state: leader.state, leases: leader.table, now: leader.now, wallClock: leader.fixture.wallClock, leader: 1)
        #expect(
            proposals.map(\.command) == [
                .setNodeState(2, .paused, reason: "drained: its VMs, volumes and leadership moved", expected: .draining)
            ])
        leader.fixture.applied(.setNodeState(2, .up, reason: "by operator"))
        #expect(leader.fixture.apply(proposals[0].command).rejection?.kind == .conflict)
        #expect(leader.state.nodes[2]?.state == .up)
    }

    @Test func aDrainingLeaderHandsOverLeadershipOnceDrainedAndIsPausedByItsSuccessor() {
        var fixture = Fixture.threeNodes()
        let web = fixture.runningVM("web", on: 2)
        fixture.applied(.setNodeState(2, .draining))
        var leader = Leader(fixture)
        leader.id = 2
        let matched: [NodeID: LogIndex] = [1: 40, 2: 42, 3: 41]
        #expect(
            FailoverController.leadershipHandover(
                from: 2, in: leader.state, voters: Self.all, matched: matched, heartbeating: { _ in true }) == nil,
            "not while it owns a VM")
        leader.round()
        #expect(leader.fixture.vm(web).owner != 2)
        #expect(leader.state.nodes[2]?.state == .draining, "the leader does not pause itself")
        #expect(
            FailoverController.leadershipHandover(
                from: 2, in: leader.state, voters: Self.all, matched: matched, heartbeating: { _ in true }) == 3,
            "the voter with the most of the log")
        #expect(
            FailoverController.leadershipHandover(
                from: 2, in: leader.state, voters: Self.all, matched: matched, heartbeating: { $0 != 3 }) == 1,
            "only a voter that heartbeats")
        // The successor pauses it.
        leader.id = 3
        leader.round()
        #expect(leader.state.nodes[2]?.state == .paused)
    }

    @Test func aVMWhoseMigrationFailedIsTriedAgainOnlyAfterAWhile() {
        var fixture = Fixture.threeNodes()
        let web = fixture.runningVM("web", on: 2)
        fixture.applied(.setNodeState(2, .draining))
        var leader = Leader(fixture)
        leader.migrationsComplete = false
        leader.round()
        let first = leader.state.activeMigration(of: web)!
        leader.fixture.applied(.abortMigration(first.id, outcome: .failed, reason: "did not converge in 10 rounds"))
        #expect(leader.round().isEmpty, "a failed copy is not tried again at once")
        leader.fixture.wallClock += FailoverController.migrationRetryMilliseconds
        leader.round()
        #expect(leader.state.activeMigration(of: web).map { $0.id != first.id } == true)
    }

    @Test func aVMNoNodeHasReportedRoomForStaysUntilOneHas() {
        var fixture = Fixture.threeNodes()
        let web = fixture.runningVM("web", on: 2)
        fixture.applied(.setNodeState(2, .draining))
        var leader = Leader(fixture)
        let full = NodeMemoryFacts(usable: 8 * gib, assigned: 8 * gib, vms: [])
        leader.reported = [
            1: full, 3: full,
            2: NodeMemoryFacts(
                usable: 8 * gib, assigned: 3 * gib,
                vms: [VMMemoryFacts(vm: web, assigned: 3 * gib, demand: 2 * gib, status: .ok, pagingBytes: 0)]),
        ]
        #expect(leader.round().isEmpty)
        leader.reported[3] = NodeMemoryFacts(usable: 8 * gib, assigned: 2 * gib, vms: [])
        leader.round()
        #expect(leader.fixture.vm(web).owner == 3)
    }
}
