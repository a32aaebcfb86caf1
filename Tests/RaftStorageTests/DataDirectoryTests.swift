// A data directory stays bound to the cluster and node that first used it.
import FlotillaTestKit
import Foundation
import RaftStorage
import Testing

@Test func aDataDirectoryIsCreatedOnceThenRecognised() throws {
    let root = try TemporaryDirectory()
    let path = root.path + "/n1"
    let first = try DataDirectory.open(path, clusterID: "alpha", nodeID: "n1")
    #expect(first.isNew)
    let second = try DataDirectory.open(path, clusterID: "alpha", nodeID: "n1")
    #expect(!second.isNew)
}

@Test(arguments: [("beta", "n1"), ("alpha", "n2")])
func aDataDirectoryOfAnotherClusterOrNodeIsRefused(cluster: String, node: String) throws {
    let root = try TemporaryDirectory()
    _ = try DataDirectory.open(root.path + "/d", clusterID: "alpha", nodeID: "n1")
    let error = #expect(throws: DataDirectoryError.self) {
        try DataDirectory.open(root.path + "/d", clusterID: cluster, nodeID: node)
    }
    #expect(error?.description.contains("belongs to cluster alpha node n1") == true)
}

@Test func aDirectoryWithOtherFilesButNoIdentityIsRefused() throws {
    let root = try TemporaryDirectory()
    try Data("x".utf8).write(to: URL(fileURLWithPath: root.path + "/stray"))
    let error = #expect(throws: DataDirectoryError.self) {
        try DataDirectory.open(root.path, clusterID: "alpha", nodeID: "n1")
    }
    #expect(error?.description.contains("no identity file") == true)
}
