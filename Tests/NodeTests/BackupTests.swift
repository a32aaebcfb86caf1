// Restoring a snapshot file seeds data directories a node starts from; damaged files and used directories are refused.
import ClusterModel
import ClusterState
import FlotillaTestKit
import Foundation
import RaftCore
import RaftStorage
import Testing

@testable import Node

private func member(_ node: UInt64, port: Int) -> MemberAddresses {
    MemberAddresses(
        peer: Endpoint(host: "10.1.0.\(node)", port: port + 100), client: Endpoint(host: "10.1.0.\(node)", port: port))
}

/// The old cluster's state: members n1–n3 at their old addresses, a setting, the nodes and a volume.
private func oldState() -> ClusterState {
    var state = ClusterState()
    for node: UInt64 in 1...3 {
        _ = state.apply(.registerMember(id: NodeID(node), addresses: member(node, port: 7101)), proposedAt: 1)
        _ = state.apply(
            .registerNode(
                NodeRegistration(
                    id: NodeID(node), addresses: member(node, port: 7101), role: .voter, usableMemory: 8 << 30)),
            proposedAt: 2)
    }
    _ = state.apply(.setSetting(key: "failover.max-per-hour", value: "4"), proposedAt: 3)
    _ = state.apply(.createVolume("csv1", path: "volumes/csv1", coordinator: 2), proposedAt: 4)
    return state
}

private func oldFile(_ state: ClusterState) -> SnapshotFile {
    let metadata = SnapshotMetadata(
        index: 120, term: 4, membership: Membership(voters: [1, 2, 3]), appliedRequests: [77: 12])
    return ClusterBackup.file(
        of: Snapshot(metadata: metadata, data: state.snapshot), clusterID: "old", takenAtMilliseconds: 1_700_000_000_000
    )
}

/// A cluster config for three members on new addresses (port 8101…).
private func writeConfig(in directory: String) throws -> String {
    let members = (1...3).map {
        "{\"id\": \"n\($0)\", \"peer\": \"10.9.0.\($0):8201\", \"client\": \"10.9.0.\($0):8101\"}"
    }
    let path = directory + "/new-cluster.json"
    try "{\"cluster-id\": \"restored\", \"members\": [\(members.joined(separator: ", "))]}"
        .write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Test func aRestoredDirectoryStartsFromTheSnapshotWithTheNewMembers() throws {
    let work = try TemporaryDirectory()
    let state = oldState()
    let snapshotPath = work.path + "/backup.snap"
    try oldFile(state).write(to: snapshotPath)
    let config = try writeConfig(in: work.path)

    let restored = try ClusterBackup.restore(
        snapshotPath: snapshotPath, into: work.path + "/data", clusterConfigPath: config)
    #expect(restored.clusterID == "restored")
    #expect(restored.directories.map(\.node) == ["n1", "n2", "n3"])
    #expect(restored.summary.nodes == 3 && restored.summary.volumes == 1 && restored.summary.settings == 1)

    let newAddresses = Dictionary(
        uniqueKeysWithValues: (1...3).map { node in
            (
                NodeID(UInt64(node)),
                MemberAddresses(
                    peer: Endpoint(host: "10.9.0.\(node)", port: 8201),
                    client: Endpoint(host: "10.9.0.\(node)", port: 8101))
            )
        })
    for node in 1...3 {
        let path = work.path + "/data/n\(node)"
        // The directory belongs to the new cluster and this node; a node of another cluster is refused.
        #expect(try DataDirectory.open(path, clusterID: "restored", nodeID: "n\(node)").isNew == false)
        #expect(throws: DataDirectoryError.self) { try DataDirectory.open(path, clusterID: "old", nodeID: "n\(node)") }
        let (_, recovered) = try RaftDiskStorage.open(directory: path + "/raft")
        let snapshot = try #require(recovered.snapshot)
        #expect(snapshot.metadata.index == 120 && snapshot.metadata.term == 4)
        #expect(snapshot.metadata.membership == Membership(voters: [1, 2, 3]))
        #expect(snapshot.metadata.appliedRequests == [77: 12])
        #expect(try ClusterState(snapshot: snapshot.data) == state.movedTo(memberAddresses: newAddresses))
        // The node's restart path takes it: committed up to the snapshot, a follower of term 4.
        let raft = try RaftNode(
            configuration: RaftConfiguration(id: NodeID(UInt64(node))), hardState: recovered.hardState,
            snapshot: snapshot, entries: recovered.entries, bootstrapMembership: Membership(),
            random: SeededGenerator(seed: 1))
        #expect(raft.status.commit == 120 && raft.term == 4)
    }
}

@Test func aRestoreIntoANonEmptyDirectoryWritesNothing() throws {
    let work = try TemporaryDirectory()
    let snapshotPath = work.path + "/backup.snap"
    try oldFile(oldState()).write(to: snapshotPath)
    let config = try writeConfig(in: work.path)
    try FileManager.default.createDirectory(atPath: work.path + "/data/n2", withIntermediateDirectories: true)
    try "old".write(toFile: work.path + "/data/n2/identity", atomically: true, encoding: .utf8)

    let error = #expect(throws: BackupError.self) {
        try ClusterBackup.restore(snapshotPath: snapshotPath, into: work.path + "/data", clusterConfigPath: config)
    }
    #expect(error?.description.contains("data/n2 is not empty (it holds identity)") == true)
    #expect(error?.description.contains("remove or move it aside") == true)
    #expect(try FileManager.default.contentsOfDirectory(atPath: work.path + "/data") == ["n2"])

    // An empty directory is fine: a restore may seed directories made for it.
    try FileManager.default.removeItem(atPath: work.path + "/data/n2/identity")
    _ = try ClusterBackup.restore(snapshotPath: snapshotPath, into: work.path + "/data", clusterConfigPath: config)
}

