// Lease reads: a leader answers from a lease a quorum confirmed, and the voters that confirmed it
// keep their promise not to help another leader up until it has run out.
import ClusterModel
import RaftCore
import Testing

/// The lease every test's leader takes: 40 ms, which voters with ticks of 50 ms keep for 2 ticks.
private let lease: Duration = .milliseconds(40)
private let tickLength: Duration = .milliseconds(50)

/// Three voters with PreVote, CheckQuorum and lease reads on, messages delivered at once to every
/// node that is up.
private struct LeaseCluster {
    var nodes: [NodeID: RaftNode] = [:]
    var down: Set<NodeID> = []
    /// Everything sent while settling, in order.
    var sent: [Message] = []
    /// Every read state handed out, by node.
    var reads: [NodeID: [ReadState]] = [:]

    /// `ticks[id]`: a node's tick interval (nil: it keeps no promises); 50 ms when not given.
    init(readLease: Duration? = lease, ticks: [NodeID: Duration?] = [:]) throws {
        for id: NodeID in [1, 2, 3] {
            nodes[id] = try RaftNode(
                configuration: RaftConfiguration(
                    id: id, electionTicks: 10, heartbeatTicks: 1, tickInterval: ticks[id] ?? tickLength,
                    readLease: readLease),
                membership: Membership(voters: [1, 2, 3]),
                random: SeededGenerator(seed: id.rawValue)
            )
        }
    }

    mutating func settle() throws {
        var handedOut: [(id: NodeID, ready: Ready)] = []
        try RaftCoreTests.settle(&nodes, down: down) { handedOut.append(($0, $1)) }
        for (id, ready) in handedOut {
            reads[id, default: []] += ready.readStates
            sent += ready.messages
        }
    }

    /// One tick on each of `ids`, then everything settles.
    mutating func tick(_ ids: [NodeID]) throws {
        for id in ids { nodes[id]!.tick() }
        try settle()
    }

    /// A lease read on `id` at `now` (ms on its clock); returns what it sent and whether it was answered.
    mutating func read(on id: NodeID, at now: Int64) throws -> (sent: [Message], answered: Bool) {
        let before = (sent: sent.count, reads: reads[id, default: []].count)
        try nodes[id]!.readIndex(context: [UInt8(truncatingIfNeeded: now)], now: .milliseconds(now))
        try settle()
        return (Array(sent[before.sent...]), reads[id, default: []].count > before.reads)
    }

    /// n1 leads and has committed its no-op; the promises held from the start have run out.
    static func ledByN1(readLease: Duration? = lease, ticks: [NodeID: Duration?] = [:]) throws -> LeaseCluster {
        var cluster = try LeaseCluster(readLease: readLease, ticks: ticks)
        while cluster.nodes.values.contains(where: \.holdsLeasePromise) { try cluster.tick([1, 2, 3]) }
        cluster.nodes[1]!.campaign()
        try cluster.settle()
        precondition(cluster.nodes[1]!.role == .leader, "n1 did not win the first election")
        cluster.sent = []
        return cluster
    }
}

private func leaseHeartbeats(_ messages: [Message]) -> Int {
    messages.filter { if case .heartbeat(let heartbeat) = $0.kind { heartbeat.lease != nil } else { false } }.count
}

private func heartbeats(_ messages: [Message]) -> Int {
    messages.filter { if case .heartbeat = $0.kind { true } else { false } }.count
}

@Test func aLeaderAnswersFromItsLeaseWithoutAHeartbeatRoundUntilTheLeaseRunsOut() throws {
    var cluster = try LeaseCluster.ledByN1()
    // The first read takes a round whose heartbeats carry the promise; its confirmation starts the lease.
    let first = try cluster.read(on: 1, at: 1_000)
    #expect(first.answered && leaseHeartbeats(first.sent) == 2)
    #expect(cluster.nodes[2]!.holdsLeasePromise && cluster.nodes[3]!.holdsLeasePromise)
    // Within 40 ms of the round's start: answered at once, nothing sent.
    let second = try cluster.read(on: 1, at: 1_039)
    #expect(second.answered && second.sent.isEmpty)
    #expect(cluster.nodes[1]!.leaseReads == 1)
    // At 40 ms the lease has run out: a round again.
    let third = try cluster.read(on: 1, at: 1_040)
    #expect(third.answered && leaseHeartbeats(third.sent) == 2)
    #expect(cluster.nodes[1]!.leaseReads == 1)
    // Once the round is confirmed, a tick's heartbeats ask for no promise, and neither does a
    // read without a clock.
    try cluster.tick([1])
    let plain = cluster.sent.count
    try cluster.nodes[1]!.readIndex(context: [9])
    try cluster.settle()
    #expect(heartbeats(Array(cluster.sent[plain...])) == 2 && leaseHeartbeats(Array(cluster.sent[plain...])) == 0)
}

