// `flotilla node`: parse the node's settings and run it until SIGTERM or SIGINT.
import ArgumentParser
import Foundation
import Logging
import Node
import ServiceLifecycle
import UnixSignals

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a Flotilla node (the default), or drain, pause or resume one.",
        subcommands: [Run.self, Drain.self, Pause.self, Resume.self],
        defaultSubcommand: Run.self
    )
}

extension NodeCommand {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run",
            abstract: "Run a Flotilla node (a cluster member) in the foreground.",
            discussion: """
                Settings come from the config file, then FLOTILLA_* environment variables, then these \
                flags; a later source overrides an earlier one. See cluster-config/ for config files.
                """
        )

        @Option(help: "A JSON config file (or FLOTILLA_CONFIG), usually shared by all members.")
        var config: String?
        @Option(name: .customLong("node-id"), help: "This node's id: n1, n2, ….")
        var nodeID: String?
        @Option(
            name: .customLong("node-id-from-ordinal"),
            help: "Instead of --node-id: a name ending in -ORDINAL (a StatefulSet pod's, e.g. flotilla-2 is n3).")
        var nodeIDFromOrdinal: String?
        @Option(name: .customLong("cluster-id"), help: "The cluster's name; a data directory is bound to it.")
        var clusterID: String?
        @Option(name: .customLong("peer-address"), help: "host:port for peer RPC (Raft).")
        var peerAddress: String?
        @Option(name: .customLong("client-address"), help: "host:port for the client API.")
        var clientAddress: String?
        @Option(name: .customLong("data-dir"), help: "This node's data directory ({node} is replaced by its id).")
        var dataDirectory: String?
        @Option(name: .customLong("tick-ms"), help: "Raft tick length in milliseconds (default 50).")
        var tickMilliseconds: String?
        @Option(name: .customLong("election-ticks"), help: "Election timeout in ticks (default 10).")
        var electionTicks: String?
        @Option(name: .customLong("heartbeat-ticks"), help: "Leader heartbeat interval in ticks (default 1).")
        var heartbeatTicks: String?
        @Option(
            name: .customLong("leader-silence-ticks"),
            help: "Ticks without a word from the leader before a follower campaigns (default 3; 0: election timeout).")
        var leaderSilenceTicks: String?
        @Option(
            name: .customLong("read-lease"),
            help:
                "true: the leader answers reads from a lease a quorum confirmed (default); false: a heartbeat round each."
        )
        var readLease: String?
        @Option(name: .customLong("snapshot-entries"), help: "Entries applied between snapshots (default 10000).")
        var snapshotEntries: String?
        @Option(
            help: """
                true: join a running cluster (add it first with `flotilla members add`) instead of founding one; \
                auto: join when this node is not among the config file's members.
                """)
        var join: String?
        @Option(help: "Memory this node offers VMs, e.g. 8G or 16384M (default 8G).")
        var memory: String?
        @Option(name: .customLong("heartbeat-ms"), help: "How often this node heartbeats the leader (default 200).")
        var heartbeatMilliseconds: String?
        @Option(name: .customLong("lease-ms"), help: "How long a lease the leader grants lasts (default 2000).")
        var leaseMilliseconds: String?
        @Option(
            name: .customLong("raft-seed"),
            help: "Seeds the election jitter (default random); a node logs the seed it used, to replay it.")
        var raftSeed: String?
        @Flag(
            name: .customLong("force-new-cluster"),
            help: """
                After losing quorum for good: keep this node's committed state and make it the only voter \
                (entries it had not seen committed are dropped and listed). Use once, on one survivor.
                """)
        var forceNewCluster = false

        func run() async throws {
            let environment = ProcessInfo.processInfo.environment
            var flags: [String: String] = [:]
            let given: [(NodeConfiguration.Setting, String?)] = [
                (.nodeID, nodeID), (.nodeIDFromOrdinal, nodeIDFromOrdinal), (.clusterID, clusterID),
                (.peerAddress, peerAddress),
                (.clientAddress, clientAddress),
                (.dataDirectory, dataDirectory), (.tickMilliseconds, tickMilliseconds), (.electionTicks, electionTicks),
                (.heartbeatTicks, heartbeatTicks), (.leaderSilenceTicks, leaderSilenceTicks), (.readLease, readLease),
                (.snapshotEntries, snapshotEntries), (.join, join),
                (.memory, memory), (.heartbeatMilliseconds, heartbeatMilliseconds),
                (.leaseMilliseconds, leaseMilliseconds), (.raftSeed, raftSeed),
            ]
            for case (let setting, let value?) in given { flags[setting.rawValue] = value }

            var file: (path: String, contents: Data)?
            if let path = config ?? environment["FLOTILLA_CONFIG"] {
                guard let contents = FileManager.default.contents(atPath: path) else {
                    throw ValidationError("cannot read the config file \(path); check the path")
                }
                file = (path, contents)
            }
            let configuration: NodeConfiguration
            do {
                configuration = try NodeConfiguration.resolve(file: file, environment: environment, flags: flags)
            } catch {
                throw ValidationError(error.description)
            }

            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = .info
                return handler
            }
            let logger = Logger(label: "flotilla.\(configuration.nodeID)")
            let group = ServiceGroup(
                configuration: .init(
                    services: [
                        // A node that returns by itself (it was removed from the cluster) is done: exit 0.
                        .init(
                            service: NodeDaemon(
                                configuration: configuration, logger: logger, forceNewCluster: forceNewCluster),
                            successTerminationBehavior: .gracefullyShutdownGroup)
                    ],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger))
            do {
                try await group.run()
            } catch {
                logger.error("node \(configuration.nodeID) stopped: \(error)")
                throw ExitCode.failure
            }
        }
    }
}
