// A node's settings, merged from the config file, FLOTILLA_* variables and flags, then validated.
public import ClusterModel
public import Foundation
import RaftCore

/// One member of the cluster as the configuration names it.
public struct MemberAddress: Hashable, Sendable {
    public var id: NodeID
    /// Where the other nodes reach its peer RPC (Raft, heartbeats, migration streams).
    public var peer: Endpoint
    /// Where clients reach its API.
    public var client: Endpoint
}

/// Everything a `flotilla node` process needs to start.
///
/// Settings come from three places; a later one overrides an earlier one:
/// 1. the config file (`--config PATH` or `FLOTILLA_CONFIG`), JSON, usually shared by all nodes of
///    a cluster (see `cluster-config/`);
/// 2. environment variables `FLOTILLA_<SETTING>` (`FLOTILLA_NODE_ID`, `FLOTILLA_DATA_DIR`, …);
/// 3. command-line flags `--<setting>` (`--node-id`, `--data-dir`, …).
/// Every setting's name is in `NodeConfiguration.Setting`.
public struct NodeConfiguration: Hashable, Sendable {
    public var clusterID: String
    public var nodeID: NodeID
    /// The voters the cluster starts with; ignored once the data directory holds a log.
    public var members: [MemberAddress]
    public var peerListen: Endpoint
    public var clientListen: Endpoint
    public var dataDirectory: String
    /// How often the Raft core ticks; election and heartbeat timeouts are counted in ticks.
    public var tickMilliseconds: Int
    public var electionTicks: Int
    public var heartbeatTicks: Int
    /// A follower that hears nothing from its leader for this many ticks stops defending it and
    /// campaigns within a few ticks (`RaftConfiguration.leaderSilenceTicks`); nil: it waits for the
    /// election timeout. The setting's 0 means nil.
    public var leaderSilenceTicks: Int? = nil
    /// As leader, this node answers linearizable reads from a read lease, without a heartbeat round,
    /// while one a quorum promised runs (`RaftConfiguration.readLease`, docs/raft.md "Lease reads").
    /// Every node of this build keeps the promises leaders ask for either way. A cluster upgraded
    /// from a build without lease reads keeps it false until every node runs this build (that build
    /// cannot read the streams of a node with it on; docs/operations.md, "Upgrades").
    public var readLease: Bool = true
    /// A snapshot is taken (and the log compacted) after this many newly applied entries.
    public var snapshotEntries: Int
    /// The node joins a running cluster (added through the API) instead of founding one with
    /// `members`; the file's members then only tell it where the others are. The setting is `true`,
    /// `false`, or `auto`: join exactly when this node is not among the file's members (replicas that
    /// share one configuration, where the founders are listed and later ones are added).
    public var join: Bool
    /// Memory this node offers VMs (host memory minus the host's reserve), in bytes; the node
    /// registers it in the cluster state, where admission control counts VMs' startup memory against it.
    public var usableMemory: UInt64
    /// How often the node heartbeats the leader (which answers with a lease).
    public var heartbeatMilliseconds: Int
    /// How long a lease the leader grants lasts, measured by the node from when it sent the
    /// heartbeat; a node whose lease runs out stops its VMs (docs/failover.md).
    public var leaseMilliseconds: Int
    /// The directory every node mounts, where volumes live: a VM's disk file is
    /// `<sharedRoot>/<volume path>/<disk file>` (DESIGN.md §11).
    public var sharedRoot: String
    /// How often a running guest appends a record to its disk journal.
    public var journalIntervalMilliseconds: Int
    /// Seeds the Raft core's election jitter; nil: a random seed. The node logs the seed it uses,
    /// so a run's election timing can be replayed by passing it back.
    public var raftSeed: UInt64? = nil

    /// The names of the settings, as they appear in the file and as flags (`--node-id`); the
    /// variable is `FLOTILLA_` + the name in upper case with `_` for `-`.
    public enum Setting: String, CaseIterable, Sendable {
        case clusterID = "cluster-id"
        case nodeID = "node-id"
        /// A name ending in `-ORDINAL`, such as a StatefulSet pod's `flotilla-2`: the node is
        /// `n(ORDINAL+1)`, so pod 0 is n1. An alternative to `node-id`, for replicas that share one
        /// configuration and learn only their own name.
        case nodeIDFromOrdinal = "node-id-from-ordinal"
        case peerAddress = "peer-address"
        case clientAddress = "client-address"
        case dataDirectory = "data-dir"
        case tickMilliseconds = "tick-ms"
        case electionTicks = "election-ticks"
        case heartbeatTicks = "heartbeat-ticks"
        case leaderSilenceTicks = "leader-silence-ticks"
        case readLease = "read-lease"
        case snapshotEntries = "snapshot-entries"
        case join
        case memory
        case heartbeatMilliseconds = "heartbeat-ms"
        case leaseMilliseconds = "lease-ms"
        case sharedRoot = "shared-root"
        case journalIntervalMilliseconds = "journal-interval-ms"
        case raftSeed = "raft-seed"

