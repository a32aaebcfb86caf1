// Decommissioning on real processes: a fourth node is refused removal while it holds anything, then leaves for good; volumes are deleted only when empty.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import HTTP2
import Testing

@Suite(.serialized, .timeLimit(.minutes(3)))
struct DecommissionProcessTests {
    static let mib: UInt64 = 1 << 20

    /// n4 joins, runs Finance and coordinates csv1. Its removal is refused while it is up, runs a VM,
    /// coordinates a volume and leads; once its volume moved and it was drained, it leaves the Raft
    /// membership and the cluster state, knows it is out, and the three others go on serving writes.
    @Test func aNodeLeavesOnlyOnceItHoldsNothingAndAVolumeOnlyOnceNoVMUsesIt() async throws {
        let cluster = try ProcessCluster(size: 4, founders: 3)
        for node in 1...3 { try cluster.start(node) }
        let leader = try await cluster.awaitLeader(excluding: [4])
        let api = cluster.client(leader)
        try cluster.start(4)
        _ = try await api.addMember(
            "n4", peer: "\(cluster.addresses[3]):\(cluster.peerPorts[3])",
            client: "\(cluster.addresses[3]):\(cluster.clientPorts[3])")
        try await cluster.await("n4 is promoted") { (try? await api.promoteMember("n4")) != nil }
        try await cluster.await("n4 registered as a voter") {
            (try? await api.nodes())?.first { $0.id == "n4" }?.role == "voter"
        }

        try await api.createVolume("csv1", coordinator: "n4")
        try await api.createVolume("csv2", coordinator: "n1")
        _ = try await api.createVM(
            VMCreation(
                name: "Finance", startup: 64 * Self.mib, minimum: 32 * Self.mib, maximum: 128 * Self.mib,
                volume: "csv1", workload: WorkloadView(demand: 16 * Self.mib, dirtyPagesPerSecond: 100)))
        _ = try await api.startVM("Finance", on: "n4")
        try await cluster.await("Finance writing on n4") {
            (try? await cluster.client(4).agent())?.vms.contains { $0.running && $0.recordsWritten >= 1 } == true
        }

        // Up, running Finance, coordinating csv1: every reason at once, each with what to do.
        let busy = await #expect(throws: APIError.self) { try await api.removeMember("n4") }
        #expect(busy?.status == 409)
        let reasons = busy?.message ?? ""
        #expect(reasons.hasPrefix("removal_refused: n4 cannot be removed now"), "\(reasons)")
        #expect(reasons.contains("drain it first: flotilla node drain n4"), "\(reasons)")
        #expect(reasons.contains("n4 runs Finance"), "\(reasons)")
        #expect(reasons.contains("n4 coordinates csv1 (move it: flotilla volume move csv1 --to n1)"), "\(reasons)")

        // While it leads, the refusal says to hand leadership over first (asked of a follower, which forwards).
        try await api.transferLeadership(to: "n4")
        try await cluster.await("n4 leads") { (try? await cluster.client(1).status(stale: true))?.leader == "n4" }
        let leading = await #expect(throws: APIError.self) { try await cluster.client(leader).removeMember("n4") }
        #expect(
            leading?.message.contains("n4 is the Raft leader; transfer leadership first: flotilla leader transfer n")
                == true, "\(leading?.message ?? "")")
        try await cluster.await("n\(leader) leads again") {
            _ = try? await cluster.client(4).transferLeadership(to: "n\(leader)")
            return (try? await cluster.client(4).status(stale: true))?.leader == "n\(leader)"
        }

        // What the refusals said: move the volume, drain the node.
        #expect(try await api.moveVolume("csv1", to: "n1").coordinator == "n1")
        _ = try await api.changeNode("n4", "drain")
        try await cluster.await("n4 drained and paused", within: .seconds(60)) {
            (try? await api.nodes())?.first { $0.id == "n4" }?.state == "paused"
        }
        #expect(try await api.vm("Finance").owner != "n4")

        let follower = [1, 2, 3].first { $0 != leader }!
        let after = try await cluster.client(follower).removeMember("n4")
        #expect(Set(after.members.map(\.id)) == ["n1", "n2", "n3"])
        #expect(try await api.status().members.map(\.id) == ["n1", "n2", "n3"])
        #expect(try await api.nodes().map(\.id) == ["n1", "n2", "n3"])
        #expect(try await api.events().contains { $0.kind == "node.removed" && $0.node == "n4" })
        // n4 learns it is out from the leader's answer to its heartbeat, and stops by itself (exit 0).
        try await cluster.await("n4 stops by itself", within: .seconds(30)) { cluster.hasExited(4) }
        #expect(cluster.waitForExit(4) == 0, "\(cluster.log(of: 4))")
        let removedLog = cluster.log(of: 4)
        #expect(removedLog.contains("n4 was removed from the cluster: n4 is not a member"), "\(removedLog)")
        #expect(removedLog.contains("node n4 stopped"))
        // A registration in its name is refused, so a removed node cannot bring its record back.
        let registration = NodeRegistrationRequest(
            id: "n4", peer: "\(cluster.addresses[3]):\(cluster.peerPorts[3])",
            client: "\(cluster.addresses[3]):\(cluster.clientPorts[3])", role: "voter", usableMemory: 1 << 30)
        let reregistered = await #expect(throws: APIError.self) {
            _ = try await api.call(.post, "/v1/nodes", body: try JSONEncoder().encode(registration))
        }
        #expect(reregistered?.message.contains("n4 is not a member of the cluster") == true)

        // The three go on serving writes.
        try await cluster.client(follower).setSetting("after-removal", to: "yes")
        #expect(try await api.setting("after-removal") == "yes")
        #expect(try await api.nodes().map(\.id) == ["n1", "n2", "n3"])

        // A volume a VM uses is not deleted; an empty one is, and its directory stays.
        let used = await #expect(throws: APIError.self) { try await api.deleteVolume("csv1") }
        #expect(used?.status == 409)
        #expect(used?.message.contains("(Finance) use csv1") == true, "\(used?.message ?? "")")
        let directory = cluster.sharedRoot + "/volumes/csv2"
        try await cluster.await("csv2's directory made by its coordinator") {
            FileManager.default.fileExists(atPath: directory)
        }
        let deleted = try await cluster.client(follower).deleteVolume("csv2")
        #expect(deleted.deleted == "csv2" && deleted.path == "volumes/csv2")
        #expect(try await api.volumes().map(\.id) == ["csv1"])
        #expect(FileManager.default.fileExists(atPath: directory), "the data stays on the shared root")
        let gone = await #expect(throws: APIError.self) { try await api.deleteVolume("csv2") }
        #expect(gone?.status == 404)
        await cluster.close()
    }
}
