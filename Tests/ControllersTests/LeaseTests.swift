// Leases on a fake clock: grants, expiry, the margin, a new leader's wait, and a node's own fencing.
import ClusterModel
import ClusterState
import Controllers
import Testing

@Suite struct LeaseTableTests {
    let timings = LeaseTimings(lease: .seconds(2), margin: .milliseconds(500))

    @Test func aNodeIsDeclaredDownOnlyAfterItsLastLeaseAndTheMargin() {
        let state = Fixture.threeNodes().state
        var table = LeaseTable(timings: timings, startedAt: .zero)
        // Heartbeats until 10 s, then silence.
        for second in 0...10 {
            #expect(
                table.heartbeat(
                    from: 2, facts: NodeFacts(), in: state, appliedIndex: 7, now: .seconds(second))
                    == .granted(LeaseGrant(duration: .seconds(2), requiredAppliedIndex: 7)))
        }
        #expect(!table.leaseIsGone(2, now: .seconds(12)), "its lease may run to 12 s on its own clock")
        #expect(!table.leaseIsGone(2, now: .milliseconds(12_500)), "the margin covers clock-rate differences")
        #expect(table.leaseIsGone(2, now: .milliseconds(12_501)))
        #expect(table.isHeartbeating(2, now: .milliseconds(11_999)))
        #expect(!table.isHeartbeating(2, now: .seconds(12)))
    }

    @Test func aNewLeaderWaitsOneLeaseAndTheMarginBeforeDeclaringAnyoneDown() {
        // Node 3 never heartbeats this leader: a predecessor may have granted it a lease just before.
        let table = LeaseTable(
            timings: LeaseTimings(lease: .seconds(2), margin: .milliseconds(500), deposedLeaderBound: .seconds(1)),
            startedAt: .seconds(100))
        #expect(!table.leaseIsGone(3, now: .seconds(103)))
        #expect(!table.leaseIsGone(3, now: .milliseconds(103_500)), "a deposed leader may have granted until 101 s")
        #expect(table.leaseIsGone(3, now: .milliseconds(103_501)))
        #expect(table.silence(of: 3, now: .seconds(104)) == nil)
    }

    @Test func aNewLeaderHonoursItsOwnLaterGrants() {
        let state = Fixture.threeNodes().state
        var table = LeaseTable(timings: timings, startedAt: .seconds(100))
        _ = table.heartbeat(from: 2, facts: NodeFacts(), in: state, appliedIndex: 1, now: .seconds(103))
        #expect(!table.leaseIsGone(2, now: .seconds(105)))
        #expect(table.leaseIsGone(2, now: .milliseconds(105_501)))
    }

    @Test func leasesAreRefusedToUnknownAndDownNodesButTheirHeartbeatsCount() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.setNodeState(3, .down))
        var table = LeaseTable(timings: timings, startedAt: .zero)
        let down = table.heartbeat(from: 3, facts: NodeFacts(), in: fixture.state, appliedIndex: 9, now: .seconds(1))
        guard case .refused(let reason) = down else {
            Issue.record("a down node got a lease: \(down)")
            return
        }
        #expect(reason.contains("declared down"))
        #expect(table.isHeartbeating(3, now: .seconds(2)))
        let unknown = table.heartbeat(from: 9, facts: NodeFacts(), in: fixture.state, appliedIndex: 9, now: .seconds(1))
        #expect(unknown != .granted(LeaseGrant(duration: .seconds(2), requiredAppliedIndex: 9)))
    }
}

@Suite struct LeaseHolderTests {
    @Test func aNodeStartsFencedAndUnfencesOnceGrantedAndCaughtUp() {
        var holder = LeaseHolder()
        #expect(holder.isFenced)
        #expect(holder.check(now: .zero, appliedIndex: 0) == nil)
        holder.granted(LeaseGrant(duration: .seconds(2), requiredAppliedIndex: 40), sentAt: .seconds(1))
        #expect(holder.check(now: .milliseconds(1100), appliedIndex: 39) == nil, "its state is older than the leader's")
        #expect(holder.check(now: .milliseconds(1200), appliedIndex: 40) == .unfence)
        #expect(holder.check(now: .milliseconds(1300), appliedIndex: 41) == nil)
    }

    @Test func theLeaseRunsFromWhenTheHeartbeatWasSentAndFencesWhenItRunsOut() {
        var holder = LeaseHolder()
        // Sent at 10 s, answered at 10.9 s: the lease still ends at 12 s.
        holder.granted(LeaseGrant(duration: .seconds(2), requiredAppliedIndex: 0), sentAt: .seconds(10))
        #expect(holder.check(now: .milliseconds(10_900), appliedIndex: 0) == .unfence)
        #expect(holder.isValid(now: .milliseconds(11_999)))
        #expect(!holder.isValid(now: .seconds(12)))
        holder.refused(reason: "n2 is declared down")
        guard case .fence(let reason) = holder.check(now: .seconds(12), appliedIndex: 0) else {
            Issue.record("no fencing when the lease ran out")
            return
        }
        #expect(reason.contains("lease ran out") && reason.contains("declared down"))
        #expect(holder.check(now: .seconds(13), appliedIndex: 0) == nil, "fences once")
        holder.granted(LeaseGrant(duration: .seconds(2), requiredAppliedIndex: 0), sentAt: .seconds(13))
        #expect(holder.check(now: .milliseconds(13_100), appliedIndex: 0) == .unfence)
    }

    @Test func aGrantAfterAGapStillFencesOnceAndWaitsForTheState() {
        var holder = LeaseHolder()
        holder.granted(LeaseGrant(duration: .seconds(2), requiredAppliedIndex: 0), sentAt: .seconds(1))
        #expect(holder.check(now: .milliseconds(1100), appliedIndex: 0) == .unfence)
        // The process stood still from 1.2 s to 9 s; a heartbeat sent at 9 s is granted before any check ran.
        holder.granted(LeaseGrant(duration: .seconds(2), requiredAppliedIndex: 30), sentAt: .seconds(9))
        #expect(
            holder.check(now: .milliseconds(9100), appliedIndex: 20)
                == .fence(reason: "the lease ran out before a new one was granted"))
        #expect(holder.check(now: .milliseconds(9200), appliedIndex: 20) == nil, "its state is older than the grant's")
        #expect(holder.check(now: .milliseconds(9300), appliedIndex: 30) == .unfence)
    }

    @Test func aLateAnswerNeverShortensTheLease() {
        var holder = LeaseHolder()
        holder.granted(LeaseGrant(duration: .seconds(2), requiredAppliedIndex: 0), sentAt: .seconds(5))
        holder.granted(LeaseGrant(duration: .seconds(2), requiredAppliedIndex: 0), sentAt: .seconds(4))
        #expect(holder.expiresAt == .seconds(7))
    }
}
