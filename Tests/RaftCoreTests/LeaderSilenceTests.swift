// Scenarios for `leaderSilenceTicks`: a leader whose host vanished is replaced within a few ticks of
// silence, and a leader that a majority still hears is never deposed by the followers that do not.
import ClusterModel
import RaftCore
import Testing

/// A cluster on a small seeded simulator: time in units, ten to a tick; each node ticks at its own
/// phase within the tick (so followers count a silence up to a tick apart, as on real machines);
/// each message takes 1–3 units, so messages overtake each other; a directed link can be cut, and
/// a cut link also drops what is in flight on it. Everything is drawn from one seed.
private struct SilenceCluster {
    static let unitsPerTick = 10

    let configuration: (electionTicks: Int, heartbeatTicks: Int, silence: Int?)
    var nodes: [NodeID: RaftNode] = [:]
    var phase: [NodeID: Int] = [:]
    var random: SeededGenerator
    var time = 0
    var sequence = 0
    var inFlight: [(arrival: Int, sequence: Int, message: Message)] = []
    var cut: Set<[NodeID]> = []
    /// Pre-votes each node asked for, by sender.
    var preVotesSent: [NodeID: Int] = [:]

    init(size: Int, electionTicks: Int = 10, heartbeatTicks: Int = 1, silence: Int?, seed: UInt64) throws {
        configuration = (electionTicks, heartbeatTicks, silence)
        random = SeededGenerator(seed: seed)
        let voters = Set((1...UInt64(size)).map { NodeID($0) })
        for id in voters.sorted() {
            nodes[id] = try RaftNode(
                configuration: RaftConfiguration(
                    id: id, electionTicks: electionTicks, heartbeatTicks: heartbeatTicks, leaderSilenceTicks: silence),
                membership: Membership(voters: voters),
                random: SeededGenerator(seed: seed &* 31 &+ id.rawValue))
            phase[id] = Int.random(in: 0..<Self.unitsPerTick, using: &random)
        }
    }

    /// The node that leads in the highest term any node has reached, if one does.
    var leader: NodeID? {
        let highest = nodes.values.map(\.term).max()
        return nodes.first { $0.value.role == .leader && $0.value.term == highest }?.key
    }

    var terms: [NodeID: Term] { nodes.mapValues(\.term) }

    func isCut(_ from: NodeID, _ to: NodeID) -> Bool { cut.contains([from, to]) }

    /// Cuts every link to and from `node`: its host vanished from the network.
    mutating func isolate(_ node: NodeID) {
        for other in nodes.keys where other != node {
            cut.insert([node, other])
            cut.insert([other, node])
        }
    }

    /// One unit of time: due messages are delivered, then nodes whose phase it is tick.
    mutating func step() throws {
        time += 1
        let due = inFlight.filter { $0.arrival <= time }.sorted {
            ($0.arrival, $0.sequence) < ($1.arrival, $1.sequence)
        }
        inFlight.removeAll { $0.arrival <= time }
        for delivery in due where !isCut(delivery.message.from, delivery.message.to) {
            try nodes[delivery.message.to]!.step(delivery.message)
            flush(delivery.message.to)
        }
        for id in nodes.keys.sorted() where time % Self.unitsPerTick == phase[id]! {
            nodes[id]!.tick()
            flush(id)
        }
    }

    /// Takes a node's `Ready` batches and puts their messages on the network.
    mutating func flush(_ id: NodeID) {
        while nodes[id]!.hasReady {
            let ready = nodes[id]!.ready()
            nodes[id]!.advance(ready)
            for message in ready.messages {
                if case .preVote = message.kind { preVotesSent[id, default: 0] += 1 }
                guard !isCut(message.from, message.to) else { continue }
                sequence += 1
                inFlight.append((time + Int.random(in: 1...3, using: &random), sequence, message))
            }
        }
    }

    /// Steps until `done` holds; returns the units it took, or nil if it did not within `limit`.
    mutating func run(for limit: Int, until done: (Self) -> Bool) throws -> Int? {
        let start = time
        while time - start < limit {
            if done(self) { return time - start }
            try step()
        }
        return done(self) ? time - start : nil
    }

    /// Elects a first leader and lets the cluster run steadily for `ticks`.
    static func elected(
        size: Int, electionTicks: Int = 10, heartbeatTicks: Int = 1, silence: Int?, seed: UInt64, ticks: Int = 50
    ) throws -> (SilenceCluster, NodeID) {
        var cluster = try SilenceCluster(
            size: size, electionTicks: electionTicks, heartbeatTicks: heartbeatTicks, silence: silence, seed: seed)
        let first = NodeID(UInt64(1 + Int.random(in: 0..<size, using: &cluster.random)))
        cluster.nodes[first]!.campaign()
        cluster.flush(first)
        let elected = try cluster.run(for: 20 * unitsPerTick) { $0.leader != nil }
        let leader = try #require(cluster.leader, "seed \(seed): no first leader (\(String(describing: elected)))")
        _ = try cluster.run(for: ticks * unitsPerTick) { _ in false }
        return (cluster, leader)
    }
}

