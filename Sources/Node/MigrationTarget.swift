// A live migration's target on this node: the prepare and discard routes on the peer port, and the announcement once the guest runs here.
import ClusterModel
import ClusterState
import HTTP2
import LiveMigration
import Logging
import NIOCore

extension Router {
    /// The target's peer routes of a live migration (docs/live-migration.md).
    ///
    /// `prepare` waits (up to 5 s) until this node has applied the migration, then has the agent
    /// reserve the VM's memory (reclaiming from other VMs above their minimums if need be), makes
    /// the shell — for a QEMU guest, starts its QEMU paused and listening, and expects its stream —
    /// and answers the port of the data listener (and the stream's token). `discard` lets them go.
    mutating func addMigrationPeerRoutes(
        local: NodeID, agent: NodeAgent, incoming: IncomingMigrations, streams: QEMUStreamReceiver,
        readState: @escaping @Sendable () async -> ClusterState, dataPort: @escaping @Sendable () -> Int?
    ) {
        post("/v1/internal/migrations/{id}/prepare") { request, parameters in
            let id = try Self.migrationID(parameters)
            let prepare: MigrationWire.Prepare
            do {
                prepare = try MigrationWire.Prepare(decoding: Array(buffer: try await request.body.collect(upTo: 1024)))
            } catch {
                throw HTTPError(status: 400, error: "bad_request_body", detail: "\(error)")
            }
            var record: MigrationRecord?
            var vm: VMRecord?
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(5)
            repeat {
                let state = await readState()
                record = state.migrations[id]
                vm = state.vms[prepare.vm]
                if record != nil { break }
                try? await Task.sleep(for: .milliseconds(20))
            } while clock.now < deadline
            guard let record, let vm, record.vm == prepare.vm, record.target == local, record.phase.isRunning else {
                throw HTTPError(
                    status: 409, error: "not_a_migration_here",
                    detail: "\(local) knows no running migration \(id) of \(prepare.vm) to it"
                        + (record.map { " (it is \($0.phase), to \($0.target))" } ?? ""))
            }
            guard let port = dataPort() else {
                throw HTTPError(
                    status: 503, error: "not_ready", detail: "\(local)'s migration data listener is not open")
            }
            if let problem = await agent.reserveIncoming(
                id, vm: prepare.vm, settings: vm.memory, bytes: prepare.memoryBytes)
            {
                throw HTTPError(status: 409, error: "insufficient_memory", detail: problem)
            }
            guard case .qemu = vm.driver else {
                incoming.prepare(id, vm: prepare.vm, memoryBytes: prepare.memoryBytes)
                return Self.prepared(MigrationWire.Prepared(dataPort: port))
            }
            do {
                let socket = try await agent.startIncomingQEMU(id, vm: vm, bootEpoch: prepare.bootEpoch ?? vm.epoch)
                return Self.prepared(
                    MigrationWire.Prepared(dataPort: port, streamToken: streams.expect(id, socketPath: socket)))
            } catch {
                await agent.releaseIncoming(id)
                throw HTTPError(
                    status: 409, error: "qemu_failed", detail: "\(local) could not start \(vm.id)'s QEMU: \(error)")
            }
        }
        delete("/v1/internal/migrations/{id}") { _, parameters in
            let id = try Self.migrationID(parameters)
            streams.forget(id)
            await agent.releaseIncoming(id)
            return HTTPResponse(status: 204)
        }
    }

    private static func prepared(_ answer: MigrationWire.Prepared) -> HTTPResponse {
        HTTPResponse(status: 200, headers: ["content-type": "text/plain"], body: .string(answer.text))
    }
}

/// Records a migration's final stats once its guest runs on this node (the target): the downtime
/// from the source's pause to the resume here, the whole time, and with them the announcement.
struct MigrationAnnouncer: Sendable {
    let writer: ClusterWriter
    let logger: Logger

    func announce(_ migration: MigrationID, _ finish: MigrationWire.Finish, resumedAt: UInt64) {
        var stats = finish.stats
        stats.downtimeMicroseconds = resumedAt >= finish.pausedAt ? resumedAt - finish.pausedAt : 0
        stats.totalMilliseconds = resumedAt >= finish.startedAt ? (resumedAt - finish.startedAt) / 1000 : 0
        logger.info(
            "\(migration): the guest runs here; announced",
            metadata: [
                "downtime-us": "\(stats.downtimeMicroseconds!)", "total-ms": "\(stats.totalMilliseconds!)",
                "bytes": "\(stats.totalBytes)", "rounds": "\(stats.rounds.count)",
            ])
        Task {
            if case .unknown(let why) = await writer.propose(.recordMigrationStats(migration, stats)) {
                logger.warning("\(migration): its final stats may not be recorded: \(why)")
            }
        }
    }
}

/// Runs the live migrations this node is the source of: each one the state says is preparing
/// here gets a `MigrationSource`, once per process. A migration found copying or paused with no
/// source running it (this process restarted meanwhile) has lost its copy: it is ended as failed.
actor MigrationSources {
    private let local: NodeID
    private let agent: NodeAgent
    private let writer: ClusterWriter
    private let readState: @Sendable () async -> ClusterState
    private let changes: StateChanges
    private let eventLoops: any EventLoopGroup
    private let logger: Logger
    private var running: [MigrationID: Task<Void, Never>] = [:]
    /// Migrations this process ran or gave up, so none is started twice.
    private var handled: Set<MigrationID> = []

    init(
        local: NodeID, agent: NodeAgent, writer: ClusterWriter,
        readState: @escaping @Sendable () async -> ClusterState, changes: StateChanges,
        eventLoops: any EventLoopGroup, logger: Logger
    ) {
        self.eventLoops = eventLoops
        self.local = local
        self.agent = agent
        self.writer = writer
        self.readState = readState
        self.changes = changes
        self.logger = logger
    }

    /// Follows the applied state until cancelled; then cancels the migrations still running.
    func run() async {
        await changes.follow(every: .milliseconds(500)) { await self.pass() }
        for task in running.values { task.cancel() }
        for task in running.values { await task.value }
    }

    private func pass() async {
        let state = await readState()
        for migration in state.migrations.values.sorted(by: { $0.id < $1.id })
        where migration.source == local && migration.phase.isRunning && !handled.contains(migration.id) {
            handled.insert(migration.id)
            if migration.phase == .preparing {
                let source = MigrationSource(
                    migration: migration, local: local, agent: agent, writer: writer, readState: readState,
                    eventLoops: eventLoops, logger: logger)
                running[migration.id] = Task {
                    await source.run()
                    self.ended(migration.id)
                }
            } else {
                let reason =
                    "\(local) restarted during the copy (it was \(migration.phase)); \(migration.vm) stays on \(local)"
                logger.warning("\(migration.id) failed: \(reason)")
                Task { _ = await writer.propose(.abortMigration(migration.id, outcome: .failed, reason: reason)) }
            }
        }
        // Ids of migrations the state no longer keeps are not needed to tell them apart.
        handled.formIntersection(state.migrations.keys)
    }

    private func ended(_ id: MigrationID) { running[id] = nil }
}
