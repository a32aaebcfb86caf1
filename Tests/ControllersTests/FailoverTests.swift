// Failover stories on a fake clock: a node goes silent, its VMs and volumes move, it comes back.
import ClusterModel
import ClusterState
import Controllers
import Testing

@Suite struct FailoverTests {
    static let all: Set<NodeID> = [1, 2, 3]
    static let survivors: Set<NodeID> = [1, 2]

    @Test func aSilentNodeIsDeclaredDownOnlyAfterItsLeaseAndMarginThenItsVMsRestartOnSurvivors() {
        var fixture = Fixture.threeNodes()
        let web = fixture.runningVM("web", on: 3)
        var leader = Leader(fixture)
        leader.run(for: .seconds(3), alive: Self.all)
        #expect(leader.made.isEmpty, "everyone heartbeats: nothing to do")

        // Node 3 goes silent at 1003 s; its last grant was at 1003 s, so its lease may last until
        // 1005 s on its own clock, and the leader waits the 0.5 s margin beyond that.
        leader.run(for: .milliseconds(2400), alive: Self.survivors)
        #expect(leader.state.nodes[3]?.state == .up, "2.4 s of silence: the lease plus margin has not passed")
        leader.run(for: .milliseconds(200), alive: Self.survivors)
        #expect(leader.state.nodes[3]?.state == .down)
        let vm = leader.fixture.vm(web)
        #expect(vm.state == .running)
        #expect(vm.owner != nil && vm.owner != 3)
        #expect(vm.epoch == 3, "started at epoch 1, pending at 2 when its owner went down, placed at 3")
        let down = leader.made.first { if case .setNodeState(3, .down, _, _) = $0.command { true } else { false } }
        #expect(down?.reason.contains("no heartbeat for 2.6 s") == true, "\(leader.made)")
        let ownerEvent = leader.state.events.last { $0.kind == .vmOwnerChanged && $0.vm == web }
        #expect(
            ownerEvent?.detail.contains("failover from n3, which went down") == true,
            "\(String(describing: ownerEvent))")
    }

    @Test func aNewLeaderDeclaresNobodyDownBeforeOneLeaseAndTheMarginHavePassed() {
        var fixture = Fixture.threeNodes()
        fixture.runningVM("web", on: 3)
        // Node 3 never reaches the new leader.
        var leader = Leader(fixture, startedAt: .seconds(50))
        leader.run(for: .milliseconds(2400), alive: Self.survivors)
        #expect(leader.made.isEmpty)
        leader.run(for: .milliseconds(200), alive: Self.survivors)
        #expect(leader.state.nodes[3]?.state == .down)
        #expect(leader.made.first?.reason.contains("since this leader took over") == true)
    }

    @Test func failoverPlacesVMsInRestartPriorityOrderAndLeavesNoneDown() {
        // Survivors have room for two of the three 3 GiB VMs: priority decides which.
        var fixture = Fixture.threeNodes(usableMemory: 4 * gib)
        let low = fixture.runningVM("low", on: 3, startup: 1 * gib, priority: .low)
        let off = fixture.runningVM("off", on: 3, startup: 1 * gib, priority: .none)
        let medium = fixture.runningVM("medium", on: 3, startup: 1 * gib, priority: .medium)
        let high = fixture.runningVM("high", on: 3, startup: 1 * gib, priority: .high)
        fixture.runningVM("filler1", on: 1, startup: 3 * gib)
        fixture.runningVM("filler2", on: 2, startup: 3 * gib + gib / 2)
        var leader = Leader(fixture)
        leader.run(for: .seconds(3), alive: Self.survivors)

        let owners = leader.made.compactMap { proposal -> VMID? in
            if case .setVMOwner(let vm, .some, _, _) = proposal.command { vm } else { nil }
        }
        #expect(owners == [high], "only 1 GiB free on n1 and 0.5 GiB on n2: high goes first and alone")
        #expect(leader.fixture.vm(high).owner == 1)
        for vm in [medium, low] {
            #expect(leader.fixture.vm(vm).state == .pending)
            #expect(
                leader.fixture.vm(vm).pendingReason
                    == "needs 1.0 GiB startup memory; the most free on any up node is 512 MiB (n2)")
        }
        #expect(leader.fixture.vm(off).pendingReason?.contains("restart priority is none") == true)

        // Nothing changes: the next rounds propose nothing new.
        #expect(leader.round().isEmpty)
        leader.run(for: .seconds(1), alive: Self.survivors)
        #expect(leader.made.count == 1 + 1 + 2 + 1, "n3 down, high placed, two pending reasons, none's reason")
    }

    @Test func pendingVMsArePlacedInPriorityOrderWhenRoomAppears() {
        var fixture = Fixture.threeNodes(usableMemory: 2 * gib)
        let low = fixture.runningVM("low", on: 3, startup: 1 * gib, priority: .low)
        let high = fixture.runningVM("high", on: 3, startup: 1 * gib, priority: .high)
        let big1 = fixture.runningVM("big1", on: 1, startup: 2 * gib)
        fixture.runningVM("big2", on: 2, startup: 2 * gib)
        var leader = Leader(fixture)
        leader.run(for: .seconds(3), alive: Self.survivors)
        #expect(leader.fixture.vm(high).state == .pending && leader.fixture.vm(low).state == .pending)
        leader.fixture.applied(.stopVM(big1))
        leader.round()
        #expect(leader.fixture.vm(high).owner == 1)
        #expect(leader.fixture.vm(low).owner == 1)
        #expect(leader.state.events.last?.detail.contains("placed now that it fits") == true)
    }

    @Test func failoverKeepsAntiAffinityClassesApart() {
        var fixture = Fixture.threeNodes()
        fixture.runningVM("db1", on: 1, antiAffinity: "db")
        let db2 = fixture.runningVM("db2", on: 3, antiAffinity: "db")
        // n1 has more free memory, but it runs the other db VM.
        fixture.runningVM("filler", on: 2, startup: 3 * gib)
        var leader = Leader(fixture)
        leader.run(for: .seconds(3), alive: Self.survivors)
        #expect(leader.fixture.vm(db2).owner == 2)
    }

    @Test func aPreferredOwnerIsChosenWhenItFits() {
        var fixture = Fixture.threeNodes()
        let web = fixture.runningVM("web", on: 3, preferred: [3, 2])
        var leader = Leader(fixture)
        leader.run(for: .seconds(3), alive: Self.survivors)
        #expect(leader.fixture.vm(web).owner == 2)
    }

    @Test func aVMThatFailsOverTooOftenStaysDownWithTheReason() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.setSetting(key: FailoverPolicy.maxPerVMKey, value: "1"))
        fixture.applied(.setSetting(key: FailoverPolicy.periodKey, value: "600"))
        let web = fixture.runningVM("web", on: 3, preferred: [2, 1])
        var leader = Leader(fixture)
        // First failure: n3 goes down, web moves to n2 (allowed: one failover in the period).
        leader.run(for: .seconds(3), alive: Self.survivors)
        #expect(leader.fixture.vm(web).owner == 2)
        // Second failure within ten minutes: n2 goes down too; web stays down.
        leader.run(for: .seconds(3), alive: [1])
        let vm = leader.fixture.vm(web)
        #expect(vm.state == .pending)
        #expect(
            vm.pendingReason
                == "lost its owner 2 times in the last 600 s; failover.max-per-vm is 1, so it stays down until the "
                + "period has passed; start it to run it sooner")
        #expect(leader.round().isEmpty)
        // Once the period has passed (by the wall clock the events carry), it is placed again.
        leader.fixture.wallClock += 600_000
        leader.round()
        #expect(leader.fixture.vm(web).owner == 1)
    }

    @Test func unreadableThrottlingSettingsKeepTheirDefaultsAndSaySo() {
        let policy = FailoverPolicy(settings: [FailoverPolicy.maxPerVMKey: "many", FailoverPolicy.periodKey: "60"])
        #expect(policy.maxFailoversPerVM == FailoverPolicy.defaultMaxPerVM)
        #expect(policy.period == .seconds(60))
        #expect(policy.problems == ["failover.max-per-vm must be a whole number 0–1000, got \"many\"; using 3"])
    }

    @Test func aVolumeWhoseCoordinatorGoesDownMovesToTheUpNodeWithFewestVolumes() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.createVolume("csv2", path: "volumes/csv2", coordinator: 3))
        fixture.applied(.createVolume("csv3", path: "volumes/csv3", coordinator: 3))
        var leader = Leader(fixture)
        leader.run(for: .seconds(3), alive: Self.survivors)
        #expect(leader.state.volumes["csv2"]?.coordinator == 2)
        #expect(leader.state.volumes["csv2"]?.state == .online)
        // n1 coordinates csv1 and n2 now csv2: a tie goes to the lowest id.
        #expect(leader.state.volumes["csv3"]?.coordinator == 1)
        #expect(leader.state.volumes["csv1"]?.coordinator == 1)
    }

    @Test func aVolumeStaysOfflineWhileNoNodeIsUpAndMovesOnceOneIs() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.setNodeState(2, .paused))
        fixture.applied(.setNodeState(3, .paused))
        var leader = Leader(fixture)
        leader.run(for: .seconds(3), alive: [2, 3])
        #expect(leader.state.nodes[1]?.state == .down)
        #expect(leader.state.volumes["csv1"]?.state == .offline)
        leader.fixture.applied(.setNodeState(2, .up))
        leader.round()
        #expect(leader.state.volumes["csv1"]?.coordinator == 2)
    }

    @Test func aNodeThatHeartbeatsAgainIsBroughtBackUpAndGetsALease() {
        var fixture = Fixture.threeNodes()
        let web = fixture.runningVM("web", on: 3)
        var leader = Leader(fixture)
        leader.run(for: .seconds(3), alive: Self.survivors)
        #expect(leader.state.nodes[3]?.state == .down)
        let epoch = leader.fixture.vm(web).epoch
        leader.run(for: .milliseconds(200), alive: Self.all)
        #expect(leader.state.nodes[3]?.state == .up)
        #expect(leader.made.last?.reason == "n3 heartbeats again")
        #expect(leader.fixture.vm(web).epoch == epoch, "its VMs stay where failover put them")
        let answer = leader.table.heartbeat(
            from: 3, facts: NodeFacts(), in: leader.state, appliedIndex: 5, confirmedContact: leader.now,
            now: leader.now)
        #expect(answer == .granted(LeaseGrant(duration: .seconds(2), requiredAppliedIndex: 5)))
        leader.run(for: .seconds(5), alive: Self.all)
        #expect(leader.state.nodes[3]?.state == .up)
    }

    @Test func aRoundRepeatedBeforeItsProposalsCommitProposesTheSameCommandsWhichTheLogRefuses() {
        var fixture = Fixture.threeNodes()
        fixture.runningVM("web", on: 3)
        var leader = Leader(fixture)
        leader.run(for: .seconds(3), alive: Self.survivors)
        let table = leader.table
        // Decide again from the state before that round committed.
        let replay = FailoverController.proposals(
            state: fixture.state, leases: table, now: leader.now, wallClock: leader.fixture.wallClock)
        #expect(!replay.isEmpty)
        var state = leader.state
        for proposal in replay {
            #expect(state.apply(proposal.command, proposedAt: 0).rejection != nil, "\(proposal) applied twice")
        }
    }
}
