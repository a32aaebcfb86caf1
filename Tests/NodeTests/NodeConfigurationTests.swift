// How a node's settings are merged from file, environment and flags, and what bad input says.
import ClusterModel
import Foundation
import Node
import Testing

private let threeNodes = Data(
    """
    {
      "cluster-id": "local",
      "tick-ms": 50,
      "election-ticks": 10,
      "data-dir": ".flotilla/{node}",
      "members": [
        {"id": "n1", "peer": "127.0.0.1:7201", "client": "127.0.0.1:7101"},
        {"id": "n2", "peer": "127.0.0.1:7202", "client": "127.0.0.1:7102"},
        {"id": "n3", "peer": "[::1]:7203", "client": "127.0.0.1:7103"}
      ]
    }
    """.utf8)

@Test func aMemberTakesItsAddressesFromTheSharedFile() throws {
    let configuration = try NodeConfiguration.resolve(
        file: ("local-3.json", threeNodes), environment: [:], flags: ["node-id": "n3"])
    #expect(configuration.clusterID == "local")
    #expect(configuration.nodeID == 3)
    #expect(configuration.members.map(\.id) == [1, 2, 3])
    #expect(configuration.peerListen == Endpoint(host: "::1", port: 7203))
    #expect(configuration.peerListen.description == "[::1]:7203")
    #expect(configuration.clientListen.description == "127.0.0.1:7103")
    #expect(configuration.dataDirectory == ".flotilla/n3")
    #expect(
        configuration.tickMilliseconds == 50 && configuration.electionTicks == 10 && configuration.heartbeatTicks == 1)
}

@Test func flagsOverrideEnvironmentWhichOverridesTheFile() throws {
    let environment = [
        "FLOTILLA_NODE_ID": "n2", "FLOTILLA_TICK_MS": "20", "FLOTILLA_DATA_DIR": "/env", "HOME": "/root",
    ]
    let fromEnvironment = try NodeConfiguration.resolve(file: ("f", threeNodes), environment: environment, flags: [:])
    #expect(
        fromEnvironment.nodeID == 2 && fromEnvironment.tickMilliseconds == 20 && fromEnvironment.dataDirectory == "/env"
    )

    let fromFlags = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: environment, flags: ["tick-ms": "5", "client-address": "0.0.0.0:9000"])
    #expect(fromFlags.nodeID == 2 && fromFlags.tickMilliseconds == 5 && fromFlags.dataDirectory == "/env")
    #expect(fromFlags.clientListen == Endpoint(host: "0.0.0.0", port: 9000))
    #expect(fromFlags.peerListen == Endpoint(host: "127.0.0.1", port: 7202))
}

@Test func withoutAFileANodeIsAClusterOfOne() throws {
    let configuration = try NodeConfiguration.resolve(
        file: nil, environment: [:],
        flags: ["node-id": "n1", "peer-address": "127.0.0.1:7201", "client-address": "127.0.0.1:7101"])
    #expect(configuration.members.map(\.id) == [1])
    #expect(configuration.clusterID == "flotilla")
}

@Test func aSilentLeaderIsNoticedAfterThreeTicksOr150MillisecondsByDefaultAndZeroWaitsForTheElectionTimeout() throws {
    let defaults = try NodeConfiguration.resolve(file: ("f", threeNodes), environment: [:], flags: ["node-id": "n1"])
    #expect(defaults.leaderSilenceTicks == 3)
    let slow = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: [:], flags: ["node-id": "n1", "election-ticks": "30"])
    #expect(slow.leaderSilenceTicks == 10)
    // Never under 150 ms: 8 ticks of 20 ms.
    let fastTicks = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: [:], flags: ["node-id": "n1", "tick-ms": "20"])
    #expect(fastTicks.leaderSilenceTicks == 8)
    let off = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: ["FLOTILLA_LEADER_SILENCE_TICKS": "0"], flags: ["node-id": "n1"])
    #expect(off.leaderSilenceTicks == nil)
    let tooShortForADefault = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: [:],
        flags: ["node-id": "n1", "election-ticks": "3", "heartbeat-ticks": "1"])
    #expect(tooShortForADefault.leaderSilenceTicks == nil)
}