/// 3 and 5 voters, at the node's timing (heartbeat every tick, election after 10–20) and at a
/// slower one (heartbeat every 2 ticks, election after 20–40), each with its default silence.
private let shapes: [(size: Int, electionTicks: Int, heartbeatTicks: Int)] = [
    (3, 10, 1), (5, 10, 1), (3, 20, 2), (5, 20, 2),
]
private let seeds: [UInt64] = Array(0..<25)

private func silence(_ shape: (size: Int, electionTicks: Int, heartbeatTicks: Int)) -> Int {
    RaftConfiguration.defaultLeaderSilenceTicks(
        electionTicks: shape.electionTicks, heartbeatTicks: shape.heartbeatTicks)!
}

/// The bound: the silence, then up to 3 ticks of rank-ordered delay (the successor stands 1 tick
/// later; if a voter that heard the last heartbeat a tick later refuses it, the next one stands 2
/// ticks after), a tick for the last heartbeat's phase, and the election's round trips.
private func replacementBound(silence: Int) -> Int {
    (silence + 4) * SilenceCluster.unitsPerTick + 12
}

@Test("a vanished leader is replaced within its silence plus four ticks, in every seed and shape")
func aVanishedLeaderIsReplacedWithinTheSilenceBound() throws {
    for shape in shapes {
        let silence = silence(shape)
        for seed in seeds {
            var (cluster, old) = try SilenceCluster.elected(
                size: shape.size, electionTicks: shape.electionTicks, heartbeatTicks: shape.heartbeatTicks,
                silence: silence, seed: seed)
            let oldTerm = cluster.nodes[old]!.term
            // A steady cluster held no election in the 50 ticks after the first.
            #expect(cluster.terms.values.allSatisfy { $0 == oldTerm }, "seed \(seed) \(shape): \(cluster.terms)")
            cluster.isolate(old)
            let took = try cluster.run(for: 4 * shape.electionTicks * SilenceCluster.unitsPerTick) {
                $0.leader.map { $0 != old } ?? false
            }
            let units = try #require(took, "seed \(seed) \(shape): no new leader")
            #expect(
                units <= replacementBound(silence: silence),
                "seed \(seed) \(shape): a new leader after \(units) units, bound \(replacementBound(silence: silence))")
        }
    }
}

@Test("without a silence the same vanished leader takes an election timeout: the bound above tells them apart")
func withoutTheSilenceTheReplacementTakesAnElectionTimeout() throws {
    for shape in shapes {
        for seed in seeds {
            var (cluster, old) = try SilenceCluster.elected(
                size: shape.size, electionTicks: shape.electionTicks, heartbeatTicks: shape.heartbeatTicks,
                silence: nil, seed: seed)
            cluster.isolate(old)
            let took = try cluster.run(for: 4 * shape.electionTicks * SilenceCluster.unitsPerTick) {
                $0.leader.map { $0 != old } ?? false
            }
            let units = try #require(took, "seed \(seed) \(shape): no new leader")
            #expect(units > replacementBound(silence: silence(shape)), "seed \(seed) \(shape): \(units) units")
        }
    }
}

/// Which followers stop hearing the leader, and how.
private enum Deafness: CaseIterable, CustomStringConvertible {
    /// One follower hears nothing from the leader; the leader still hears it.
    case oneFollowerOneWay
    /// One follower and the leader are cut apart both ways; the follower still reaches the others.
    case oneFollowerBothWays
    /// A minority of followers (two of five, one of three) cut from the leader both ways.
    case minorityBothWays

    var description: String {
        switch self {
        case .oneFollowerOneWay: "one follower deaf to the leader"
        case .oneFollowerBothWays: "one follower cut from the leader"
        case .minorityBothWays: "a minority cut from the leader"
        }
    }
}

@Test(
    "a leader that a majority still hears keeps leading in its term while the others campaign",
    arguments: Deafness.allCases)
private func aLeaderThatAMajorityHearsIsNotDeposed(deafness: Deafness) throws {
    for shape in shapes {
        for seed in seeds {
            var (cluster, leader) = try SilenceCluster.elected(
                size: shape.size, electionTicks: shape.electionTicks, heartbeatTicks: shape.heartbeatTicks,
                silence: silence(shape), seed: seed)
            let term = cluster.nodes[leader]!.term
            let followers = cluster.nodes.keys.sorted().filter { $0 != leader }
            let deaf = Array(
                followers.shuffled(using: &cluster.random).prefix(
                    deafness == .minorityBothWays ? (shape.size - 1) / 2 : 1))
            for follower in deaf {
                cluster.cut.insert([leader, follower])
                if deafness != .oneFollowerOneWay { cluster.cut.insert([follower, leader]) }
            }
            // Five election timeouts at the longest.
            _ = try cluster.run(for: 10 * shape.electionTicks * SilenceCluster.unitsPerTick) { _ in false }
            let context = "seed \(seed) \(shape), \(deafness) (n\(leader) leads, deaf: \(deaf))"
            #expect(cluster.nodes[leader]!.role == .leader, "\(context)")
            #expect(cluster.terms.values.allSatisfy { $0 == term }, "\(context): \(cluster.terms)")
            // Not a vacuous pass: the deaf followers did ask for pre-votes, and were refused.
            #expect(deaf.allSatisfy { cluster.preVotesSent[$0, default: 0] > 0 }, "\(context): \(cluster.preVotesSent)")
        }
    }
}
