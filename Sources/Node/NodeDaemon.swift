// `flotilla node`: one cluster member — storage, Raft loop, peer RPC and the client API.
import ClusterModel
import ClusterState
import HTTP2
import LiveMigration
public import Logging
import NIOCore
import NIOPosix
import RaftCore
import RaftRuntime
import RaftStorage
public import ServiceLifecycle

/// A running node, as one `Service`: `run()` starts everything and returns after a graceful
/// shutdown (SIGTERM or SIGINT through `ServiceGroup`).
///
/// Start-up order: open the data directory (refusing another cluster's), recover the log, start
/// the peer listener (so votes can arrive), start ticking, then open the client API. Shutdown
/// runs backwards: the client API stops accepting and finishes in-flight requests (GOAWAY),
/// the Raft loop stops (everything acknowledged is already fsynced), then peer RPC closes.
public final class NodeDaemon: Service {
    public let configuration: NodeConfiguration
    private let logger: Logger
    /// What this node does when its lease runs out (docs/failover.md).
    private let fencing: any Fencing

    /// Whether to make this node a cluster of one before it starts (`--force-new-cluster`).
    private let forceNewCluster: Bool

    public init(
        configuration: NodeConfiguration, logger: Logger, fencing: (any Fencing)? = nil, forceNewCluster: Bool = false
    ) {
        self.configuration = configuration
        self.logger = logger
        self.fencing = fencing ?? LoggingFencing(logger: logger)
        self.forceNewCluster = forceNewCluster
    }