@Test func readLeasesAreOnByDefaultAndTurnOffWithFalseFromTheFileOrAFlag() throws {
    let defaults = try NodeConfiguration.resolve(file: ("f", threeNodes), environment: [:], flags: ["node-id": "n1"])
    #expect(defaults.readLease)
    let file = Data(#"{"node-id": "n1", "read-lease": false}"#.utf8)
    let fromFile = try NodeConfiguration.resolve(
        file: ("f", file), environment: [:],
        flags: ["peer-address": "127.0.0.1:7201", "client-address": "127.0.0.1:7101"])
    #expect(!fromFile.readLease)
    let fromFlag = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: [:], flags: ["node-id": "n1", "read-lease": "false"])
    #expect(!fromFlag.readLease)
    // Beyond ticks of 250 ms voters would refuse the lease: off by default, an error when asked for.
    let slowTicks = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: [:], flags: ["node-id": "n1", "tick-ms": "251"])
    #expect(!slowTicks.readLease)
    let edge = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: [:], flags: ["node-id": "n1", "tick-ms": "250"])
    #expect(edge.readLease)
}

@Test func heartbeatsAndLeasesDefaultTo200And2000MillisecondsAndComeFromEveryPlace() throws {
    let defaults = try NodeConfiguration.resolve(file: ("f", threeNodes), environment: [:], flags: ["node-id": "n1"])
    #expect(defaults.heartbeatMilliseconds == 200 && defaults.leaseMilliseconds == 2000)
    let file = Data(#"{"node-id": "n1", "heartbeat-ms": 100}"#.utf8)
    let configured = try NodeConfiguration.resolve(
        file: ("f", file), environment: ["FLOTILLA_LEASE_MS": "1000"],
        flags: ["heartbeat-ms": "50", "peer-address": "127.0.0.1:7201", "client-address": "127.0.0.1:7101"])
    #expect(configured.heartbeatMilliseconds == 50 && configured.leaseMilliseconds == 1000)
}

@Test(arguments: [
    (["node-id": "x7"], "not a node id"),
    (["node-id": "n9"], "not among the config file's members"),
    (["node-id": "n1", "tick-ms": "0"], "must be a whole number in 1...10000"),
    (["node-id": "n1", "tick-ms": "fast"], "--tick-ms is \"fast\""),
    (["node-id": "n1", "peer-address": "localhost"], "not an address"),
    (["node-id": "n1", "heartbeat-ticks": "10"], "not below election-ticks"),
    (["node-id": "n1", "leader-silence-ticks": "1"], "--leader-silence-ticks is 1, not between heartbeat-ticks (1)"),
    (["node-id": "n1", "leader-silence-ticks": "10"], "and election-ticks (10)"),
    (["node-id": "n1", "leader-silence-ticks": "-1"], "must be a whole number in 0...10000"),
    (["node-id": "n1", "read-lease": "yes"], "--read-lease is \"yes\""),
    (["node-id": "n1", "read-lease": "true", "tick-ms": "300"], "--read-lease is true with tick-ms 300"),
    (["node-id": "n1", "heartbeat-ms": "1500"], "heartbeat-ms (1500) is more than half of lease-ms (2000)"),
    (["node-id": "n1", "lease-ms": "50"], "--lease-ms is \"50\""),
    (["node-id": "n1", "cluster-id": "has space"], "cluster-id \"has space\" is not valid"),
    (["node-id": "n1", "colour": "red"], "unknown setting --colour"),
    ([:], "no node-id given"),
    (["node-id": "n1", "node-id-from-ordinal": "flotilla-0"], "give the node's id one way"),
    (["node-id-from-ordinal": "flotilla"], "not a name ending in -ORDINAL"),
    (["node-id-from-ordinal": "flotilla-"], "not a name ending in -ORDINAL"),
    (["node-id-from-ordinal": "-1"], "not a name ending in -ORDINAL"),
    (["node-id-from-ordinal": "flotilla-01"], "not a name ending in -ORDINAL"),
    (["node-id-from-ordinal": "flotilla-x2"], "not a name ending in -ORDINAL"),
    (["node-id-from-ordinal": "flotilla-8"], "node n9 is not among the config file's members"),
    (["node-id": "n1", "join": "maybe"], "join is true, false, or auto"),
])
func badFlagsAreNamedWithWhatToDo(flags: [String: String], message: String) {
    let error = #expect(throws: ConfigurationError.self) {
        try NodeConfiguration.resolve(file: ("local-3.json", threeNodes), environment: [:], flags: flags)
    }
    #expect(error?.description.contains(message) == true, "\(String(describing: error))")
}

