// Real processes: two of three nodes destroyed; the survivor goes on alone with --force-new-cluster and takes a member back.
import FlotillaAPI
import FlotillaClient
import Foundation
import Testing

@Suite(.serialized, .timeLimit(.minutes(3)))
struct ForceNewClusterTests {
    @Test func aSurvivorOfALostQuorumGoesOnAloneAndTakesMembersBack() async throws {
        let cluster = try ProcessCluster(size: 3)
        try cluster.startAll()
        let leader = try await cluster.awaitLeader()
        let survivor = [1, 2, 3].first { $0 != leader }!
        let lost = [1, 2, 3].filter { $0 != survivor }
        try await cluster.await("every node registered") { (try? await cluster.client(leader).nodes())?.count == 3 }
        for number in 1...20 { try await cluster.client(leader).setSetting("dr.k\(number)", to: "v\(number)") }
        // A follower learns a commit index with the next append and keeps it on disk only with a
        // batch that syncs: one more write makes the survivor store a commit covering the twenty.
        try await cluster.await("the survivor applied the twenty writes") {
            (try? await cluster.client(survivor).settings(stale: true))?["dr.k20"] == "v20"
        }
        try await cluster.client(leader).setSetting("dr.barrier", to: "1")
        try await cluster.await("the survivor has the barrier") {
            (try? await cluster.client(survivor).settings(stale: true))?["dr.barrier"] == "1"
        }

        // Two of three destroyed for good: killed, their data gone. The survivor cannot elect anyone.
        for node in lost {
            cluster.kill9(node)
            try FileManager.default.removeItem(atPath: cluster.directory + "/n\(node)")
        }
        await #expect(throws: APIError.self) { try await cluster.client(survivor).setSetting("no.quorum", to: "1") }
        #expect(cluster.terminate(survivor) == 0)

        try cluster.start(survivor, extraArguments: ["--force-new-cluster"])
        #expect(try await cluster.awaitLeader() == survivor)
        let log = cluster.log(of: survivor)
        #expect(log.contains("--force-new-cluster: n\(survivor) is now the only voter"), "\(log)")
        #expect(log.contains("add members back as learners"))
        let api = cluster.client(survivor)
        let settings = try await api.settings()
        for number in 1...20 { #expect(settings["dr.k\(number)"] == "v\(number)") }
        #expect(settings["no.quorum"] == nil)
        let status = try await api.status()
        #expect(status.members.map(\.id) == ["n\(survivor)"])
        // The lost nodes keep their records (their VMs fail over) but are no Raft members any more.
        let roles = Dictionary(uniqueKeysWithValues: try await api.nodes().map { ($0.id, $0.role) })
        #expect(roles == ["n\(survivor)": "voter", "n\(lost[0])": "none", "n\(lost[1])": "none"])
        try await api.setSetting("dr.alone", to: "yes")

        // A destroyed member comes back empty: as a learner first, then a voter.
        let returning = lost[0]
        try cluster.start(returning, extraArguments: ["--join", "true"])
        let added = try await api.addMember(
            "n\(returning)", peer: "127.0.0.1:\(cluster.peerPorts[returning - 1])",
            client: "127.0.0.1:\(cluster.clientPorts[returning - 1])")
        #expect(added.members.first { $0.id == "n\(returning)" }?.role == "learner")
        try await cluster.await("n\(returning) catches up") {
            (try? await cluster.client(returning).settings(stale: true))?["dr.alone"] == "yes"
        }
        try await cluster.await("n\(returning) is promoted") {
            (try? await api.promoteMember("n\(returning)")) != nil
        }
        let voters = try await api.status().members.filter { $0.role == "voter" }.map(\.id)
        #expect(Set(voters) == ["n\(survivor)", "n\(returning)"])
        #expect(try await api.nodes().first { $0.id == "n\(returning)" }?.role == "voter")
        // Writes now need both voters, and reach the returned member.
        try await api.setSetting("dr.together", to: "yes")
        try await cluster.await("n\(returning) has the write made with it") {
            (try? await cluster.client(returning).settings(stale: true))?["dr.together"] == "yes"
        }
        await cluster.close()
    }
}
