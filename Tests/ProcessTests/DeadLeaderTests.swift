// Real node processes: followers see at once that the leader's process died and elect a new leader.
import FlotillaAPI
import FlotillaClient
import Foundation
import Node
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct DeadLeaderTests {
    /// 20 ms ticks × 150: an election timeout of 3 s, randomized up to 6 s. Without noticing the
    /// closed connections, no follower could campaign before 3 s after the leader's last heartbeat.
    /// How fast the fast path elects is a benchmark's question (scripts/bench-kill-loop.sh); here,
    /// that the followers take it: the core's side is in RaftCoreTests' LeaderProcessGoneTests.
    static let electionTicks = 150

    /// The line a node logs when a peer's connection closed and its port refuses: its process died.
    static func processGone(_ node: Int) -> String {
        "peer n\(node) closed its connection and refuses new ones: its process is gone"
    }

    @Test func followersSeeTheLeaderProcessDieAndElectANewLeader() async throws {
        let cluster = try ProcessCluster(size: 3, electionTicks: Self.electionTicks)
        try cluster.startAll()
        let leader = try await cluster.awaitLeader(within: .seconds(30))
        let before = try await cluster.client(leader).status(stale: true)
        // Every follower has answered the leader (so has a connection to it to see close).
        try await cluster.await("both followers caught up with the leader") {
            guard let status = try? await cluster.client(leader).status(stale: true) else { return false }
            return status.members.filter { $0.state == "follower" }.count == 2
        }

        cluster.kill9(leader)
        // The survivors still name the dead leader until they elect another.
        let survivors = (1...3).filter { $0 != leader }
        for node in survivors {
            try await cluster.await("n\(node) sees that n\(leader)'s process is gone") {
                cluster.log(of: node).contains(Self.processGone(leader))
            }
        }
        try await cluster.await("the survivors agree on a new leader", within: .seconds(20)) {
            var named: Set<String?> = []
            for node in survivors { named.insert(try? await cluster.client(node).status(stale: true).leader) }
            guard named.count == 1, let agreed = named.first!, agreed != "n\(leader)" else { return false }
            return true
        }
        let after = try await cluster.client(survivors[0]).status(stale: true)
        #expect(after.term > before.term)
        await cluster.close()
    }

    @Test func killingAFollowerMakesNobodyCampaign() async throws {
        let cluster = try ProcessCluster(size: 3, electionTicks: Self.electionTicks)
        try cluster.startAll()
        let leader = try await cluster.awaitLeader(within: .seconds(30))
        try await cluster.await("both followers caught up with the leader") {
            guard let status = try? await cluster.client(leader).status(stale: true) else { return false }
            return status.members.filter { $0.state == "follower" }.count == 2
        }
        let term = try await cluster.client(leader).status(stale: true).term
        let follower = leader % 3 + 1
        let survivor = 6 - leader - follower

        cluster.kill9(follower)
        // The leader sees the follower's process die (the event that, misread, would start an
        // election; the survivor sees it only if it ever sent the follower a vote). Then a write
        // goes round, applied by the survivor after the death.
        try await cluster.await("n\(leader) sees that n\(follower)'s process is gone") {
            cluster.log(of: leader).contains(Self.processGone(follower))
        }
        try await cluster.client(leader).setSetting("after-the-death", to: "1")
        try await cluster.await("n\(survivor) applies a write made after the death") {
            (try? await cluster.client(survivor).setting("after-the-death", stale: true)) == "1"
        }
        for node in [leader, survivor] {
            let status = try await cluster.client(node).status(stale: true)
            #expect(status.term == term, "n\(node) moved from term \(term) to \(status.term)\n\(cluster.logTails())")
            #expect(status.leader == "n\(leader)", "n\(node) follows \(status.leader ?? "nobody")")
        }
        await cluster.close()
    }
}