/// A StatefulSet's pods share one configuration and know only their names: pod k is n(k+1).
@Test(arguments: [("flotilla-0", 1), ("flotilla-2", 3), ("my-cluster-9", 10), ("web-1-10", 11)])
func aPodNameGivesTheNodeIDFromItsOrdinal(name: String, id: UInt64) throws {
    let members = (1...11).map { #"{"id": "n\#($0)", "peer": "h\#($0):7201", "client": "h\#($0):7101"}"# }
    let file = Data(#"{"members": [\#(members.joined(separator: ", "))]}"#.utf8)
    let configuration = try NodeConfiguration.resolve(
        file: ("f", file), environment: ["FLOTILLA_NODE_ID_FROM_ORDINAL": name], flags: [:])
    #expect(configuration.nodeID == NodeID(id))
    #expect(configuration.peerListen.host == "h\(id)")
}

/// `join: auto`: the founders listed in the file found the cluster; any other replica joins it.
@Test func joinAutoJoinsOnlyWhenTheNodeIsNotAFounder() throws {
    let listen = ["peer-address": "0.0.0.0:7201", "client-address": "0.0.0.0:7101", "join": "auto"]
    let founder = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: [:], flags: listen.merging(["node-id": "n2"]) { $1 })
    #expect(!founder.join && founder.members.count == 3)
    #expect(founder.peerListen.description == "0.0.0.0:7201", "the flag overrides the listening address")
    #expect(founder.members[1].peer.description == "127.0.0.1:7202", "the others still reach it at the file's")
    let added = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: [:], flags: listen.merging(["node-id": "n4"]) { $1 })
    #expect(added.join && added.nodeID == 4)
}