@Test func aLeaderWithoutReadLeasesTakesARoundForEveryReadAndAsksForNoPromise() throws {
    var cluster = try LeaseCluster.ledByN1(readLease: nil)
    for now: Int64 in [1_000, 1_001] {
        let read = try cluster.read(on: 1, at: now)
        #expect(read.answered && heartbeats(read.sent) == 2 && leaseHeartbeats(read.sent) == 0)
    }
    #expect(!cluster.nodes[2]!.holdsLeasePromise)
}

@Test func votersThatConfirmedALeaseHelpNoOtherLeaderUpUntilTheirPromiseRunsOutEvenWhenToldTheLeaderDied() throws {
    var cluster = try LeaseCluster.ledByN1()
    #expect(try cluster.read(on: 1, at: 1_000).answered)
    // n1 is cut off (its lease may still run: it cannot know) and reported gone, rightly or not.
    cluster.down = [1]
    cluster.nodes[2]!.leaderProcessGone(1)
    cluster.nodes[3]!.leaderProcessGone(1)
    // One tick: the promise holds; without it n2 (first in rank after n1) would campaign now.
    try cluster.tick([2, 3])
    #expect(cluster.nodes[2]!.role == .follower && cluster.nodes[3]!.role == .follower)
    #expect(cluster.sent.allSatisfy { if case .preVote = $0.kind { false } else { true } })
    // A pre-vote that reaches a voter meanwhile is ignored, not answered.
    let request = Message(
        from: 2, to: 3, term: cluster.nodes[3]!.term.next,
        kind: .preVote(VoteRequest(lastIndex: 100, lastTerm: cluster.nodes[3]!.term, isLeadershipTransfer: false)))
    try cluster.nodes[3]!.step(request)
    #expect(cluster.nodes[3]!.ready().messages.isEmpty)
    // And so is a vote request of a higher term (from a candidate that skipped the pre-vote).
    var vote = request
    vote.kind = .vote(VoteRequest(lastIndex: 100, lastTerm: cluster.nodes[3]!.term))
    try cluster.nodes[3]!.step(vote)
    #expect(cluster.nodes[3]!.ready().messages.isEmpty && cluster.nodes[3]!.term < vote.term)
    // The second tick ends the promise (at least one whole tick after the heartbeat): a leader follows.
    try cluster.tick([2, 3])
    try cluster.tick([2, 3])
    #expect(cluster.nodes[2]!.role == .leader || cluster.nodes[3]!.role == .leader)
}

@Test func aLeadershipTransferGivesUpTheLeaseAndItsElectionPassesThePromises() throws {
    var cluster = try LeaseCluster.ledByN1()
    #expect(try cluster.read(on: 1, at: 1_000).answered)
    try cluster.nodes[1]!.transferLeadership(to: 2)
    try cluster.settle()
    // n2 won at once although n3 (and n2) had just promised: the leader asked for this election.
    #expect(cluster.nodes[2]!.role == .leader && cluster.nodes[1]!.role == .follower)

    // Had the transfer not finished, the old leader would have no lease: a read takes a round,
    // even once the transfer is given up (its TimeoutNow may have reached the target).
    var stalled = try LeaseCluster.ledByN1()
    #expect(try stalled.read(on: 1, at: 1_000).answered)
    stalled.down = [2]
    try stalled.nodes[1]!.transferLeadership(to: 2)
    try stalled.settle()
    #expect(stalled.sent.contains { $0.kind == .timeoutNow })
    for _ in 0..<10 { try stalled.tick([1, 3]) }
    let read = try stalled.read(on: 1, at: 1_010)
    #expect(read.answered && heartbeats(read.sent) == 2 && stalled.nodes[1]!.leaseReads == 0)
}

@Test func aVoterThatReachesACandidatesTermWithoutVotingStillRefusesItWhileItKeepsAPromise() throws {
    var cluster = try LeaseCluster.ledByN1()
    #expect(try cluster.read(on: 1, at: 1_000).answered)
    let term = cluster.nodes[3]!.term
    // A rejection from a newer term moves n3 there, with no vote and no leader.
    try cluster.nodes[3]!.step(Message(from: 2, to: 3, term: term.next, kind: .preVoteResponse(granted: false)))
    #expect(cluster.nodes[3]!.term == term.next)
    _ = cluster.nodes[3]!.ready()
    let request = VoteRequest(lastIndex: 100, lastTerm: term)
    try cluster.nodes[3]!.step(Message(from: 2, to: 3, term: term.next, kind: .vote(request)))
    let answers = cluster.nodes[3]!.ready().messages.map(\.kind)
    #expect(answers == [.voteResponse(granted: false)])
}

