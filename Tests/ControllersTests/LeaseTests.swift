// Leases on a fake clock: grants, expiry, the margin, a new leader's wait, and a node's own fencing.
import ClusterModel
import ClusterState
import Controllers
import Testing

@Suite struct LeaseTableTests {
    let timings = LeaseTimings(lease: .seconds(2), margin: .milliseconds(500), heartbeatInterval: .milliseconds(200))

    func grant(_ duration: Duration, _ index: LogIndex) -> HeartbeatAnswer {
        .granted(LeaseGrant(duration: duration, requiredAppliedIndex: index))
    }

    @Test func aNodeIsDeclaredDownOnlyAfterItsLastLeaseAndTheMargin() {
        let state = Fixture.threeNodes().state
        var table = LeaseTable(timings: timings, startedAt: .zero, predecessorContact: .zero)
        // Heartbeats until 10 s, each just after a confirmed probe; then silence.
        for second in 0...10 {
            #expect(
                table.heartbeat(
                    from: 2, facts: NodeFacts(), in: state, appliedIndex: 7, confirmedContact: .seconds(second),
                    now: .seconds(second)) == grant(.seconds(2), 7))
        }
        #expect(!table.leaseIsGone(2, now: .seconds(12)), "its lease may run to 12 s on its own clock")
        #expect(!table.leaseIsGone(2, now: .milliseconds(12_500)), "the margin covers clock-rate differences")
        #expect(table.leaseIsGone(2, now: .milliseconds(12_501)))
        #expect(table.isHeartbeating(2, now: .milliseconds(11_999)))
        #expect(!table.isHeartbeating(2, now: .seconds(12)))
    }

    @Test func aGrantEndsALeaseAfterTheLatestConfirmedContactNotAfterTheHeartbeat() {
        let state = Fixture.threeNodes().state
        var table = LeaseTable(timings: timings, startedAt: .zero, predecessorContact: .zero)
        // The probe that started at 10 s was the last a majority confirmed; the heartbeat comes at 10.7 s.
        #expect(
            table.heartbeat(
                from: 2, facts: NodeFacts(), in: state, appliedIndex: 3, confirmedContact: .seconds(10),
                now: .milliseconds(10_700)) == grant(.milliseconds(1300), 3))
        #expect(table.entries[2]?.lastGrantEnd == .seconds(12))
        #expect(table.lastPossibleLeaseEnd(of: 2) == .milliseconds(12_500))
        // An answer with an older confirmation never moves the recorded end back.
        _ = table.heartbeat(
            from: 2, facts: NodeFacts(), in: state, appliedIndex: 3, confirmedContact: .milliseconds(9900),
            now: .milliseconds(10_800))
        #expect(table.entries[2]?.lastGrantEnd == .seconds(12))
    }

    @Test func aLeaderThatHasNotConfirmedItsLeadershipRefuses() {
        let state = Fixture.threeNodes().state
        var table = LeaseTable(timings: timings, startedAt: .seconds(100), predecessorContact: .seconds(99))
        let answer = table.heartbeat(
            from: 2, facts: NodeFacts(), in: state, appliedIndex: 3, confirmedContact: nil, now: .seconds(100))
        guard case .refused(let reason) = answer else {
            Issue.record("granted without a confirmed contact: \(answer)")
            return
        }
        #expect(reason.contains("not yet confirmed with a majority"), "\(reason)")
        #expect(table.entries[2]?.lastGrantEnd == nil)
        #expect(table.isHeartbeating(2, now: .seconds(101)), "a refused heartbeat still counts")
    }

    @Test func aLeaderWhoseLastConfirmationIsTooOldRefuses() {
        let state = Fixture.threeNodes().state
        var table = LeaseTable(timings: timings, startedAt: .zero, predecessorContact: .zero)
        // 1.8 s after the last confirmation only 200 ms of lease is left: one heartbeat interval.
        #expect(
            table.heartbeat(
                from: 2, facts: NodeFacts(), in: state, appliedIndex: 3, confirmedContact: .seconds(10),
                now: .milliseconds(11_800)) == grant(.milliseconds(200), 3))
        let answer = table.heartbeat(
            from: 2, facts: NodeFacts(), in: state, appliedIndex: 3, confirmedContact: .seconds(10),
            now: .milliseconds(11_801))
        guard case .refused(let reason) = answer else {
            Issue.record("granted less than a heartbeat interval: \(answer)")
            return
        }
        #expect(reason.contains("last confirmed with a majority"), "\(reason)")
        #expect(table.entries[2]?.lastGrantEnd == .seconds(12), "the refusal leaves the last grant's end")
    }

    @Test func aNewLeaderWaitsOneLeaseAndTheMarginAfterThePredecessorContact() {
        // Node 3 never heartbeats this leader: a predecessor heard of at 99.2 s may have granted it
        // a lease that ends at 101.2 s; this leader took over at 100 s.
        let table = LeaseTable(timings: timings, startedAt: .seconds(100), predecessorContact: .milliseconds(99_200))
        #expect(table.predecessorEnd == .milliseconds(101_700))
        #expect(table.lastPossibleLeaseEnd(of: 3) == .milliseconds(101_700))
        #expect(!table.leaseIsGone(3, now: .milliseconds(101_700)))
        #expect(table.leaseIsGone(3, now: .milliseconds(101_701)), "not startedAt + lease + margin (102.5 s)")
        #expect(table.silence(of: 3, now: .seconds(104)) == nil)
    }

    @Test func aNewLeaderHonoursItsOwnLaterGrants() {
        let state = Fixture.threeNodes().state
        var table = LeaseTable(timings: timings, startedAt: .seconds(100), predecessorContact: .seconds(100))
        _ = table.heartbeat(
            from: 2, facts: NodeFacts(), in: state, appliedIndex: 1, confirmedContact: .seconds(103), now: .seconds(103)
        )
        #expect(table.lastPossibleLeaseEnd(of: 2) == .milliseconds(105_500))
        #expect(!table.leaseIsGone(2, now: .milliseconds(105_500)))
        #expect(table.leaseIsGone(2, now: .milliseconds(105_501)))
    }

    @Test func thePredecessorBoundHoldsEvenAfterAnEarlierGrantOfItsOwn() {
        let state = Fixture.threeNodes().state
        // Voters heard from a leader until 100 s; this leader granted at once, confirmed at 99 s
        // (its clock): its own grant ends sooner than a predecessor's may.
        var table = LeaseTable(timings: timings, startedAt: .seconds(100), predecessorContact: .seconds(100))
        _ = table.heartbeat(
            from: 2, facts: NodeFacts(), in: state, appliedIndex: 1, confirmedContact: .seconds(99), now: .seconds(100))
        #expect(table.lastPossibleLeaseEnd(of: 2) == .milliseconds(102_500))
    }

    @Test func theNextDownDeadlineIsWhenASilentNodesLastPossibleLeaseEnds() {
        let state = Fixture.threeNodes().state
        var table = LeaseTable(timings: timings, startedAt: .zero, predecessorContact: .zero)
        for node: NodeID in [1, 2] {
            _ = table.heartbeat(
                from: node, facts: NodeFacts(), in: state, appliedIndex: 1, confirmedContact: .seconds(10),
                now: .seconds(10))
        }
        _ = table.heartbeat(
            from: 1, facts: NodeFacts(), in: state, appliedIndex: 1, confirmedContact: .milliseconds(10_400),
            now: .milliseconds(10_400))
        // Node 2 went quiet after 10 s; node 1 heartbeats; node 3 never did (only the predecessor bound).
        #expect(table.nextDownDeadline(among: [1, 2], now: .milliseconds(10_500)) == .milliseconds(12_500))
        #expect(table.nextDownDeadline(among: [1], now: .milliseconds(10_500)) == nil, "node 1 heartbeats")
        #expect(table.nextDownDeadline(among: [3], now: .milliseconds(1000)) == .milliseconds(2500))
        #expect(table.nextDownDeadline(among: [2], now: .seconds(13)) == nil, "already passed")
    }

    @Test func leasesAreRefusedToUnknownAndDownNodesButTheirHeartbeatsCount() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.setNodeState(3, .down))
        var table = LeaseTable(timings: timings, startedAt: .zero, predecessorContact: .zero)
        let down = table.heartbeat(
            from: 3, facts: NodeFacts(), in: fixture.state, appliedIndex: 9, confirmedContact: .seconds(1),
            now: .seconds(1))
        guard case .refused(let reason) = down else {
            Issue.record("a down node got a lease: \(down)")
            return
        }
        #expect(reason.contains("declared down"))
        #expect(table.isHeartbeating(3, now: .seconds(2)))
        let unknown = table.heartbeat(
            from: 9, facts: NodeFacts(), in: fixture.state, appliedIndex: 9, confirmedContact: .seconds(1),
            now: .seconds(1))
        #expect(unknown != grant(.seconds(2), 9))
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

