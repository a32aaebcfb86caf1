// `flotilla local up|down` trust a recorded pid only while it is a node of that directory.
import FlotillaCLI
import Testing

@Suite struct LocalClusterPidTests {
    let config = "/home/op/.flotilla/cluster.json"

    @Test func aNodeOfThisDirectoryIsTrusted() {
        #expect(LocalCluster.isNode(["flotilla", "node", "--config", config, "--node-id", "n1"], of: config))
        #expect(
            LocalCluster.isNode(
                ["/usr/local/bin/flotilla", "node", "--config", config, "--node-id", "n2", "--memory", "1"], of: config)
        )
    }

    @Test func anyOtherProcessIsNot() {
        // Another program, another command, another cluster's node, or a path that is only similar.
        #expect(!LocalCluster.isNode(["sleep", "120"], of: config))
        #expect(!LocalCluster.isNode(["bash", "-c", "flotilla node --config \(config)"], of: config))
        #expect(!LocalCluster.isNode(["flotilla", "local", "up", "--config", config], of: config))
        #expect(!LocalCluster.isNode(["flotilla", "node", "--config", "/srv/other/cluster.json"], of: config))
        #expect(!LocalCluster.isNode(["flotilla", "node", "--node-id", config], of: config))
        #expect(!LocalCluster.isNode(["notflotilla", "node", "--config", config], of: config))
        #expect(!LocalCluster.isNode(["flotilla", "node", "--config"], of: config))
        #expect(!LocalCluster.isNode([], of: config))
    }
}

@Suite struct LocalClusterRestartTests {
    @Test func aRestartedNodeTakesItsOwnLineOfThePidsFile() {
        #expect(LocalCluster.recording(pid: 42, ofNode: 2, in: "100\n200\n300\n") == "100\n42\n300\n")
        #expect(LocalCluster.recording(pid: 42, ofNode: 1, in: "100\n200\n300") == "42\n200\n300\n")
        // No pids file (`local down` removed it) or a shorter one: the lines before stay empty.
        #expect(LocalCluster.recording(pid: 42, ofNode: 3, in: "") == "\n\n42\n")
        #expect(LocalCluster.recording(pid: 42, ofNode: 2, in: "100\n") == "100\n42\n")
    }
}
