// Real processes: a snapshot saved from one cluster seeds a new cluster that has everything as it was.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import Testing

/// What must come back from a snapshot: the replicated parts of the views (not the live ones,
/// such as memory a node measures, or addresses, which the new cluster's config sets).
private struct Replicated: Equatable, CustomStringConvertible {
    var settings: [String: String]
    var nodes: [String]
    var volumes: [String]
    var vms: [String]

    init(_ api: APIClient) async throws {
        settings = try await api.settings()
        nodes = try await api.nodes().map { "\($0.id) \($0.role) usable=\($0.usableMemory)" }
        volumes = try await api.volumes().map { "\($0.id) \($0.path) coordinator=\($0.coordinator) vms=\($0.vms)" }
        vms = try await api.vms().map {
            "\($0.id) \($0.name) owner=\($0.owner ?? "-") epoch=\($0.epoch) desired=\($0.desiredState) "
                + "startup=\($0.memory.startup) priority=\($0.restartPriority) disk=\($0.volume)/\($0.diskFile)"
        }
    }

    var description: String { "settings \(settings)\nnodes \(nodes)\nvolumes \(volumes)\nvms \(vms)" }
}

@Suite(.serialized, .timeLimit(.minutes(3)))
struct SnapshotRestoreTests {
    @Test func aSnapshotRestoredIntoANewClusterHasEverythingAsItWas() async throws {
        let old = try ProcessCluster(size: 3)
        try old.startAll()
        let leader = try await old.awaitLeader()
        let api = old.client(leader)
        try await old.await("all three nodes registered") {
            (try? await api.nodes())?.map(\.id) == ["n1", "n2", "n3"]
        }
        for number in 1...12 { try await api.setSetting("backup.k\(number)", to: "v\(number)") }
        try await api.setSetting("failover.max-per-hour", to: "7")
        _ = try await api.createVolume("csv1", coordinator: "n1")
        _ = try await api.createVM(VMCreation(name: "Finance", startup: 256 << 20, volume: "csv1"))
        _ = try await api.createVM(
            VMCreation(name: "Sales", startup: 128 << 20, restartPriority: "high", volume: "csv1"))
        _ = try await api.startVM("Finance", on: "n2")
        try await old.await("Finance runs on n2") { (try? await api.vm("Finance"))?.state == "running" }
        let before = try await Replicated(api)

        // Saved through a follower: it forwards to the leader, which takes the snapshot.
        let follower = [1, 2, 3].first { $0 != leader }!
        let file = old.directory + "/backup.snap"
        let saved = try flotilla(
            ["snapshot", "save", file, "--api", "127.0.0.1:\(old.clientPorts[follower - 1])"], in: old.directory)
        #expect(saved.status == 0, "\(saved.err)")
        #expect(saved.out.contains("saved the state of cluster test at index"), "\(saved.out)")
        let status = try flotilla(["snapshot", "status", file, "--json"], in: old.directory)
        #expect(status.status == 0, "\(status.err)")
        let summary = try JSONSerialization.jsonObject(with: Data(status.out.utf8)) as? [String: Any]
        #expect(summary?["checksum-ok"] as? Bool == true)
        #expect(summary?["nodes"] as? Int == 3 && summary?["volumes"] as? Int == 1 && summary?["vms"] as? Int == 2)
        #expect(summary?["voters"] as? [String] == ["n1", "n2", "n3"])

        // The old cluster is gone; its volumes' files are on the shared storage, which survives.
        await old.close()
        let new = try ProcessCluster(size: 3)
        try FileManager.default.removeItem(atPath: new.sharedRoot)
        try FileManager.default.copyItem(atPath: old.sharedRoot, toPath: new.sharedRoot)

        // A damaged copy is refused, and so is a directory that already holds a node's data.
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
        bytes[bytes.count - 30] ^= 0x40
        let damagedFile = new.directory + "/damaged.snap"
        try Data(bytes).write(to: URL(fileURLWithPath: damagedFile))
        let damaged = try flotilla(
            [
                "snapshot", "restore", damagedFile, "--dir", new.directory, "--cluster-config",
                new.directory + "/cluster.json",
            ],
            in: new.directory)
        #expect(damaged.status != 0)
        #expect(damaged.err.contains("is damaged: its snapshot fails its checksum"), "\(damaged.err)")
        #expect(!FileManager.default.fileExists(atPath: new.directory + "/n1"))

        let restore = [
            "snapshot", "restore", file, "--dir", new.directory, "--cluster-config", new.directory + "/cluster.json",
        ]
        let restored = try flotilla(restore, in: new.directory)
        #expect(restored.status == 0, "\(restored.err)")
        #expect(restored.out.contains("n3  \(new.directory)/n3"), "\(restored.out)")
        let again = try flotilla(restore, in: new.directory)
        #expect(again.status != 0)
        #expect(again.err.contains("\(new.directory)/n1 is not empty"), "\(again.err)")

        try new.startAll()
        let newLeader = try await new.awaitLeader()
        let newAPI = new.client(newLeader)
        try await new.await("the restored cluster shows what the old one had") {
            (try? await Replicated(newAPI)) == before
        }
        let after = try await Replicated(newAPI)
        #expect(after == before)
        // Its members are the new cluster's, at the new addresses, and it takes writes.
        let members = try await newAPI.status().members
        #expect(members.map(\.clientAddress) == new.clientPorts.map { "127.0.0.1:\($0)" })
        try await newAPI.setSetting("restored", to: "yes")
        #expect(try await new.client(1).setting("restored") == "yes")
        try await new.await("Finance runs again on n2") { (try? await newAPI.vm("Finance"))?.state == "running" }
        await new.close()
    }
}