        public var environmentVariable: String {
            "FLOTILLA_" + rawValue.uppercased().replacingOccurrences(of: "-", with: "_")
        }
    }

    /// Merges the three sources and validates the result.
    ///
    /// - Parameters:
    ///   - file: the config file's bytes and path, when there is one.
    ///   - environment: the process environment (only `FLOTILLA_*` keys are read).
    ///   - flags: flag values by setting name, for the flags that were given.
    public static func resolve(
        file: (path: String, contents: Data)?,
        environment: [String: String],
        flags: [String: String]
    ) throws(ConfigurationError) -> NodeConfiguration {
        var values: [Setting: (value: String, source: String)] = [:]
        var members: [MemberAddress] = []

        if let file {
            let document = try ConfigFile.parse(file.contents, path: file.path)
            for (setting, value) in document.settings {
                values[setting] = (value, "\(file.path): \"\(setting.rawValue)\"")
            }
            members = document.members
        }
        for setting in Setting.allCases {
            if let value = environment[setting.environmentVariable] {
                values[setting] = (value, setting.environmentVariable)
            }
        }
        for (name, value) in flags {
            guard let setting = Setting(rawValue: name) else {
                throw ConfigurationError(
                    "unknown setting --\(name)",
                    fix: "known settings: \(Setting.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            values[setting] = (value, "--\(name)")
        }

        func required(_ setting: Setting) throws(ConfigurationError) -> (value: String, source: String) {
            guard let entry = values[setting] else {
                throw ConfigurationError(
                    "no \(setting.rawValue) given",
                    fix:
                        "pass --\(setting.rawValue), set \(setting.environmentVariable), or put \"\(setting.rawValue)\" in the config file"
                )
            }
            return entry
        }
        func integer(_ setting: Setting, default fallback: Int, range: ClosedRange<Int>) throws(ConfigurationError)
            -> Int
        {
            guard let (text, source) = values[setting] else { return fallback }
            guard let number = Int(text), range.contains(number) else {
                throw ConfigurationError(
                    "\(source) is \"\(text)\"",
                    fix: "\(setting.rawValue) must be a whole number in \(range.lowerBound)...\(range.upperBound)")
            }
            return number
        }
        func endpoint(_ setting: Setting, default fallback: Endpoint?) throws(ConfigurationError) -> Endpoint {
            if values[setting] == nil, let fallback { return fallback }
            let (text, source) = try required(setting)
            guard let endpoint = Endpoint(parsing: text) else {
                throw ConfigurationError(
                    "\(source) is \"\(text)\", not an address",
                    fix: "write it as host:port, e.g. 127.0.0.1:7101 or [::1]:7101")
            }
            return endpoint
        }

        func memory() throws(ConfigurationError) -> UInt64 {
            guard let (text, source) = values[.memory] else { return defaultUsableMemory }
            guard let bytes = ByteCount(parsing: text)?.bytes, usableMemoryRange.contains(bytes) else {
                throw ConfigurationError(
                    "\(source) is \"\(text)\"",
                    fix:
                        "memory is the memory this node offers VMs, 1M to 1024T, written like 8G, 16384M or a number of bytes"
                )
            }
            return bytes
        }

        let nodeID = try Self.nodeID(given: values[.nodeID], fromOrdinal: values[.nodeIDFromOrdinal])
        let ownEntry = members.first { $0.id == nodeID }
        let join: Bool
        switch values[.join]?.value {
        case nil, "false": join = false
        case "true": join = true
        case "auto": join = ownEntry == nil
        case let other?:
            throw ConfigurationError(
                "\(values[.join]!.source) is \"\(other)\"",
                fix: "join is true, false, or auto (join when this node is not among the config file's members)")
        }
        if !members.isEmpty && ownEntry == nil && !join {
            throw ConfigurationError(
                "node \(nodeID) is not among the config file's members (\(members.map(\.id.description).joined(separator: ", ")))",
                fix:
                    "pick one of those ids, add \(nodeID) to \"members\", or start it with --join true to add it to a running cluster"
            )
        }
        let peerListen = try endpoint(.peerAddress, default: ownEntry?.peer)
        let clientListen = try endpoint(.clientAddress, default: ownEntry?.client)
        if ownEntry == nil {
            // No member list: a cluster of one, which can grow by membership changes. Or a
            // joining node: it knows the others from the file and itself from its flags.
            members.append(MemberAddress(id: nodeID, peer: peerListen, client: clientListen))
        }
        let clusterID = values[.clusterID]?.value ?? "flotilla"
        guard !clusterID.isEmpty, clusterID.count <= 64,
            clusterID.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
        else {
            throw ConfigurationError(
                "cluster-id \"\(clusterID)\" is not valid", fix: "use 1–64 letters, digits, - or _")
        }
        let dataDirectory = (values[.dataDirectory]?.value ?? ".flotilla/{node}").replacingOccurrences(
            of: "{node}", with: nodeID.description)
        guard !dataDirectory.isEmpty else {
            throw ConfigurationError(
                "data-dir is empty", fix: "name a directory this node alone uses, e.g. .flotilla/n1")
        }
        // Beside the data directories by default, so the nodes of a local cluster share it.
        let sharedRoot = values[.sharedRoot]?.value ?? Self.besideDataDirectory(dataDirectory, "shared")
        guard !sharedRoot.isEmpty else {
            throw ConfigurationError(
                "shared-root is empty", fix: "name the directory every node mounts for volumes, e.g. .flotilla/shared")
        }
        var raftSeed: UInt64?
        if let (text, source) = values[.raftSeed] {
            guard let seed = UInt64(text) else {
                throw ConfigurationError(
                    "\(source) is \"\(text)\"",
                    fix: "raft-seed is a whole number from 0 to 18446744073709551615, as a node's log printed it")
            }
            raftSeed = seed
        }
        var configuration = NodeConfiguration(
            clusterID: clusterID,
            nodeID: nodeID,
            members: members,
            peerListen: peerListen,
            clientListen: clientListen,
            dataDirectory: dataDirectory,
            tickMilliseconds: try integer(.tickMilliseconds, default: 50, range: 1...10_000),
            electionTicks: try integer(.electionTicks, default: 10, range: 2...10_000),
            heartbeatTicks: try integer(.heartbeatTicks, default: 1, range: 1...10_000),
            snapshotEntries: try integer(.snapshotEntries, default: 10_000, range: 10...100_000_000),
            join: join,
            usableMemory: try memory(),
            heartbeatMilliseconds: try integer(.heartbeatMilliseconds, default: 200, range: 10...60_000),
            leaseMilliseconds: try integer(.leaseMilliseconds, default: 2000, range: 100...600_000),
            sharedRoot: sharedRoot,
            journalIntervalMilliseconds: try integer(.journalIntervalMilliseconds, default: 100, range: 1...60_000)
        )
        configuration.raftSeed = raftSeed
        guard configuration.heartbeatMilliseconds * 2 <= configuration.leaseMilliseconds else {
            throw ConfigurationError(
                "heartbeat-ms (\(configuration.heartbeatMilliseconds)) is more than half of lease-ms "
                    + "(\(configuration.leaseMilliseconds))",
                fix: "a node must heartbeat several times per lease, or one lost heartbeat fences it; "
                    + "e.g. heartbeat-ms 200, lease-ms 2000")
        }
        guard configuration.heartbeatTicks < configuration.electionTicks else {
            throw ConfigurationError(
                "heartbeat-ticks (\(configuration.heartbeatTicks)) is not below election-ticks (\(configuration.electionTicks))",
                fix:
                    "a leader must heartbeat several times per election timeout; e.g. heartbeat-ticks 1, election-ticks 10"
            )
        }
        let silenceDefault = Self.defaultLeaderSilenceTicks(
            tickMilliseconds: configuration.tickMilliseconds, electionTicks: configuration.electionTicks,
            heartbeatTicks: configuration.heartbeatTicks)
        let silence = try integer(.leaderSilenceTicks, default: silenceDefault ?? 0, range: 0...10_000)
        if silence != 0 && (silence <= configuration.heartbeatTicks || silence >= configuration.electionTicks) {
            throw ConfigurationError(
                "\(values[.leaderSilenceTicks]!.source) is \(silence), not between heartbeat-ticks "
                    + "(\(configuration.heartbeatTicks)) and election-ticks (\(configuration.electionTicks))",
                fix: "a leader is counted silent after several missed heartbeats and before the election timeout; "
                    + "e.g. 3 with heartbeat-ticks 1 and election-ticks 10, or 0 to wait for the election timeout")
        }
        configuration.leaderSilenceTicks = silence == 0 ? nil : silence
        // Voters refuse a lease whose promise would pass `LeasePromise.maxPromise`: 80 % of a tick
        // longer than 250 ms.
        let leaseFits =
            LeasePromise.promiseTicks(
                for: LeasePromise.standardLease(tick: .milliseconds(configuration.tickMilliseconds)),
                tick: .milliseconds(configuration.tickMilliseconds)) != nil
        switch values[.readLease]?.value {
        case nil: configuration.readLease = leaseFits
        case "true":
            guard leaseFits else {
                throw ConfigurationError(
                    "\(values[.readLease]!.source) is true with tick-ms \(configuration.tickMilliseconds)",
                    fix: "a read lease is 80 % of a tick, and voters promise 1.25 times a lease but never more than "
                        + "\(Int(LeasePromise.maxPromise / .milliseconds(1))) ms; use tick-ms 250 or less, or read-lease false"
                )
            }
            configuration.readLease = true
        case "false": configuration.readLease = false
        case let other?:
            throw ConfigurationError(
                "\(values[.readLease]!.source) is \"\(other)\"",
                fix: "read-lease is true (a leader answers reads from a lease a quorum confirmed) or false "
                    + "(every read takes a heartbeat round; for a cluster upgraded from a build without it)")
        }
        return configuration
    }
}

extension NodeConfiguration {
    /// The core's default (three heartbeats, or a third of the election timeout), but never under
    /// 150 ms: the pauses a loaded host imposes (a scheduler that runs others first, a slow fsync
    /// on the leader's loop) are measured in milliseconds, not ticks, and a leader that a majority
    /// does not hear for that long loses its leadership. Nil when that reaches the election timeout.
    static func defaultLeaderSilenceTicks(tickMilliseconds: Int, electionTicks: Int, heartbeatTicks: Int) -> Int? {
        guard
            let ticks = RaftConfiguration.defaultLeaderSilenceTicks(
                electionTicks: electionTicks, heartbeatTicks: heartbeatTicks)
        else { return nil }
        let silence = max(ticks, (150 + tickMilliseconds - 1) / tickMilliseconds)
        return silence < electionTicks ? silence : nil
    }

    /// The node's id from `node-id`, or from the ordinal at the end of `node-id-from-ordinal`
    /// (`flotilla-0` → n1); exactly one of the two must be given.
    static func nodeID(
        given: (value: String, source: String)?, fromOrdinal: (value: String, source: String)?
    ) throws(ConfigurationError) -> NodeID {
        switch (given, fromOrdinal) {
        case (nil, nil):
            throw ConfigurationError(
                "no node-id given",
                fix:
                    "pass --node-id, set FLOTILLA_NODE_ID, or put \"node-id\" in the config file "
                    + "(or name a StatefulSet pod with --node-id-from-ordinal / FLOTILLA_NODE_ID_FROM_ORDINAL)")
        case (let given?, let fromOrdinal?):
            throw ConfigurationError(
                "both \(given.source) (\"\(given.value)\") and \(fromOrdinal.source) (\"\(fromOrdinal.value)\") are given",
                fix: "give the node's id one way: node-id, or node-id-from-ordinal")
        case (let (text, source)?, nil):
            guard let id = NodeID(parsing: text) else {
                throw ConfigurationError(
                    "\(source) is \"\(text)\", not a node id", fix: "node ids are n1, n2, … (a positive number after n)"
                )
            }
            return id
        case (nil, let (text, source)?):
            let digits = text.reversed().prefix { $0.isASCII && $0.isNumber }.reversed()
            let name = text.dropLast(digits.count)
            guard name.count >= 2, name.hasSuffix("-"), !digits.isEmpty, digits.count <= 9,
                digits.first != "0" || digits.count == 1, let ordinal = Int(String(digits)),
                let id = NodeID(parsing: "n\(ordinal + 1)")
            else {
                throw ConfigurationError(
                    "\(source) is \"\(text)\", not a name ending in -ORDINAL",
                    fix:
                        "give a StatefulSet pod's name, such as flotilla-0 (node n1) or flotilla-2 (n3): "
                        + "in Kubernetes, from the downward API's metadata.name")
            }
            return id
        }
    }

    /// `name` in the directory holding `dataDirectory`: `.flotilla/n1` → `.flotilla/shared`.
    static func besideDataDirectory(_ dataDirectory: String, _ name: String) -> String {
        var path = Substring(dataDirectory)
        while path.count > 1, path.hasSuffix("/") { path = path.dropLast() }
        guard let slash = path.lastIndex(of: "/") else { return name }
        return path[..<slash] + "/" + name
    }

    /// What a node offers VMs when `memory` is not set: 8 GiB.
    public static let defaultUsableMemory: UInt64 = 8 << 30
    /// The range the cluster state accepts for a node's usable memory: 1 MiB to 1 PiB.
    static let usableMemoryRange: ClosedRange<UInt64> = (1 << 20)...(1 << 50)
}

/// A configuration that cannot be used, with what to do about it.
public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var problem: String
    public var fix: String

    init(_ problem: String, fix: String) {
        self.problem = problem
        self.fix = fix
    }

    public var description: String { "configuration: \(problem); \(fix)" }
}

/// The JSON config file: settings by name, plus the member list.
enum ConfigFile {
    struct Document {
        var settings: [NodeConfiguration.Setting: String] = [:]
        var members: [MemberAddress] = []
    }