@Test func onlyAnswersThatCarryAPromiseConfirmALease() throws {
    // n2 and n3 keep no promises (no tick interval): every read takes a round.
    var cluster = try LeaseCluster.ledByN1(ticks: [2: Duration?.none, 3: Duration?.none])
    for now: Int64 in [1_000, 1_001, 1_002] {
        let read = try cluster.read(on: 1, at: now)
        #expect(read.answered && leaseHeartbeats(read.sent) == 2)
    }
    #expect(cluster.nodes[1]!.leaseReads == 0)
    // With one of them keeping promises, the leader and it are a quorum.
    var one = try LeaseCluster.ledByN1(ticks: [3: Duration?.none])
    #expect(try one.read(on: 1, at: 1_000).answered)
    #expect(try one.read(on: 1, at: 1_001).sent.isEmpty && one.nodes[1]!.leaseReads == 1)
}

@Test func aVoterWithShorterTicksKeepsThePromiseForMoreOfThem() throws {
    #expect(LeasePromise.promiseTicks(for: .milliseconds(40), tick: .milliseconds(50)) == 2)
    #expect(LeasePromise.promiseTicks(for: .milliseconds(40), tick: .milliseconds(20)) == 4)
    #expect(LeasePromise.promiseTicks(for: .milliseconds(40), tick: .milliseconds(10)) == 6)
    #expect(LeasePromise.promiseTicks(for: .milliseconds(200), tick: .milliseconds(50)) == 6)
    #expect(LeasePromise.promiseTicks(for: .milliseconds(201), tick: .milliseconds(50)) == nil)
    var cluster = try LeaseCluster.ledByN1(ticks: [2: .milliseconds(20)])
    #expect(try cluster.read(on: 1, at: 1_000).answered)
    for tick in 0..<5 {
        #expect(cluster.nodes[2]!.holdsLeasePromise == (tick < 4) && cluster.nodes[3]!.holdsLeasePromise == (tick < 2))
        cluster.nodes[2]!.tick()
        cluster.nodes[3]!.tick()
    }
}

@Test func aNodeThatStartsOrRestartsKeepsTheLongestPromiseForItsFirstTicks() throws {
    let configuration = RaftConfiguration(id: 1, tickInterval: tickLength)
    var fresh = try RaftNode(
        configuration: configuration, membership: Membership(voters: [1, 2, 3]), random: .init(seed: 1))
    var restarted = try RaftNode(
        configuration: configuration, hardState: HardState(term: 3, vote: 2, commit: 0), snapshot: nil, entries: [],
        bootstrapMembership: Membership(voters: [1, 2, 3]), random: .init(seed: 1))
    // 250 ms, the longest promise, in ticks of 50 ms, plus one.
    #expect(LeasePromise.startTicks(tick: tickLength) == 6)
    for tick in 0...6 {
        let holds = tick < 6
        #expect(fresh.holdsLeasePromise == holds && restarted.holdsLeasePromise == holds)
        fresh.tick()
        restarted.tick()
    }
    // Campaigning waits for it too.
    var starting = try RaftNode(
        configuration: configuration, membership: Membership(voters: [1, 2, 3]), random: .init(seed: 1))
    starting.campaign()
    #expect(starting.role == .follower)
    let promisesNothing = try RaftNode(
        configuration: RaftConfiguration(id: 1), membership: Membership(voters: [1, 2, 3]), random: .init(seed: 1))
    #expect(!promisesNothing.holdsLeasePromise)
}

@Test func aMembershipChangeEndsTheLease() throws {
    var cluster = try LeaseCluster.ledByN1()
    #expect(try cluster.read(on: 1, at: 1_000).answered)
    cluster.down = [4]  // a learner that has not started yet
    _ = try cluster.nodes[1]!.changeMembership(.addLearner(4))
    let read = try cluster.read(on: 1, at: 1_001)
    // A round again, to the learner too.
    #expect(read.answered && leaseHeartbeats(read.sent) == 3 && cluster.nodes[1]!.leaseReads == 0)
}

@Test func aLeaseLongerThanVotersWouldPromiseOrNotPositiveIsRefused() {
    for (lease, tickInterval) in [(Duration.milliseconds(250), Duration.milliseconds(50)), (.zero, .milliseconds(50))] {
        #expect(throws: ConfigurationError.self) {
            try RaftConfiguration(id: 1, tickInterval: tickInterval, readLease: lease).validate()
        }
    }
    #expect(throws: ConfigurationError.self) { try RaftConfiguration(id: 1, tickInterval: .zero).validate() }
    #expect(LeasePromise.standardLease(tick: .milliseconds(50)) == .milliseconds(40))
}