@Test func aDamagedOrTruncatedFileIsRefusedBeforeAnythingIsWritten() throws {
    let work = try TemporaryDirectory()
    let config = try writeConfig(in: work.path)
    let bytes = oldFile(oldState()).encoded
    var damaged = bytes
    damaged[bytes.count / 2] ^= 1
    let cases: [(name: String, bytes: [UInt8], says: String)] = [
        ("damaged", damaged, "is damaged: its snapshot fails its checksum"),
        ("truncated", Array(bytes.prefix(bytes.count - 10)), "is truncated"),
    ]
    for (name, contents, says) in cases {
        let path = work.path + "/\(name).snap"
        try Data(contents).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: BackupError.self, "\(name)") {
            try ClusterBackup.restore(snapshotPath: path, into: work.path + "/data", clusterConfigPath: config)
        }
        #expect(error?.description.contains(path + " " + says) == true, "\(error.map(\.description) ?? "")")
        #expect(!FileManager.default.fileExists(atPath: work.path + "/data"))
    }
}

@Test func aStateOfAnUnknownFormatIsRefusedNamingTheVersions() throws {
    var file = oldFile(oldState())
    file.data[0] = ClusterState.snapshotVersion + 1
    let error = #expect(throws: BackupError.self) { try ClusterBackup.summary(of: file) }
    #expect(
        error?.description.contains(
            "is state snapshot format \(ClusterState.snapshotVersion + 1); this build reads up to "
                + "\(ClusterState.snapshotVersion)") == true)
    #expect(error?.description.contains("release that saved it") == true)
}

@Test func theSummaryCountsWhatTheSnapshotHolds() throws {
    let summary = try ClusterBackup.summary(of: oldFile(oldState()))
    #expect(summary.index == 120 && summary.term == 4 && summary.clusterID == "old")
    #expect(summary.voters == ["n1", "n2", "n3"] && summary.learners.isEmpty)
    #expect(summary.nodes == 3 && summary.volumes == 1 && summary.vms == 0 && summary.settings == 1)
    #expect(summary.stateFormat == ClusterState.snapshotVersion && summary.checksumOK)
    #expect(summary.text.contains("snapshot of cluster old at index 120, term 4"))
    #expect(summary.text.contains("3 nodes, 1 volumes, 0 VMs"))
}