    /// One value in the file: a setting (string, whole number or true/false) or the member list.
    private enum Value: Decodable {
        case text(String)
        case number(Int)
        case flag(Bool)
        case members([Member])

        struct Member: Decodable {
            var id: String
            var peer: String
            var client: String
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .text(text)
            } else if let number = try? container.decode(Int.self) {
                self = .number(number)
            } else if let flag = try? container.decode(Bool.self) {
                self = .flag(flag)
            } else {
                self = .members(try container.decode([Member].self))
            }
        }
    }

    static func parse(_ contents: Data, path: String) throws(ConfigurationError) -> Document {
        let example =
            "e.g. \"members\": [{\"id\": \"n1\", \"peer\": \"127.0.0.1:7201\", \"client\": \"127.0.0.1:7101\"}]"
        let top: [String: Value]
        do {
            top = try JSONDecoder().decode([String: Value].self, from: contents)
        } catch {
            throw ConfigurationError(
                "\(path) is not a JSON object of settings (strings, whole numbers or true/false) and \"members\"",
                fix: "see cluster-config/local-3.json for the format; \(example)")
        }
        var document = Document()
        for (key, value) in top.sorted(by: { $0.key < $1.key }) {
            switch (key, value) {
            case ("members", .members(let list)):
                document.members = try parseMembers(list, path: path, example: example)
            case ("members", _):
                throw ConfigurationError("\(path): \"members\" must be a list of objects", fix: example)
            case (_, .members):
                throw ConfigurationError(
                    "\(path): \"\(key)\" must be a string or a whole number", fix: "e.g. \"\(key)\": \"…\"")
            case (_, .text(let text)):
                document.settings[try setting(named: key, path: path)] = text
            case (_, .number(let number)):
                document.settings[try setting(named: key, path: path)] = String(number)
            case (_, .flag(let flag)):
                document.settings[try setting(named: key, path: path)] = String(flag)
            }
        }
        return document
    }

