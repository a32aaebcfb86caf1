// Failback: a VM that failover moved away from its preferred owners goes back when the policy says so.
import ClusterModel
import ClusterState
import Controllers
import Testing

@Suite struct FailbackTests {
    static let all: Set<NodeID> = [1, 2, 3]
    static let survivors: Set<NodeID> = [1, 2]

    /// n3 (web's preferred owner) dies and web fails over to n2.
    static func failedOver(policy: String?, startingAt wallClock: UInt64? = nil) -> (Leader, VMID) {
        var fixture = Fixture.threeNodes()
        if let wallClock { fixture.wallClock = wallClock }
        if let policy { fixture.applied(.setSetting(key: FailbackPolicy.key, value: policy)) }
        let web = fixture.runningVM("web", on: 3, preferred: [3, 2])
        var leader = Leader(fixture)
        leader.run(for: .seconds(3), alive: survivors)
        #expect(leader.fixture.vm(web).owner == 2)
        return (leader, web)
    }

    @Test func byDefaultAVMStaysWhereFailoverPutIt() {
        var (leader, web) = Self.failedOver(policy: nil)
        leader.run(for: .seconds(2), alive: Self.all)
        #expect(leader.state.nodes[3]?.state == .up)
        #expect(leader.fixture.vm(web).owner == 2)
    }

    @Test func immediatelyMovesItBackOnceItsPreferredOwnerIsUp() {
        var (leader, web) = Self.failedOver(policy: "immediately")
        let epoch = leader.fixture.vm(web).epoch
        leader.run(for: .milliseconds(200), alive: Self.all)
        #expect(leader.state.nodes[3]?.state == .up)
        // Not before n3 has stayed up a while: a node that flaps must not pull VMs back and forth.
        leader.run(for: .seconds(2), alive: Self.all)
        #expect(leader.fixture.vm(web).owner == 2)
        leader.fixture.wallClock += FailbackPolicy.settleMilliseconds
        leader.run(for: .milliseconds(200), alive: Self.all)
        #expect(leader.fixture.vm(web).owner == 3)
        #expect(leader.fixture.vm(web).epoch == epoch.next, "a new owner fences the old one's writes")
        // By live migration, which says why it started.
        let started = leader.state.events.last { $0.vm == web && $0.kind == .migrationStarted }
        #expect(started?.detail.contains("failback to preferred owner n3 (failback.policy immediately)") == true)
        #expect(leader.state.migrations.values.contains { $0.vm == web && $0.phase == .completed && $0.target == 3 })
        // Back on its most preferred owner: nothing more to do.
        #expect(leader.round().isEmpty)
    }

    @Test func aWindowMovesItBackOnlyInsideItsHours() {
        // 2023-11-14 22:13 UTC: outside 1–5, inside 22–6.
        let lateEvening: UInt64 = 1_700_000_000_000
        var (outside, web) = Self.failedOver(policy: "window:1-5", startingAt: lateEvening)
        outside.run(for: .seconds(1), alive: Self.all)
        outside.fixture.wallClock += FailbackPolicy.settleMilliseconds
        outside.run(for: .seconds(1), alive: Self.all)
        #expect(outside.fixture.vm(web).owner == 2)
        var (inside, sameWeb) = Self.failedOver(policy: "window:22-6", startingAt: lateEvening)
        inside.run(for: .seconds(1), alive: Self.all)
        inside.fixture.wallClock += FailbackPolicy.settleMilliseconds
        inside.run(for: .seconds(1), alive: Self.all)
        #expect(inside.fixture.vm(sameWeb).owner == 3)
        #expect(FailbackPolicy.window(startHour: 22, endHour: 6).allows(atWallClock: 3 * 3_600_000))
        #expect(!FailbackPolicy.window(startHour: 22, endHour: 6).allows(atWallClock: 12 * 3_600_000))
    }

    @Test func aPreferredOwnerWithoutRoomIsSkippedForTheNextBetterOne() {
        var fixture = Fixture.threeNodes(usableMemory: 4 * gib)
        fixture.applied(.setSetting(key: FailbackPolicy.key, value: "immediately"))
        let web = fixture.runningVM("web", on: 1, startup: 2 * gib, preferred: [3, 2])
        // n3 is full, so web can only improve to n2.
        fixture.runningVM("big", on: 3, startup: 3 * gib)
        fixture.wallClock += FailbackPolicy.settleMilliseconds
        var leader = Leader(fixture)
        leader.run(for: .milliseconds(400), alive: Self.all)
        #expect(leader.fixture.vm(web).owner == 2)
    }

    /// Placement kept two VMs of one anti-affinity class apart; failback must not undo that.
    @Test func failbackKeepsAntiAffinityClassesApart() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.setSetting(key: FailbackPolicy.key, value: "immediately"))
        let first = fixture.runningVM("db1", on: 1, preferred: [1, 2], antiAffinity: "db")
        let second = fixture.runningVM("db2", on: 2, preferred: [1, 2], antiAffinity: "db")
        fixture.wallClock += FailbackPolicy.settleMilliseconds
        var leader = Leader(fixture)
        leader.run(for: .seconds(1), alive: Self.all)
        #expect(leader.fixture.vm(first).owner == 1 && leader.fixture.vm(second).owner == 2)
    }

    /// A paused node keeps its VMs where they are; failback does not move them off it either.
    @Test func aPausedOwnersVMsStayPut() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.setSetting(key: FailbackPolicy.key, value: "immediately"))
        let web = fixture.runningVM("web", on: 2, preferred: [1, 2])
        fixture.applied(.setNodeState(2, .paused))
        fixture.wallClock += FailbackPolicy.settleMilliseconds
        var leader = Leader(fixture)
        leader.run(for: .seconds(1), alive: Self.all)
        #expect(leader.fixture.vm(web).owner == 2)
        leader.fixture.applied(.setNodeState(2, .up))
        leader.fixture.wallClock += FailbackPolicy.settleMilliseconds
        leader.run(for: .milliseconds(200), alive: Self.all)
        #expect(leader.fixture.vm(web).owner == 1, "once its owner is up again, web goes to n1")
    }

    @Test func anUnreadablePolicyMeansNeverAndSaysWhy() {
        let policy = FailoverPolicy(settings: [FailbackPolicy.key: "sometimes"])
        #expect(policy.failback == .never)
        #expect(policy.problems.contains { $0.contains("failback.policy must be never, immediately or window:H-H") })
        for text in ["window:5-5", "window:24-1", "window:1", "window:a-b"] {
            #expect(FailbackPolicy(setting: text) == nil, "\(text)")
        }
        #expect(FailbackPolicy(setting: "window:22-6") == .window(startHour: 22, endHour: 6))
    }
}
