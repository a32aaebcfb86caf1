// Real processes: a fifth node joins as a learner, is promoted, and a founding member is drained and removed.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import Node
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct MembershipTests {
    @Test func aJoiningNodeBecomesAVoterAndAFounderLeaves() async throws {
        let cluster = try ProcessCluster(size: 5, founders: 4, snapshotEntries: 20)
        for node in 1...4 { try cluster.start(node) }
        let leader = try await cluster.awaitLeader(excluding: [5])
        for number in 1...50 { try await cluster.client(leader).setSetting("k\(number % 10)", to: "v\(number)") }

        // Promoting a node that is not a learner is refused with a reason.
        let early = await #expect(throws: APIError.self) { try await cluster.client(leader).promoteMember("n5") }
        #expect(early?.message.contains("not a learner") == true)

        try cluster.start(5)
        let added = try await cluster.client(leader).addMember(
            "n5", peer: "\(cluster.addresses[4]):\(cluster.peerPorts[4])",
            client: "\(cluster.addresses[4]):\(cluster.clientPorts[4])")
        #expect(added.members.first { $0.id == "n5" }?.role == "learner")
        // The learner catches up (through a snapshot: the log was compacted every 20 entries).
        try await cluster.await("n5 catches up") {
            (try? await cluster.client(5).settings(stale: true))?["k0"] == "v50"
        }
        try await cluster.await("n5 is promoted") { (try? await cluster.client(leader).promoteMember("n5")) != nil }

        // Remove a founder that is not the leader, drained first; the cluster goes on without it.
        let leaving = [1, 2, 3, 4].first { $0 != leader }!
        try await cluster.client(leader).changeNode("n\(leaving)", "drain")
        try await cluster.await("n\(leaving) drained and paused") {
            (try? await cluster.client(leader).nodes())?.first { $0.id == "n\(leaving)" }?.state == "paused"
        }
        let after = try await cluster.client(leader).removeMember("n\(leaving)")
        #expect(Set(after.members.map(\.id)) == Set(["n1", "n2", "n3", "n4", "n5"]).subtracting(["n\(leaving)"]))
        #expect(after.members.allSatisfy { $0.role == "voter" })
        cluster.kill9(leaving)
        try await cluster.client(5).setSetting("after-removal", to: "yes")
        #expect(try await cluster.client(5).setting("after-removal") == "yes")
        await cluster.close()
    }
}