    private static func setting(named key: String, path: String) throws(ConfigurationError) -> NodeConfiguration.Setting
    {
        guard let setting = NodeConfiguration.Setting(rawValue: key) else {
            throw ConfigurationError(
                "\(path) has an unknown key \"\(key)\"",
                fix:
                    "known keys: members, \(NodeConfiguration.Setting.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        return setting
    }

    private static func parseMembers(_ list: [Value.Member], path: String, example: String) throws(ConfigurationError)
        -> [MemberAddress]
    {
        guard !list.isEmpty else {
            throw ConfigurationError("\(path): \"members\" is empty", fix: example)
        }
        var members: [MemberAddress] = []
        for (position, entry) in list.enumerated() {
            guard let id = NodeID(parsing: entry.id), let peer = Endpoint(parsing: entry.peer),
                let client = Endpoint(parsing: entry.client)
            else {
                throw ConfigurationError(
                    "\(path): members[\(position)] needs an id (n1, n2, …) and peer and client addresses (host:port)",
                    fix: example)
            }
            guard !members.contains(where: { $0.id == id }) else {
                throw ConfigurationError("\(path): member \(id) is listed twice", fix: "give every member its own id")
            }
            members.append(MemberAddress(id: id, peer: peer, client: client))
        }
        return members
    }
}