/// A node out of the committed membership hears so in the heartbeat answer; it stops only if that is its removal.
@Suite struct MembershipNoticeTests {
    @Test func theLeaderSaysNotAMemberOnlyOnceTheMembershipLeavingTheNodeOutHasCommitted() {
        #expect(MembershipNotice.answer(to: 2, members: [1, 2, 3], membershipIndex: 5, commit: 9) == nil)
        #expect(MembershipNotice.answer(to: 4, members: [1, 2, 3], membershipIndex: 12, commit: 11) == nil)
        let answer = MembershipNotice.answer(to: 4, members: [1, 2, 3], membershipIndex: 12, commit: 12)
        guard case .notAMember(let index, let reason) = answer else {
            Issue.record("expected notAMember, got \(String(describing: answer))")
            return
        }
        #expect(index == 12)
        #expect(reason == "n4 is not a member of the cluster: the membership committed at index 12 is n1 n2 n3")
    }

    @Test func aNodeTakesItAsItsRemovalOnlyIfItsOwnMembershipIsOlderOrLeavesItOut() {
        // It appended the entry that removed it (index 12), committed or not on its side.
        #expect(
            MembershipNotice.isRemoved(4, ownMembers: [1, 2, 3], ownMembershipIndex: 12, leaderMembershipIndex: 12))
        // It missed that entry (it was stopped): its own membership, with it, is older than the leader's.
        #expect(
            MembershipNotice.isRemoved(4, ownMembers: [1, 2, 3, 4], ownMembershipIndex: 8, leaderMembershipIndex: 12))
        // Started with --join before `members add`: it knows no membership yet and waits.
        #expect(!MembershipNotice.isRemoved(4, ownMembers: [], ownMembershipIndex: 0, leaderMembershipIndex: 12))
        // Just added (index 14), asked a stale leader whose committed membership (12) predates the add.
        #expect(
            !MembershipNotice.isRemoved(4, ownMembers: [1, 2, 3, 4], ownMembershipIndex: 14, leaderMembershipIndex: 12))
        #expect(
            !MembershipNotice.isRemoved(4, ownMembers: [1, 2, 3, 4], ownMembershipIndex: 12, leaderMembershipIndex: 12))
    }
}
