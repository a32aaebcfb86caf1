// Real processes: a new node joins as a learner, is promoted, and a founding member is removed.
import ClusterModel
import Foundation
import Node
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct MembershipTests {
    @Test func aJoiningNodeBecomesAVoterAndAFounderLeaves() async throws {
        let cluster = try ProcessCluster(size: 4, founders: 3, snapshotEntries: 20)
        for node in 1...3 { try cluster.start(node) }
        let leader = try await cluster.awaitLeader(excluding: [4])
        for number in 1...50 { try await cluster.client(leader).setSetting("k\(number % 10)", to: "v\(number)") }

        // Promoting a node that is not a learner is refused with a reason.
        let early = await #expect(throws: APIError.self) { try await cluster.client(leader).promoteMember("n4") }
        #expect(early?.message.contains("not a learner") == true)

        try cluster.start(4)
        let added = try await cluster.client(leader).addMember(
            "n4", peer: "\(cluster.addresses[3]):\(cluster.peerPorts[3])",
            client: "\(cluster.addresses[3]):\(cluster.clientPorts[3])")
        #expect(added.members.first { $0.id == "n4" }?.role == "learner")
        // The learner catches up (through a snapshot: the log was compacted every 20 entries).
        try await cluster.await("n4 catches up") {
            (try? await cluster.client(4).settings(stale: true))?["k0"] == "v50"
        }
        try await cluster.await("n4 is promoted") { (try? await cluster.client(leader).promoteMember("n4")) != nil }

        // Remove a founder that is not the leader; the four-node cluster goes on without it.
        let leaving = [1, 2, 3].first { $0 != leader }!
        let after = try await cluster.client(leader).removeMember("n\(leaving)")
        #expect(Set(after.members.map(\.id)) == Set(["n1", "n2", "n3", "n4"]).subtracting(["n\(leaving)"]))
        #expect(after.members.allSatisfy { $0.role == "voter" })
        cluster.kill9(leaving)
        try await cluster.client(4).setSetting("after-removal", to: "yes")
        #expect(try await cluster.client(4).setting("after-removal") == "yes")
        await cluster.close()
    }
}