@Test(arguments: [
    ("{", "not a JSON object"),
    ("[1, 2]", "not a JSON object"),
    (#"{"speed": 3}"#, "unknown key \"speed\""),
    (#"{"tick-ms": true, "peer-address": "127.0.0.1:1", "client-address": "127.0.0.1:2"}"#, #""tick-ms" is "true""#),
    (#"{"tick-ms": 1.5}"#, "not a JSON object"),
    (#"{"members": []}"#, "\"members\" is empty"),
    (#"{"members": [{"id": "n1", "peer": "nowhere", "client": "127.0.0.1:1"}]}"#, "members[0] needs"),
    (
        #"{"members": [{"id": "n1", "peer": "a:1", "client": "a:2"}, {"id": "n1", "peer": "b:1", "client": "b:2"}]}"#,
        "member n1 is listed twice"
    ),
    (#"{"node-id": ["n1"]}"#, "strings, whole numbers or true/false"),
    (#"{"node-id": [{"id": "n1", "peer": "a:1", "client": "a:2"}]}"#, "must be a string or a whole number"),
])
func badFilesAreNamedWithWhatToDo(file: String, message: String) {
    let error = #expect(throws: ConfigurationError.self) {
        try NodeConfiguration.resolve(file: ("bad.json", Data(file.utf8)), environment: [:], flags: ["node-id": "n1"])
    }
    #expect(error?.description.contains(message) == true, "\(String(describing: error))")
}

@Test(arguments: ["127.0.0.1:0", "host-name:65535", "[::1]:7101", "[fe80::1%eth0]:1"])
func endpointsRoundTrip(text: String) throws {
    let endpoint = try #require(Endpoint(parsing: text))
    #expect(Endpoint(parsing: endpoint.description) == endpoint)
}

@Test(arguments: ["", ":80", "host", "host:", "host:65536", "::1:80", "[::1]80", "a b:1", "host:-1"])
func malformedEndpointsAreRejected(text: String) {
    #expect(Endpoint(parsing: text) == nil)
}

/// The configurations shipped in cluster-config/ are valid for each of their members.
@Test(arguments: [("local-3.json", 3), ("local-5.json", 5)])
func shippedConfigurationsResolveForEveryMember(name: String, size: Int) throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let path = root.appendingPathComponent("cluster-config").appendingPathComponent(name).path
    let contents = try Data(contentsOf: URL(fileURLWithPath: path))
    for member in 1...size {
        let configuration = try NodeConfiguration.resolve(
            file: (path, contents), environment: [:], flags: ["node-id": "n\(member)"])
        #expect(configuration.members.count == size)
        #expect(configuration.clientListen.port == 7100 + member)
        #expect(configuration.peerListen.port == 7200 + member)
    }
}

@Test func memoryDefaultsTo8GiBAndTakesSizesFromEveryPlace() throws {
    let plain = try NodeConfiguration.resolve(file: ("f", threeNodes), environment: [:], flags: ["node-id": "n1"])
    #expect(plain.usableMemory == 8 << 30)
    let fromEnvironment = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: ["FLOTILLA_MEMORY": "16G"], flags: ["node-id": "n1"])
    #expect(fromEnvironment.usableMemory == 16 << 30)
    let fromFlag = try NodeConfiguration.resolve(
        file: ("f", threeNodes), environment: ["FLOTILLA_MEMORY": "16G"], flags: ["node-id": "n1", "memory": "1536M"])
    #expect(fromFlag.usableMemory == 1536 << 20)
}

@Test(arguments: ["lots", "0", "512K", "2000T"])
func memoryOutsideTheAcceptedSizesIsRefusedWithTheFix(_ text: String) {
    #expect {
        try NodeConfiguration.resolve(
            file: ("f", threeNodes), environment: [:], flags: ["node-id": "n1", "memory": text])
    } throws: { error in
        let description = "\(error)"
        return description.contains("--memory is \"\(text)\"") && description.contains("written like 8G")
    }
}

@Test(arguments: [
    (".flotilla/{node}", ".flotilla/shared"), ("/var/lib/flotilla/", "/var/lib/shared"), ("n1", "shared"),
    ("/n1", "/shared"),
])
func theSharedRootDefaultsToBesideTheDataDirectory(dataDirectory: String, sharedRoot: String) throws {
    let configuration = try NodeConfiguration.resolve(
        file: ("local-3.json", threeNodes), environment: [:], flags: ["node-id": "n1", "data-dir": dataDirectory])
    #expect(configuration.sharedRoot == sharedRoot)
    #expect(configuration.journalIntervalMilliseconds == 100)
}

@Test func theSharedRootAndJournalIntervalComeFromEveryPlace() throws {
    let configuration = try NodeConfiguration.resolve(
        file: ("local-3.json", threeNodes), environment: ["FLOTILLA_SHARED_ROOT": "/mnt/csv"],
        flags: ["node-id": "n1", "journal-interval-ms": "250"])
    #expect(configuration.sharedRoot == "/mnt/csv")
    #expect(configuration.journalIntervalMilliseconds == 250)
    let error = #expect(throws: ConfigurationError.self) {
        try NodeConfiguration.resolve(
            file: ("local-3.json", threeNodes), environment: [:], flags: ["node-id": "n1", "journal-interval-ms": "0"])
    }
    #expect(error?.description.contains("journal-interval-ms must be a whole number in 1...60000") == true)
}

@Test func theRaftSeedIsRandomUnlessGivenAndAnythingButANumberIsRefused() throws {
    let random = try NodeConfiguration.resolve(
        file: ("local-3.json", threeNodes), environment: [:], flags: ["node-id": "n1"])
    #expect(random.raftSeed == nil)
    let given = try NodeConfiguration.resolve(
        file: ("local-3.json", threeNodes), environment: ["FLOTILLA_RAFT_SEED": "18446744073709551615"],
        flags: ["node-id": "n1"])
    #expect(given.raftSeed == UInt64.max)
    let error = #expect(throws: ConfigurationError.self) {
        try NodeConfiguration.resolve(
            file: ("local-3.json", threeNodes), environment: [:], flags: ["node-id": "n1", "raft-seed": "-1"])
    }
    #expect(error?.description.contains("--raft-seed is \"-1\"") == true)
}

/// The Kubernetes ConfigMap's cluster.json, as the StatefulSet's pods read it with their own names:
/// flotilla-0…2 found the cluster, a pod added by scaling up joins it.
@Test(arguments: [("flotilla-0", 1, false), ("flotilla-2", 3, false), ("flotilla-3", 4, true), ("flotilla-4", 5, true)])
func theKubernetesConfigurationResolvesForEveryPod(pod: String, id: UInt64, joins: Bool) throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let path = root.appendingPathComponent("cluster-config/kubernetes/configmap.yaml").path
    let contents = try Data(embeddedConfigurationIn: try String(contentsOfFile: path, encoding: .utf8))
    let environment = [
        "FLOTILLA_NODE_ID_FROM_ORDINAL": pod, "FLOTILLA_PEER_ADDRESS": "0.0.0.0:7201",
        "FLOTILLA_CLIENT_ADDRESS": "0.0.0.0:7101",
    ]
    let configuration = try NodeConfiguration.resolve(file: (path, contents), environment: environment, flags: [:])
    #expect(configuration.nodeID == NodeID(id) && configuration.join == joins)
    #expect(configuration.peerListen.description == "0.0.0.0:7201")
    #expect(configuration.dataDirectory == "/var/lib/flotilla/data/n\(id)")
    let founders = configuration.members.filter { $0.peer.host != "0.0.0.0" }
    #expect(founders.map(\.peer.description) == (0...2).map { "flotilla-\($0).flotilla:7201" })
    #expect(founders.map(\.client.description) == (0...2).map { "flotilla-\($0).flotilla:7101" })
}

extension Data {
    /// The block scalar under `cluster.json: |` in a ConfigMap's YAML: the lines indented deeper
    /// than the key, with that indentation removed.
    fileprivate init(embeddedConfigurationIn yaml: String) throws {
        let lines = yaml.split(separator: "\n", omittingEmptySubsequences: false)
        guard let keyLine = lines.firstIndex(where: { $0.drop { $0 == " " }.hasPrefix("cluster.json: |") }) else {
            throw NoEmbeddedConfiguration()
        }
        let keyIndent = lines[keyLine].prefix { $0 == " " }.count
        let block = lines[(keyLine + 1)...].prefix { $0.isEmpty || $0.prefix { $0 == " " }.count > keyIndent }
        let indent = block.filter { !$0.isEmpty }.map { $0.prefix { $0 == " " }.count }.min() ?? 0
        self.init(block.map { $0.dropFirst(Swift.min(indent, $0.count)) }.joined(separator: "\n").utf8)
    }
}

private struct NoEmbeddedConfiguration: Error, CustomStringConvertible {
    var description: String { "no `cluster.json: |` block in the ConfigMap" }
}