    public func run() async throws {
        let configuration = configuration
        // Before any file is read: a node that refuses a newer format has said what it reads.
        logger.info("node \(configuration.nodeID) formats: \(FormatVersions.summary) (each read up to that version)")
        let (directory, isNew) = try DataDirectory.open(
            configuration.dataDirectory, clusterID: configuration.clusterID, nodeID: configuration.nodeID.description)
        // A joining node starts knowing no members: the leader's log tells it who they are.
        let bootstrapMembership =
            configuration.join ? Membership() : Membership(voters: Set(configuration.members.map(\.id)))
        if forceNewCluster {
            // Explicit and logged: the survivor of a lost quorum becomes the only voter (docs/raft.md).
            _ = try ForcedNewCluster.rewrite(
                raftDirectory: directory.path + "/raft", local: configuration.nodeID,
                bootstrapMembership: bootstrapMembership, logger: logger)
        }
        let (storage, recovered) = try RaftDiskStorage.open(directory: directory.path + "/raft")
        if let torn = recovered.tornTail { logger.warning("\(torn)") }
        // The election jitter's seed, said in the log so a run's timing can be replayed (`--raft-seed`).
        let raftSeed =
            configuration.raftSeed ?? configuration.nodeID.rawValue &* 0x9E37_79B9_7F4A_7C15
            ^ UInt64.random(in: 0...UInt64.max)
        logger.info(
            "node \(configuration.nodeID) of cluster \(configuration.clusterID) starting",
            metadata: [
                "data-dir": "\(directory.path)", "new": "\(isNew)", "term": "\(recovered.hardState.term)",
                "raft-seed": "\(raftSeed)",
                "entries": "\(recovered.entries.count)",
                "snapshot": "\(recovered.snapshot.map { "\($0.metadata.index)" } ?? "none")",
            ])

        let addressBook = AddressBook(configured: configuration.members)
        // Contact with a leader, on the one clock the driver, the transport and the controllers
        // share: it bounds the leases a new leader's predecessors granted (docs/failover.md).
        let clock = NodeClock(ContinuousClock())
        let leaderContact = LeaderContactTracker(clock: clock)
        // The Raft driver, the peer connections and the client API share one event loop, so a
        // write goes from a socket through the core to a socket without a thread switch.
        // Measured against the client API on every loop and against a loop of its own for Raft and
        // the peers: one loop for all was cheapest per write and no slower (docs/benchmarks.md).
        let raftLoop = MultiThreadedEventLoopGroup.singleton.next()
        let transport = HTTP2PeerTransport(
            local: configuration.nodeID, peerAddress: { addressBook.addresses(of: $0)?.peer },
            requestTimeout: .milliseconds(configuration.tickMilliseconds * configuration.electionTicks),
            leaderContact: leaderContact, eventLoopGroup: raftLoop, logger: logger,
            asksForLeases: configuration.readLease)
        // Applied changes wake the agent and the volume coordinator at once (not only on their timers).
        let stateChanges = StateChanges(clock: clock)
        // What nodes report of their memory, kept by this node while it leads (soft state).
        let reportedMemory = ReportedMemory()
        // The downtime of migrations completed, counted as their final stats are applied.
        let migrationMetrics = MigrationMetrics()
        let driver = try ClusterDriver(
            configuration: RaftConfiguration(
                id: configuration.nodeID, electionTicks: configuration.electionTicks,
                heartbeatTicks: configuration.heartbeatTicks, leaderSilenceTicks: configuration.leaderSilenceTicks,
                tickInterval: .milliseconds(configuration.tickMilliseconds),
                readLease: configuration.readLease
                    ? LeasePromise.standardLease(tick: .milliseconds(configuration.tickMilliseconds)) : nil),
            bootstrapMembership: bootstrapMembership,
            storage: storage, recovered: recovered,
            machine: ClusterStateMachine(
                addressBook: addressBook, changes: stateChanges, migrationMetrics: migrationMetrics),
            transport: transport,
            tickDuration: .milliseconds(configuration.tickMilliseconds),
            snapshotInterval: UInt64(configuration.snapshotEntries), leaderContact: leaderContact,
            seed: raftSeed,
            eventLoop: raftLoop)

        transport.onUnreachable { [weak driver] node in await driver?.reportUnreachable(node) }
        transport.onPeerProcessGone { [weak driver] node in await driver?.peerProcessGone(node) }

        var peerRouter = Router()
        peerRouter.addPeerRoutes(
            driver: driver, local: configuration.nodeID, leaderContact: leaderContact,
            peerReachedUs: { transport.peerReachedUs($0) }, logger: logger)
        let readState: @Sendable () async -> ClusterState = {
            await driver.staleRead { $0.state }
        }
        // Cluster Shared Volumes (docs/volumes.md): coordinates this node's volumes and reaches the
        // other coordinators on their peer ports. Fenced until the first lease, like the agent.
        let volumeLink = HTTPCoordinatorLink(addressBook: addressBook)
        let volumes = NodeVolumes(
            node: configuration.nodeID, sharedRoot: configuration.sharedRoot, readState: readState, link: volumeLink,
            logger: logger, changes: stateChanges)
        await volumes.fence(reason: "no lease granted yet")
        volumes.addPeerRoutes(to: &peerRouter)
        // The node agent: runs the VMs this node owns, from its applied state (docs/guests.md).
        // It starts fenced: nothing runs before the first lease.
        // Live migration (docs/live-migration.md): commands from this node's own components go
        // through the leader; the shells of incoming migrations wait in `incoming` for their
        // switchover; pages arrive on a data listener of their own, off the Raft loop.
        let writer = ClusterWriter(
            local: configuration.nodeID, driver: driver, addressBook: addressBook,
            timeoutTicks: UInt64(max(1, 5_000 / configuration.tickMilliseconds)))
        peerRouter.addProposeRoute(driver: driver, timeoutTicks: UInt64(max(1, 5_000 / configuration.tickMilliseconds)))
        let incoming = IncomingMigrations()
        let announcer = MigrationAnnouncer(writer: writer, logger: logger)
        let agent = NodeAgent(
            configuration: NodeAgent.Configuration(configuration, clock: clock), readState: readState, volumes: volumes,
            changes: stateChanges, incoming: incoming,
            adopted: { announcer.announce($0, $1, resumedAt: $2) }, logger: logger)
        await agent.fence(reason: "no lease granted yet")
        let dataLoops = MultiThreadedEventLoopGroup(numberOfThreads: min(4, max(1, System.coreCount)))
        var dataRouter = Router()
        dataRouter.addMigrationDataRoutes(incoming: incoming)
        // A real guest's stream (QEMU's own) comes on the same listener, into the QEMU that expects it.
        let streams = QEMUStreamReceiver()
        streams.register(on: &dataRouter)
        var dataSettings = HTTP2Server.Configuration(host: configuration.peerListen.host, port: 0)
        // Pages stream at gigabytes a second: windows wide enough that a round is never held up by
        // credit on a link with a millisecond of latency.
        dataSettings.initialStreamWindowSize = 4 << 20
        dataSettings.connectionWindowSize = 32 << 20
        // Pages arrive in reads and DATA frames of up to 1 MiB rather than 64 and 16 KiB: fewer
        // wake-ups, reads and passes through nghttp2 and the page sink per gigabyte.
        dataSettings.maxReadSize = 1 << 20
        dataSettings.maxFrameSize = 1 << 20
        let dataServer = HTTP2Server(configuration: dataSettings, router: dataRouter, eventLoopGroup: dataLoops)
        peerRouter.addMigrationPeerRoutes(
            local: configuration.nodeID, agent: agent, incoming: incoming, streams: streams, readState: readState,
            dataPort: { dataServer.port })
        let sources = MigrationSources(
            local: configuration.nodeID, agent: agent, writer: writer, readState: readState, changes: stateChanges,
            eventLoops: dataLoops, logger: logger)
        // Failover and fencing (docs/failover.md): heartbeats and leases on the peer port; a node
        // whose lease runs out stops its VMs through the agent.
        let (controllers, heartbeats) = LeaderControllers.services(
            configuration, driver: driver, addressBook: addressBook, leaderContact: leaderContact,
            reportedMemory: reportedMemory,
            fencing: FencingGroup([agent, volumes, fencing]), memoryFacts: { await agent.memoryFacts }, logger: logger)
        peerRouter.addHeartbeatRoute(controllers: controllers)
        let peerServer = HTTP2Server(
            configuration: .init(host: configuration.peerListen.host, port: configuration.peerListen.port),
            router: peerRouter, eventLoopGroup: raftLoop)
        let forwarder = LeaderForwarder()
        var clientRouter = Router()
        let clientAPI = ClientAPI(
            configuration: configuration, driver: driver, forwarder: forwarder, addressBook: addressBook,
            lifecycle: APILifecycle(), reportedMemory: reportedMemory,
            volumeAccess: VolumeAccessGatherer(local: volumes, link: volumeLink), migrationMetrics: migrationMetrics)
        clientAPI.addRoutes(to: &clientRouter)
        clientAPI.addMembershipRoutes(to: &clientRouter)
        clientAPI.addSnapshotRoute(to: &clientRouter)
        clientAPI.addClusterRoutes(to: &clientRouter)
        agent.addRoutes(to: &clientRouter)
        clientAPI.addConsoleRoute(to: &clientRouter, agent: agent)
        volumes.addClientRoutes(to: &clientRouter)
        let clientServer = HTTP2Server(
            configuration: .init(
                host: configuration.clientListen.host, port: configuration.clientListen.port, acceptsHTTP1: true),
            router: clientRouter, eventLoopGroup: raftLoop)

        _ = try await dataServer.start()
        _ = try await peerServer.start()
        await driver.start()
        do {
            _ = try await clientServer.start()
        } catch {
            await driver.stop()
            await peerServer.shutdown()
            await dataServer.shutdown()
            try? await dataLoops.shutdownGracefully()
            throw error
        }
        let registrar = Task { await NodeRegistrar(api: clientAPI, logger: logger).run() }
        await controllers.start()
        await heartbeats.start()
        let agentLoop = Task { await agent.run() }
        let volumesLoop = Task { await volumes.run() }
        let sourcesLoop = Task { await sources.run() }
        logger.info(
            "node \(configuration.nodeID) serving",
            metadata: ["client": "\(configuration.clientListen)", "peer": "\(configuration.peerListen)"])

        // Runs until SIGTERM/SIGINT (graceful shutdown), cancellation, the Raft loop failing, or
        // the leader saying this node was removed from the cluster (which stops it as a signal would).
        let failure = await withTaskGroup(of: (any Error)?.self) { group in
            group.addTask {
                try? await gracefulShutdown()
                return nil
            }
            group.addTask { await driver.waitForFailure() }
            group.addTask { [logger] in
                for await reason in heartbeats.removals {
                    logger.notice("\(Self.removalMessage(configuration, reason: reason))")
                    return nil
                }
                return nil  // the heartbeats stopped: the node is shutting down for another reason
            }
            let first = await group.next() ?? nil
            logger.info("node \(configuration.nodeID) shutting down")
            registrar.cancel()
            // Outgoing migrations end first (a paused guest resumes here unless the switchover
            // committed), then the guests stop (their journals are fsynced record by record), then the rest.
            sourcesLoop.cancel()
            await sourcesLoop.value
            agentLoop.cancel()
            await agentLoop.value
            volumesLoop.cancel()
            await volumesLoop.value
            await heartbeats.stop()
            await controllers.stop()
            clientAPI.lifecycle.stop()
            // Whichever came first, end the other: the client API stops accepting and finishes
            // what is in flight, the Raft loop stops (ending the failure wait; everything
            // acknowledged is already fsynced), and the wait for a signal is cancelled.
            await clientServer.shutdown()
            await driver.stop()
            group.cancelAll()
            return first
        }
        if let failure { logger.critical("node \(configuration.nodeID) cannot go on: \(failure)") }
        await peerServer.shutdown()
        await dataServer.shutdown()
        try? await dataLoops.shutdownGracefully()
        await writer.close()
        await transport.close()
        await forwarder.close()
        await volumeLink.close()
        logger.info("node \(configuration.nodeID) stopped")
        if let failure { throw failure }
    }

    /// What a removed node says as it stops: why, and how to bring the machine back.
    static func removalMessage(_ configuration: NodeConfiguration, reason: String) -> String {
        let id = configuration.nodeID.description
        let back =
            "To bring this machine back: empty that directory, run flotilla members add \(id) "
            + "--peer HOST:PORT --client HOST:PORT and start it with --join true (docs/operations.md, Replace a node)"
        return "\(id) was removed from the cluster: \(reason). It stops and takes no part any more; its data "
            + "directory \(configuration.dataDirectory) is left as it is. " + back
    }
}
