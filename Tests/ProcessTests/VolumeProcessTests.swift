// Real node processes: disk files made by the coordinator, I/O redirected through it, and a
// coordinator that moves validates the volume's metadata before it serves.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import Guests
import HTTP2
import NIOCore
import Node
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct VolumeProcessTests {
    /// A node's own volume facts, from its peer port.
    private func access(_ cluster: ProcessCluster, _ node: Int) async throws -> VolumeAccessView {
        let client = HTTP2Client(configuration: .init(host: "127.0.0.1", port: cluster.peerPorts[node - 1]))
        defer { Task { await client.close() } }
        let response = try await client.send(
            HTTPRequest(method: .get, path: "/v1/internal/volumes/access"), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 20)
        return try JSONDecoder().decode(VolumeAccessView.self, from: Data(body.readableBytesView))
    }

    @Test func disksGoThroughTheCoordinatorWhichValidatesItsMetadataWhenItMoves() async throws {
        let cluster = try ProcessCluster(size: 3, electionTicks: 50)
        try cluster.startAll()
        _ = try await cluster.awaitLeader()
        let api = cluster.client(1)
        try await cluster.await("all three nodes registered") {
            (try? await api.nodes())?.map(\.id) == ["n1", "n2", "n3"]
        }
        let volumeDirectory = cluster.directory + "/shared/volumes/csv1"
        let disk = volumeDirectory + "/finance.vhdx"

        // n2 runs Finance; n1 coordinates csv1, so n1 creates the disk file and lists it.
        _ = try await api.createVolume("csv1", coordinator: "n1")
        _ = try await api.createVM(VMCreation(name: "Finance", startup: 256 << 20, volume: "csv1"))
        _ = try await api.startVM("Finance", on: "n2")
        try await cluster.await("Finance writes its journal on n2") {
            ((try? await cluster.client(2).agent())?.vms.first?.journalSequence ?? 0) >= 3
        }
        let metadata = try String(contentsOfFile: volumeDirectory + "/.flotilla-volume.json", encoding: .utf8)
        #expect(metadata.contains("\"finance.vhdx\"") && metadata.contains("\"vm\" : 1"), "\(metadata)")
        #expect(try await access(cluster, 1).coordinating == ["csv1"])

        // n2's direct path breaks: its appends go through n1, and the volume says so.
        let recordsBefore = try DiskJournal.read(path: disk).records.count
        try await cluster.client(2).setDirectIO("csv1", broken: true)
        try await cluster.await("n2's records go through n1") {
            ((try? await access(cluster, 1))?.redirectedAppends["csv1"] ?? 0) >= 5
        }
        let volume = try await api.volumes().first { $0.id == "csv1" }
        #expect(volume?.redirected == ["n2"])
        #expect(try DiskJournal.read(path: disk).records.count > recordsBefore)

        // The coordinator moves: n3 validates the metadata and serves; n2's I/O follows it.
        _ = try await api.moveVolume("csv1", to: "n3")
        try await cluster.await("n3 carries n2's redirected records") {
            ((try? await access(cluster, 3))?.redirectedAppends["csv1"] ?? 0) >= 5
        }
        #expect(try await access(cluster, 3).coordinating == ["csv1"])
        let moved = try await api.events().last { $0.kind == "volume.moved" }
        #expect(moved?.detail == "csv1 coordinator n1 → n3 (by operator)")

        // Damaged metadata: the next coordinator refuses to serve, and says why.
        try Data("{\"format\": 1, \"volu".utf8).write(
            to: URL(fileURLWithPath: volumeDirectory + "/.flotilla-volume.json"))
        _ = try await api.moveVolume("csv1", to: "n1")
        try await cluster.await("n1 refuses csv1") {
            (try? await api.volumes())?.first { $0.id == "csv1" }?.coordinatorProblem != nil
        }
        let refused = try await api.volumes().first { $0.id == "csv1" }
        #expect(
            refused?.coordinatorProblem?.contains("does not parse as volume metadata") == true,
            "\(String(describing: refused))")
        #expect(try await access(cluster, 1).coordinating.isEmpty)
        try await cluster.await("n2 reports that Finance cannot run through a coordinator that refuses") {
            (try? await cluster.client(2).agent())?.problems.first?.error.contains("cannot be trusted") == true
        }

        // Whatever happened, the journal holds one owner at a time and no gaps.
        #expect(JournalChecker.check(try DiskJournal.read(path: disk)).isEmpty)
        await cluster.close()
    }
}
