// Scenarios for `leaderProcessGone`: a follower that saw its leader's process die campaigns at once.
import ClusterModel
import RaftCore
import Testing

/// Three voters with PreVote and CheckQuorum on (as the node runs them), messages delivered at
/// once to every node that is up.
private struct ThreeNodes {
    var nodes: [NodeID: RaftNode] = [:]
    var down: Set<NodeID> = []

    init(seed: UInt64 = 0) throws {
        for id: NodeID in [1, 2, 3] {
            nodes[id] = try RaftNode(
                configuration: RaftConfiguration(id: id, electionTicks: 10, heartbeatTicks: 1),
                membership: Membership(voters: [1, 2, 3]),
                random: SeededGenerator(seed: seed &+ id.rawValue)
            )
        }
    }

    var up: [NodeID] { nodes.keys.sorted().filter { !down.contains($0) } }

    /// Handles every node's `Ready` and delivers its messages to the nodes that are up, until quiet.
    mutating func settle() throws {
        try RaftCoreTests.settle(&nodes, down: down)
    }

    /// One tick on every node that is up, then everything settles.
    mutating func tick() throws {
        for id in up { nodes[id]!.tick() }
        try settle()
    }

    /// Kills `id`'s process: it neither sends nor receives from now on.
    mutating func kill(_ id: NodeID) {
        down.insert(id)
    }

    /// Ticks `id` alone (nothing delivered) and returns the pre-votes it asked for.
    mutating func tickAlone(_ id: NodeID) -> [Message] {
        nodes[id]!.tick()
        var preVotes: [Message] = []
        while nodes[id]!.hasReady {
            let ready = nodes[id]!.ready()
            nodes[id]!.advance(ready)
            for message in ready.messages {
                if case .preVote = message.kind { preVotes.append(message) }
            }
        }
        return preVotes
    }

    static func elected(_ leader: NodeID, seed: UInt64 = 0) throws -> ThreeNodes {
        var cluster = try ThreeNodes(seed: seed)
        cluster.nodes[leader]!.campaign()
        try cluster.settle()
        precondition(cluster.nodes[leader]!.role == .leader, "n\(leader) did not win the first election")
        return cluster
    }
}

/// Ticks `id` alone until it asks for pre-votes; returns how many ticks that took (nil: not within `limit`).
private func ticksUntilCampaign(_ cluster: inout ThreeNodes, _ id: NodeID, limit: Int = 30) -> Int? {
    for tick in 1...limit where !cluster.tickAlone(id).isEmpty { return tick }
    return nil
}

@Test(
    "followers told that their leader's process is gone ask for pre-votes after 1 and 3 ticks, the leader's successor first",
    arguments: [(1, 2, 3), (2, 3, 1), (3, 1, 2)] as [(NodeID, NodeID, NodeID)])
func followersThatSawTheirLeaderDieCampaignWithinThreeTicks(leader: NodeID, successor: NodeID, next: NodeID) throws {
    var cluster = try ThreeNodes.elected(leader)
    cluster.kill(leader)
    cluster.nodes[successor]!.leaderProcessGone(leader)
    cluster.nodes[next]!.leaderProcessGone(leader)
    #expect(cluster.nodes[successor]!.leader == nil && cluster.nodes[next]!.leader == nil)
    #expect(ticksUntilCampaign(&cluster, successor) == 1)
    #expect(ticksUntilCampaign(&cluster, next) == 3)
}

@Test("followers that both saw the leader die elect its successor within 1 tick, in the next term")
func followersThatBothSawTheLeaderDieElectTheSuccessorAtOnce() throws {
    var cluster = try ThreeNodes.elected(2)
    cluster.kill(2)
    cluster.nodes[1]!.leaderProcessGone(2)
    cluster.nodes[3]!.leaderProcessGone(2)
    try cluster.tick()
    #expect(cluster.nodes[3]!.role == .leader)
    #expect(cluster.nodes[1]!.leader == 3)
    #expect(cluster.nodes[1]!.term == 2 && cluster.nodes[3]!.term == 2)
}

@Test func aVoterThatSawTheLeaderDieGrantsThePreVoteItWouldOtherwiseRefuse() throws {
    var cluster = try ThreeNodes.elected(1)
    cluster.kill(1)
    cluster.nodes[2]!.leaderProcessGone(1)
    cluster.nodes[3]!.leaderProcessGone(1)
    let preVotes = cluster.tickAlone(2)
    let toN3 = try #require(preVotes.first { $0.to == 3 })
    try cluster.nodes[3]!.step(toN3)
    let answers = cluster.nodes[3]!.ready().messages
    #expect(answers.map(\.kind) == [.preVoteResponse(granted: true)])
}

@Test func aVoterThatDidNotSeeTheLeaderDieStillRefusesAndTheTermStays() throws {
    var cluster = try ThreeNodes.elected(1)
    cluster.kill(1)
    // Only n2 saw it (n3's connection to n1 was, say, idle and not yet closed).
    cluster.nodes[2]!.leaderProcessGone(1)
    let preVotes = cluster.tickAlone(2)
    let toN3 = try #require(preVotes.first { $0.to == 3 })
    try cluster.nodes[3]!.step(toN3)
    // CheckQuorum stickiness: n3 heard from its leader within an election timeout and ignores it.
    #expect(cluster.nodes[3]!.ready().messages.isEmpty)
    #expect(cluster.nodes[3]!.leader == 1)
    #expect(cluster.nodes[2]!.term == 1 && cluster.nodes[3]!.term == 1)
}

@Test func aLeaderReportedGoneWhileAliveKeepsLeadingInItsTerm() throws {
    var cluster = try ThreeNodes.elected(1)
    // A wrong report: n1 is alive and keeps sending heartbeats.
    cluster.nodes[2]!.leaderProcessGone(1)
    cluster.nodes[3]!.leaderProcessGone(1)
    for _ in 0..<40 { try cluster.tick() }
    #expect(cluster.nodes[1]!.role == .leader)
    for id: NodeID in [1, 2, 3] {
        #expect(cluster.nodes[id]!.term == 1, "n\(id)")
        #expect(cluster.nodes[id]!.leader == 1, "n\(id)")
    }
}

@Test func aFollowerBackWithItsLeaderWaitsAFullElectionTimeoutAgain() throws {
    var cluster = try ThreeNodes.elected(1)
    cluster.nodes[2]!.leaderProcessGone(1)
    try cluster.tick()  // n1's heartbeat reaches n2: it follows n1 again.
    #expect(cluster.nodes[2]!.leader == 1)
    cluster.kill(1)
    // Without the report, n2 waits at least electionTicks (10) before it asks for pre-votes.
    for tick in 1..<10 {
        #expect(cluster.tickAlone(2).isEmpty, "n2 campaigned \(tick) ticks after its leader fell silent")
    }
}

@Test func theReportIsIgnoredOnALeaderAndForANodeThatIsNotTheLeader() throws {
    var cluster = try ThreeNodes.elected(1)
    // On the leader: a dead follower changes nothing about elections.
    cluster.nodes[1]!.leaderProcessGone(2)
    #expect(cluster.nodes[1]!.role == .leader)
    #expect(!cluster.nodes[1]!.hasReady)
    // On a follower: a peer that is not its leader, and a node that is not a member.
    cluster.nodes[2]!.leaderProcessGone(3)
    cluster.nodes[2]!.leaderProcessGone(9)
    #expect(cluster.nodes[2]!.leader == 1)
    cluster.kill(1)
    for tick in 1..<10 {
        #expect(cluster.tickAlone(2).isEmpty, "n2 campaigned \(tick) ticks after its leader fell silent")
    }
}
