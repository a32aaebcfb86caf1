// A live migration as its source runs it: prepare the target, copy in rounds, pause, last copy, switchover through the log.
import ClusterModel
import ClusterState
import Foundation
import Guests
import HTTP2
import LiveMigration
import Logging
import NIOCore
import QEMU
import Synchronization

/// One outgoing live migration, from `preparing` to its end (docs/live-migration.md).
///
/// 1. Takes the guest from the agent (its memory stays as it is while the copy runs) and asks the
///    target, on its peer port, to reserve the memory and make the shell; commits `copying`.
/// 2. Copies what the pre-copy planner says, round by round, over the target's data listener,
///    and records each round's stats through the log as it ends.
/// 3. Pauses the guest, commits `paused` while it sends the last pages, then the device state and
///    the image's checksum, which the target verifies.
/// 4. Proposes the switchover. Whatever happens, the log decides: committed, the target runs the
///    VM (this node's agent stops the paused guest); refused or aborted, the guest resumes here;
///    unknown (the leader was lost with the answer), this source asks the log until it knows —
///    proposing an abort, which can only commit if the switchover did not.
struct MigrationSource {
    let migration: MigrationRecord
    let local: NodeID
    let agent: NodeAgent
    let writer: ClusterWriter
    let readState: @Sendable () async -> ClusterState
    /// The event loops its connections run on: the migration data listener's, not the Raft loop.
    let eventLoops: any EventLoopGroup
    let logger: Logger

    /// Why the copy stopped: the source gives up (and says why through the log), or the log
    /// already ended the migration (cancelled, a node went down) and there is nothing to propose.
    private enum Stop: Error {
        case failed(String)
        case ended(String)
    }

    private var id: MigrationID { migration.id }
    private var vm: VMID { migration.vm }

    func run() async {
        let startedAt = WallClock.microseconds()
        // A VM may be asked to move on while its guest is still starting here (a real guest that
        // just arrived runs once QEMU has the whole stream): the source waits for it, a while.
        var taken = await agent.migrating(vm)
        let patience = ContinuousClock.now + Self.startPatience
        while taken == nil, ContinuousClock.now < patience, await isActive(), !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
            taken = await agent.migrating(vm)
        }
        guard let taken else {
            await giveUp(
                "\(vm) does not run on \(local) (its guest did not start within \(Self.startPatience))", stats: nil)
            return
        }
        let guest: Guest
        switch taken.guest {
        case .simulated(let simulated): guest = simulated
        case .qemu(let real, let qemu, let bootEpoch):
            await runQEMU(real, qemu, bootEpoch: bootEpoch, assigned: taken.assigned, startedAt: startedAt)
            return
        }
        var copy = Copy(id: id, startedAt: startedAt)
        var pausedAt: UInt64?
        let peer = PeerClients(eventLoops: eventLoops)
        defer { Task { await peer.close() } }
        do {
            let state = await readState()
            guard let target = state.nodes[migration.target], let record = state.vms[vm] else {
                throw Stop.ended("\(migration.target) or \(vm) is gone from the state")
            }
            var policy = Self.policy(state.settings, autoConverge: record.autoConverge)
            let streams = Setting.wholeNumber(Setting.migrationStreamsKey, in: state.settings)
            let limit = BandwidthLimit(
                bytesPerSecond: UInt64(Setting.wholeNumber(Setting.migrationBandwidthKey, in: state.settings)) << 20)
            let memoryBytes = await guest.migrationState.memoryBytes
            // 1. The target's shell.
            let dataPort = try await prepare(
                peer.client(target.addresses.peer), MigrationWire.Prepare(vm: vm, memoryBytes: memoryBytes)
            ).dataPort
            let sender = PageSender(
                client: peer.client(Endpoint(host: target.addresses.peer.host, port: dataPort)), migration: id,
                streams: streams)
            let committing = ContinuousClock.now
            try await commit(.advanceMigration(id, to: .copying))
            // What the switchover adds to the last copy: a commit like this one, the two checksums
            // of the image and a margin. The planner aims the last copy at what is left of the target.
            policy.downtimeTarget = Self.lastCopyTarget(
                policy.downtimeTarget, commit: ContinuousClock.now - committing, memoryBytes: memoryBytes)
            logger.info("\(id): \(target.id) made the shell of \(vm) (\(ByteCount(memoryBytes))); copying")
            let reporter = StatsReporter(id: id, writer: writer)
            await reporter.report(copy.stats(memoryBytes: memoryBytes))
            // 2. The rounds.
            try await copyRounds(
                guest, sender: sender, limit: limit, policy: policy, copy: &copy, memoryBytes: memoryBytes,
                reporter: reporter)
            // 3. Paused: the last pages, the device state, the target's check.
            await guest.pause()
            pausedAt = WallClock.microseconds()
            let advanced = Task { () async -> Stop? in
                do throws(Stop) {
                    try await commit(.advanceMigration(id, to: .paused))
                    return nil
                } catch {
                    return error
                }
            }
            let last = await guest.takeDirtyPages()
            // The paused image's checksum is computed while its last pages go out.
            async let paused = guest.migrationState
            copy.add(frames: last.count, bytes: try await send(last, with: sender, within: .seconds(30)))
            let device = await paused
            let finish = MigrationWire.Finish(
                pages: copy.frames, checksum: device.checksum, memoryBytes: device.memoryBytes,
                workload: device.activity.workload,
                elapsedNanoseconds: UInt64(clamping: device.activity.elapsed.nanoseconds),
                heldPages: device.activity.heldPages, pausedAt: pausedAt!, startedAt: startedAt,
                stats: copy.stats(memoryBytes: memoryBytes))
            try await verify(finish, with: sender)
            if let stop = await advanced.value { throw stop }
            if let hold = Self.testSwitchoverDelay {
                logger.warning(
                    "\(id): holding the paused guest \(hold) before the switchover (\(Self.testDelayVariable))")
                try? await Task.sleep(for: hold)
            }
            // 4. The switchover, decided by the log.
            if await switchOver() {
                logger.info(
                    "\(id): switched over; \(vm) runs on \(migration.target)",
                    metadata: ["rounds": "\(copy.rounds.count)", "bytes": "\(copy.totalBytes)"])
                await agent.release(migrating: vm)
                return
            }
            throw Stop.ended("the switchover did not commit")
        } catch {
            let stop = error as? Stop ?? .failed("\(error)")
            let state = await readState()
            await guest.throttle(percent: 0)
            var downtime: UInt64?
            if await guest.isPaused {
                do throws(JournalError) {
                    try await guest.resume()
                    downtime = pausedAt.map { WallClock.microseconds() - $0 }
                } catch {
                    logger.error("\(id): \(vm) could not resume on \(local): \(error)")
                }
            }
            await agent.release(migrating: vm)
            var stats = copy.stats(memoryBytes: await guest.migrationState.memoryBytes)
            stats.downtimeMicroseconds = downtime
            stats.totalMilliseconds = (WallClock.microseconds() - startedAt) / 1000
            await rolledBack(stop, stats: stats, peer: peer, in: state)
        }
    }

    /// The migration ended without a switchover and the guest runs on here: the log hears why
    /// (and the stats), the target lets its shell or its QEMU go.
    private func rolledBack(_ stop: Stop, stats: MigrationStats, peer: PeerClients, in state: ClusterState) async {
        switch stop {
        case .failed(let reason):
            await giveUp(reason, stats: stats)
        case .ended(let reason):
            logger.info("\(id) ended: \(reason); \(vm) stays on \(local)")
            _ = await writer.propose(.recordMigrationStats(id, stats), patience: .seconds(5))
        }
        if let address = state.nodes[migration.target]?.addresses.peer {
            _ = try? await peer.client(address).send(
                HTTPRequest(method: .delete, path: MigrationWire.discardPath(id), headers: [:], body: .empty),
                timeout: .seconds(2))
        }
    }

    /// A real guest's migration: the target node starts its QEMU paused and listening; this node
    /// carries the source QEMU's stream to it over HTTP/2; at pre-switchover (every page copied,
    /// the guest stopped) `paused` and then the switchover are committed; yes: QEMU finishes and the
    /// target node, having applied the switchover, resumes the guest there; no, or any failure
    /// before it: the guest runs on here and the target's QEMU is let go (docs/qemu.md).
    private func runQEMU(
        _ real: QEMUAgentGuest, _ qemu: QEMUGuest, bootEpoch: Epoch, assigned: UInt64, startedAt: UInt64
    ) async {
        let peer = PeerClients(eventLoops: eventLoops)
        defer { Task { await peer.close() } }
        var stats = MigrationStats(rounds: [], memoryBytes: assigned, totalBytes: 0)
        do {
            let state = await readState()
            guard let target = state.nodes[migration.target] else {
                throw Stop.ended("\(migration.target) is gone from the state")
            }
            let prepared = try await prepare(
                peer.client(target.addresses.peer),
                MigrationWire.Prepare(vm: vm, memoryBytes: assigned, bootEpoch: bootEpoch))
            guard let token = prepared.streamToken else {
                throw Stop.failed(
                    "\(migration.target) made a shell for a simulated guest, not a QEMU to take the stream")
            }
            try await commit(.advanceMigration(id, to: .copying))
            logger.info("\(id): \(target.id) listens for \(vm)'s QEMU stream (\(ByteCount(assigned))); copying")
            let policy = QEMUMigrationPolicy(
                downtimeLimit: .milliseconds(Setting.wholeNumber(Setting.migrationDowntimeKey, in: state.settings)),
                maxBandwidth: Self.qemuBandwidth(state.settings),
                timeLimit: .seconds(Setting.wholeNumber(Setting.migrationTimeLimitKey, in: state.settings)))
            let data = peer.client(Endpoint(host: target.addresses.peer.host, port: prepared.dataPort))
            let refusal = Mutex<Stop?>(nil)
            let result = try await QEMULiveMigration.runSource(
                source: qemu, policy: policy,
                migrate: .carried(
                    socket: QEMULiveMigration.outgoingSocket(of: qemu),
                    open: { [id] in
                        try await QEMUStreamSender.open(
                            migration: id, token: token, to: data, timeout: policy.timeLimit + .seconds(60))
                    }),
                decide: {
                    // Every page copied, the guest stopped: the log decides.
                    do throws(Stop) {
                        try await checkStillActive()
                        try await commit(.advanceMigration(id, to: .paused))
                    } catch {
                        refusal.withLock { $0 = error }
                        return false
                    }
                    if let hold = Self.testSwitchoverDelay {
                        logger.warning(
                            "\(id): holding the paused guest \(hold) before the switchover (\(Self.testDelayVariable))")
                        try? await Task.sleep(for: hold)
                    }
                    return await switchOver()
                })
            stats.totalBytes = result.transferredBytes ?? 0
            stats.totalMilliseconds = (WallClock.microseconds() - startedAt) / 1000
            guard result.outcome == .completed else {
                throw refusal.withLock { $0 } ?? Stop.ended("the switchover did not commit")
            }
            // QEMU's downtime runs from the guest's stop to the stream's end: the commit is in it.
            stats.downtimeMicroseconds = result.qemuDowntime.map { UInt64(clamping: $0.nanoseconds / 1000) }
            await handedOver(real, stats: stats, detail: "bytes \(stats.totalBytes)")
        } catch QEMUMigrationError.afterSwitchover(let reason) {
            // The log said yes: the target runs the VM (from the stream, or from its disk when the
            // stream broke); this guest must not run on.
            logger.error("\(id): after the switchover: \(reason); \(vm) runs on \(migration.target)")
            stats.totalMilliseconds = (WallClock.microseconds() - startedAt) / 1000
            await handedOver(real, stats: stats, detail: "stream broken after the switchover")
        } catch {
            let stop = error as? Stop ?? .failed("\(error)")
            await real.endOutgoing(switchedOver: false)
            await agent.release(migrating: vm)
            stats.totalMilliseconds = (WallClock.microseconds() - startedAt) / 1000
            await rolledBack(stop, stats: stats, peer: peer, in: await readState())
        }
    }

    /// After a committed switchover of a real guest: the stats go to the log; the QEMU here only
    /// waits for the agent to stop it.
    private func handedOver(_ real: QEMUAgentGuest, stats: MigrationStats, detail: String) async {
        await real.endOutgoing(switchedOver: true)
        await agent.release(migrating: vm)
        logger.info("\(id): switched over; \(vm) runs on \(migration.target)", metadata: ["detail": "\(detail)"])
        if case .unknown(let why) = await writer.propose(.recordMigrationStats(id, stats)) {
            logger.warning("\(id): its final stats may not be recorded: \(why)")
        }
    }

    /// QEMU's `max-bandwidth` from `migration.max-bandwidth-mib-s` (0: no cap of ours, which QEMU
    /// takes as 10 GiB/s, far above what a node carries).
    static func qemuBandwidth(_ settings: [String: String]) -> UInt64 {
        let mib = UInt64(Setting.wholeNumber(Setting.migrationBandwidthKey, in: settings))
        return mib == 0 ? 10 << 30 : mib << 20
    }

    /// How long a source waits for its guest to run before it gives the migration up.
    static let startPatience = Duration.seconds(30)

    /// For process tests only: a wait between the verified last copy (the guest paused, `paused`
    /// committed) and the switchover's proposal, so a test can kill the leader or cut this node off
    /// in that window without guessing when it comes. Unset (always, outside tests): no wait.
    static let testDelayVariable = "FLOTILLA_TEST_SWITCHOVER_DELAY_MS"
    static let testSwitchoverDelay: Duration? = ProcessInfo.processInfo.environment[testDelayVariable]
        .flatMap { Int($0) }.map { .milliseconds($0) }

    /// What the switchover costs beyond the last pages, per GiB of memory: the source's and the
    /// target's checksum of the image (about 2.5 ms each per GiB in a release build, measured in
    /// docs/benchmarks.md).
    static let checksumCostPerGiB = Duration.microseconds(3000)

    /// The share of what is left of the downtime target that the planner may plan the last copy
    /// for. The last copy runs slower than the rounds whose rate the planner measured: the source
    /// checksums the paused image meanwhile and nothing else is overlapped, and on a busy machine
    /// its pages came out up to 1.5× their estimate (docs/benchmarks.md, 1 GiB at 10 %); a copy
    /// planned for half the budget still fits it at twice its estimate.
    static let lastCopyShare = 0.5

    /// The downtime the last copy may be planned for so that the whole pause fits `target`: half
    /// of the target less a commit as long as `commit`, the two checksums and 2 ms; never below a
    /// fifth of `target`.
    static func lastCopyTarget(_ target: Duration, commit: Duration, memoryBytes: UInt64) -> Duration {
        let checksums = checksumCostPerGiB * (2 * Double(memoryBytes) / Double(1 << 30))
        let reserve = commit + checksums + .milliseconds(2)
        return max(target / 5, (target - reserve) * lastCopyShare)
    }

    /// The planner's knobs from the cluster's settings and the VM's auto-converge.
    static func policy(_ settings: [String: String], autoConverge: Bool) -> PreCopyPolicy {
        PreCopyPolicy(
            downtimeTarget: .milliseconds(Setting.wholeNumber(Setting.migrationDowntimeKey, in: settings)),
            maxRounds: Setting.wholeNumber(Setting.migrationRoundsKey, in: settings),
            timeLimit: .seconds(Setting.wholeNumber(Setting.migrationTimeLimitKey, in: settings)),
            autoConverge: autoConverge)
    }

    // MARK: The steps

    private func prepare(_ client: HTTP2Client, _ prepare: MigrationWire.Prepare) async throws(Stop)
        -> MigrationWire.Prepared
    {
        let request = HTTPRequest(
            method: .post, path: MigrationWire.preparePath(id), headers: ["content-type": "application/octet-stream"],
            body: .buffer(ByteBuffer(bytes: prepare.encoded)))
        let answer: String
        let status: Int
        do {
            let response = try await client.send(request, timeout: .seconds(10))
            status = response.status
            answer = String(buffer: try await response.body.collect(upTo: 64 << 10))
        } catch {
            throw .failed("\(migration.target) did not answer the prepare: \(error)")
        }
        guard status == 200, let prepared = MigrationWire.Prepared(text: answer) else {
            throw .failed("\(migration.target) could not make the shell: \(Self.detail(of: answer))")
        }
        return prepared
    }

    private func copyRounds(
        _ guest: Guest, sender: PageSender, limit: BandwidthLimit?, policy: PreCopyPolicy, copy: inout Copy,
        memoryBytes: UInt64, reporter: StatsReporter
    ) async throws(Stop) {
        let clock = ContinuousClock()
        let origin = clock.now
        var planner = PreCopyPlanner(policy: policy)
        var action = planner.start(now: clock.now - origin)
        while true {
            switch action {
            case .copy(let round, let throttle):
                if Task.isCancelled { throw .failed("\(local) is shutting down") }
                try await checkStillActive()
                await guest.throttle(percent: throttle)
                let pages = round == 1 ? await guest.beginCopy() : await guest.takeDirtyPages()
                let left = (planner.deadline ?? .seconds(3600)) - (clock.now - origin)
                let sent: UInt64
                do {
                    sent = try await send(pages, with: sender, limit: limit, within: max(left, .milliseconds(1)))
                } catch .failed(let reason) where clock.now - origin >= planner.deadline ?? .seconds(3600) {
                    throw .failed("round \(round) did not end within the time limit: \(reason)")
                }
                copy.add(frames: pages.count, bytes: sent)
                let dirty = UInt64(await guest.dirtyPageCount) * UInt64(GuestMemory.pageSize)
                action = planner.roundFinished(now: clock.now - origin, bytesSent: sent, dirtyBytes: dirty)
                copy.rounds = planner.rounds
                logger.debug(
                    "\(id) round \(round)",
                    metadata: ["pages": "\(pages.count)", "dirty": "\(dirty)", "throttle": "\(throttle)"])
                await reporter.report(copy.stats(memoryBytes: memoryBytes))
            case .pauseAndFinish:
                return
            case .abort(let reason):
                throw .failed(reason)
            }
        }
    }

    /// Sends `pages` within `time`; paced to `limit` in pre-copy rounds, never in the paused last copy.
    private func send(
        _ pages: [(page: Int, word: UInt64)], with sender: PageSender, limit: BandwidthLimit? = nil,
        within time: Duration
    ) async throws(Stop) -> UInt64 {
        do {
            return try await sender.send(pages, deadline: .now() + TimeAmount(time), limit: limit)
        } catch {
            throw .failed("pages to \(migration.target): \(error)")
        }
    }

    private func verify(_ finish: MigrationWire.Finish, with sender: PageSender) async throws(Stop) {
        let request = HTTPRequest(
            method: .post, path: MigrationWire.finishPath(id), headers: ["content-type": "application/octet-stream"],
            body: .buffer(ByteBuffer(bytes: finish.encoded)))
        do {
            let response = try await sender.client.send(request, timeout: .seconds(30))
            let body = String(buffer: try await response.body.collect(upTo: 64 << 10))
            guard response.status == 204 else {
                throw Stop.failed("\(migration.target) did not take the copy: \(Self.detail(of: body))")
            }
        } catch let stop as Stop {
            throw stop
        } catch {
            throw .failed("\(migration.target) did not answer the last copy: \(error)")
        }
    }

    /// Proposes the switchover; true once the log says it committed, false once the log says it
    /// did not (then the guest may resume here). Never guesses: an unknown outcome is asked again.
    private func switchOver() async -> Bool {
        switch await writer.propose(.finishMigration(id), patience: .seconds(10)) {
        case .applied: return true
        case .rejected(let rejection):
            if await isActive() {
                _ = await writer.propose(
                    .abortMigration(id, outcome: .failed, reason: "the switchover was refused: \(rejection)"))
            }
        case .unknown(let why):
            logger.warning("\(id): the switchover's outcome is unknown (\(why)); asking the log")
        }
        while !Task.isCancelled {
            if let record = await readState().migrations[id], !record.phase.isActive {
                return record.phase == .completed
            }
            // Still paused as far as this node knows: an abort commits only if the switchover did not.
            if case .applied = await writer.propose(
                .abortMigration(id, outcome: .failed, reason: "the switchover's commit was not confirmed"),
                patience: .seconds(2))
            {
                return false
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    // MARK: Through the log

    private func commit(_ command: ClusterCommand) async throws(Stop) {
        switch await writer.propose(command) {
        case .applied: return
        case .rejected(let rejection):
            if !(await isActive()) { throw .ended("the log ended it: \(rejection)") }
            throw .failed("\(command.kind) was refused: \(rejection)")
        case .unknown(let why):
            throw .failed("\(command.kind) is not known to have committed: \(why)")
        }
    }

    private func isActive() async -> Bool { await readState().migrations[id]?.phase.isActive == true }

    private func checkStillActive() async throws(Stop) {
        guard let record = await readState().migrations[id] else { throw .ended("\(id) is gone from the state") }
        guard record.phase.isActive else {
            throw .ended("it is \(record.phase)\(record.reason.map { ": \($0)" } ?? "")")
        }
    }

    /// Ends the migration as failed, with the reason and the stats so far; the VM stays here.
    private func giveUp(_ reason: String, stats: MigrationStats?) async {
        logger.warning("\(id) failed: \(reason); \(vm) stays on \(local)")
        _ = await writer.propose(.abortMigration(id, outcome: .failed, reason: reason))
        if let stats { _ = await writer.propose(.recordMigrationStats(id, stats), patience: .seconds(5)) }
    }

    /// The `detail` of a JSON error body, or the body.
    static func detail(of body: String) -> String {
        struct Problem: Decodable { var detail: String }
        return (try? JSONDecoder().decode(Problem.self, from: Data(body.utf8)))?.detail ?? body
    }
}

/// What a migration's copy has sent so far.
private struct Copy {
    let id: MigrationID
    let startedAt: UInt64
    var frames: UInt64 = 0
    var totalBytes: UInt64 = 0
    var rounds: [PreCopyRound] = []

    mutating func add(frames count: Int, bytes: UInt64) {
        frames += UInt64(count)
        totalBytes += bytes
    }

    func stats(memoryBytes: UInt64) -> MigrationStats {
        MigrationStats(
            rounds: rounds.prefix(MigrationStats.maxRounds).map {
                MigrationStats.Round(
                    bytes: $0.bytesSent, milliseconds: UInt64(clamping: $0.duration.nanoseconds / 1_000_000),
                    dirtyBytes: $0.dirtyBytes, throttlePercent: $0.throttlePercent)
            }, memoryBytes: memoryBytes, totalBytes: totalBytes)
    }
}

/// Records a migration's stats through the log as rounds end, the latest only: a round that ends
/// while the previous stats are being proposed replaces them.
private actor StatsReporter {
    let id: MigrationID
    let writer: ClusterWriter
    private var latest: MigrationStats?
    private var sending = false

    init(id: MigrationID, writer: ClusterWriter) {
        self.id = id
        self.writer = writer
    }

    func report(_ stats: MigrationStats) {
        latest = stats
        guard !sending else { return }
        sending = true
        Task { await drain() }
    }

    private func drain() async {
        while let stats = latest {
            latest = nil
            _ = await writer.propose(.recordMigrationStats(id, stats), patience: .seconds(2))
        }
        sending = false
    }
}

/// The HTTP/2 clients of one migration (the target's peer port and data listener), closed at its end.
private final class PeerClients: Sendable {
    private let clients = Mutex<[Endpoint: HTTP2Client]>([:])
    private let eventLoops: any EventLoopGroup

    init(eventLoops: any EventLoopGroup) { self.eventLoops = eventLoops }

    func client(_ address: Endpoint) -> HTTP2Client {
        clients.withLock { clients in
            if let client = clients[address] { return client }
            let client = HTTP2Client(
                configuration: .init(host: address.host, port: address.port), eventLoopGroup: eventLoops)
            clients[address] = client
            return client
        }
    }

    func close() async {
        for client in clients.withLock({ $0.values }) { await client.close() }
    }
}

extension Duration {
    /// Whole nanoseconds, saturating.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? (seconds < 0 ? .min : .max) : whole &+ attoseconds / 1_000_000_000
    }
}
