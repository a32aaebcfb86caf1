// Live migration of a real guest: QEMU's own pre-copy stream, carried by the nodes instead of a side
// TCP port, held at `pre-switchover` until the cluster has decided (committed) the switchover.
import Foundation
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix

/// Where a source QEMU's carried stream goes (in a cluster, an HTTP/2 request to the target
/// node). The source's socket is read on `eventLoop` and each chunk handed to `push` there, as it
/// comes, with no task or thread hop in between; `push` and `drained` are called on `eventLoop` only.
public protocol QEMUStreamOutlet: AnyObject, Sendable {
    var eventLoop: any EventLoop { get }
    /// Takes the next bytes; false: reading pauses until `drained()` completes. Throws when the
    /// far end is gone (the source's stream then breaks and its migration fails).
    func push(_ bytes: ByteBuffer) throws -> Bool
    /// Completes when the outlet takes more.
    func drained() -> EventLoopFuture<Void>
    /// The source closed its stream after its last byte: returns once the far end has them all.
    func finish() async throws
    /// The source's stream broke: the far end must not take it for complete.
    func abort()
}

/// QEMU's migration stream in and out of its processes through UNIX sockets, so a node can carry
/// it over its own connection to the target node (HTTP/2 in the cluster).
public enum QEMUMigrationStream {
    /// Source side: listens on `socketPath` on the outlet's event loop, runs `start` (which tells
    /// the source QEMU to migrate to `unix:socketPath`), takes QEMU's connection and pushes its
    /// bytes into `outlet` as they come, with backpressure (QEMU is read only as fast as the
    /// outlet takes the bytes); returns once QEMU closed the stream and the outlet finished.
    public static func carryFromSource(
        socketPath: String, outlet: any QEMUStreamOutlet, start: @Sendable () async throws -> Void
    ) async throws {
        let loop = outlet.eventLoop
        let ended = loop.makePromise(of: Void.self)
        let server = try await ServerBootstrap(group: loop)
            // Read only when the outlet takes more; reads of up to 1 MiB, not NIO's 64 KiB.
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(
                ChannelOptions.recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 64 << 10, initial: 256 << 10, maximum: 1 << 20)
            )
            .childChannelInitializer { [accepted = NIOLockedValueBox(false)] channel in
                // QEMU's connection is the only one taken.
                let first = accepted.withLockedValue { taken in
                    defer { taken = true }
                    return !taken
                }
                guard first else {
                    return channel.eventLoop.makeFailedFuture(QEMUGuestError("a second connection to \(socketPath)"))
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SourcePump(outlet: outlet, ended: ended))
                }
            }
            .bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true).get()
        do {
            try await start()
            // QEMU's connection is read until it ends; a cancelled migration stops reading it.
            try await withTaskCancellationHandler {
                try await ended.futureResult.get()
            } onCancel: {
                loop.execute { ended.fail(CancellationError()) }
            }
        } catch {
            outlet.abort()
            ended.fail(error)
            try? await server.close()
            try? FileManager.default.removeItem(atPath: socketPath)
            throw error
        }
        try? await server.close()
        try? FileManager.default.removeItem(atPath: socketPath)
        try await outlet.finish()
    }

    /// Reads the source QEMU's connection into an outlet, pausing while the outlet is full.
    private final class SourcePump: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        let outlet: any QEMUStreamOutlet
        let ended: EventLoopPromise<Void>
        /// The outlet is full: no read until it drains.
        var paused = false
        var failed = false

        init(outlet: any QEMUStreamOutlet, ended: EventLoopPromise<Void>) {
            self.outlet = outlet
            self.ended = ended
        }

        func handlerAdded(context: ChannelHandlerContext) {
            // Given up from outside (the migration was cancelled): stop reading QEMU.
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            self.ended.futureResult.whenFailure { _ in bound.value.close(promise: nil) }
        }

        func channelActive(context: ChannelHandlerContext) {
            context.read()
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !self.failed else { return }
            do {
                if try !self.outlet.push(self.unwrapInboundIn(data)) { self.paused = true }
            } catch {
                self.fail(context: context, error)
            }
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            guard !self.failed else { return }
            guard self.paused else {
                context.read()
                return
            }
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            self.outlet.drained().whenComplete { result in
                let (pump, context) = bound.value
                switch result {
                case .success:
                    pump.paused = false
                    context.read()
                case .failure(let error):
                    pump.fail(context: context, error)
                }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            // QEMU closed its end after its last byte (a read error comes through errorCaught first).
            self.ended.succeed()
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            self.fail(context: context, error)
        }

        private func fail(context: ChannelHandlerContext, _ error: any Error) {
            guard !self.failed else { return }
            self.failed = true
            self.outlet.abort()
            self.ended.fail(error)
            context.close(promise: nil)
        }
    }
}

/// How a migration of a real guest is to run.
public struct QEMUMigrationPolicy: Sendable, Hashable {
    /// QEMU's `downtime-limit`: it stops the guest for the last pages once they fit in this.
    public var downtimeLimit: Duration
    /// QEMU's `max-bandwidth` (bytes/s); QEMU 7.2's default (128 MiB/s) would cap a fast link.
    public var maxBandwidth: UInt64
    /// The longest wait between reads of the source's progress: QEMU's MIGRATION events (every
    /// change of the migration's status) wake the reader at once, this is the fallback.
    public var poll: Duration
    /// A copy not at pre-switchover by then is given up (and rolled back).
    public var timeLimit: Duration

    public init(
        downtimeLimit: Duration = .milliseconds(50), maxBandwidth: UInt64 = 10 << 30,
        poll: Duration = .milliseconds(50),
        timeLimit: Duration = .seconds(600)
    ) {
        self.downtimeLimit = downtimeLimit
        self.maxBandwidth = maxBandwidth
        self.poll = poll
        self.timeLimit = timeLimit
    }
}

/// What a finished (or refused) migration measured.
public struct QEMUMigrationResult: Sendable, Hashable {
    public enum Outcome: String, Sendable, Hashable {
        /// Switched over: the target runs the guest, the source is `postmigrate`.
        case completed
        /// The decision at `pre-switchover` was no: the source runs the guest on, the target is gone.
        case refused
    }

    public var outcome: Outcome
    /// From `migrate` to the target running (or the source resumed); from the source's half alone,
    /// to the source's end of the stream.
    public var totalTime: Duration
    /// QEMU's own downtime (the source stopped → the stream's end), which includes the decision.
    public var qemuDowntime: Duration?
    /// The guest's processors stopped (pre-switchover seen) → running again on the target, as seen
    /// from here: QEMU's figure plus the target's `cont` (set by `run`, where both halves are seen).
    public var pausedFor: Duration?
    /// When the source was seen stopped at pre-switchover.
    public var stoppedAt: ContinuousClock.Instant?
    /// The decision's own time (the commit, in a cluster).
    public var decisionTime: Duration
    /// Bytes QEMU sent, and how many passes over dirty memory it made.
    public var transferredBytes: UInt64?
    public var dirtySyncCount: UInt64?
}

/// Why a migration of a real guest failed, and where it stood.
public enum QEMUMigrationError: Error, CustomStringConvertible {
    /// It failed before the switchover was decided: rolled back (the source runs the guest on,
    /// the target process is killed).
    case beforeSwitchover(String)
    /// It failed after the decision said yes: nothing was rolled back. The caller acts on what its
    /// log says (the switchover committed: start the target again from its disk, or cont the
    /// source if the target never loaded — the caller knows which it may).
    case afterSwitchover(String)

    public var description: String {
        switch self {
        case .beforeSwitchover(let reason): "the migration failed before the switchover, the source runs on: \(reason)"
        case .afterSwitchover(let reason): "the migration failed after the switchover was decided: \(reason)"
        }
    }
}

/// One live migration of a real guest, in two halves that may run on two nodes: the target
/// (started with `incomingMigration` and `paused`) `listen`s on a UNIX socket; the source
/// (`runSource`) sends its stream through `carry` (the caller's transport: in a test a direct relay,
/// in a cluster an HTTP/2 request to the target node, which feeds the target's socket). At
/// `pre-switchover` — every page copied, the guest stopped — `decide` is asked (a cluster commits
/// the switchover through its log here); yes: the source finishes and the target, once it has the
/// whole stream, is `cont`ed (`resumeTarget`); no, or any failure before the decision: the source
/// runs the guest on (`QEMUMigrationError.beforeSwitchover`) and the target is to be killed; a
/// failure after a yes rolls nothing back (`.afterSwitchover`). `run` is both halves in one process.
public enum QEMULiveMigration {
    /// The file the target listens on for the stream, in its directory.
    public static func incomingSocket(of target: QEMUGuest) -> String { target.directory + "/migration-in.sock" }
    /// The file a source's node listens on for its QEMU's stream, in the source's directory.
    public static func outgoingSocket(of source: QEMUGuest) -> String { source.directory + "/migration-out.sock" }

    /// The target's half, before the copy: it listens on `incomingSocket(of:)` for the stream.
    public static func listen(target: QEMUGuest) async throws -> String {
        let socket = incomingSocket(of: target)
        try QEMUGuest.checkSocketPath(socket, "the migration's socket path")
        try? FileManager.default.removeItem(atPath: socket)
        try await listen(target: target, uri: "unix:" + socket)
        return socket
    }

    /// The target takes its stream from `uri`, and says when it is in (MIGRATION events).
    private static func listen(target: QEMUGuest, uri: String) async throws {
        try await target.execute(
            "migrate-set-capabilities", ["capabilities": .array([["capability": "events", "state": true]])])
        try await target.execute("migrate-incoming", ["uri": .string(uri)])
    }

    /// The target's half after a yes: waits until the whole stream is in (QEMU leaves `inmigrate`;
    /// its MIGRATION event says when, `poll` is the fallback), then runs the guest. Throws when the
    /// target's QEMU failed to load the stream (it exits).
    public static func resumeTarget(_ target: QEMUGuest, poll: Duration = .milliseconds(20), within: Duration)
        async throws
    {
        let deadline = ContinuousClock.now + within
        var seen = try await target.eventCount("MIGRATION")
        while try await target.runState() == "inmigrate" {
            guard ContinuousClock.now < deadline else {
                throw QEMUGuestError("the target still waits for the stream's end after \(within)")
            }
            seen = try await target.waitForEvent("MIGRATION", after: seen, timeout: poll)
        }
        try await target.resume()
    }

    /// Both halves in this process: the target listens, the source migrates through the outlet
    /// `open` makes (it gets the target's socket), and after a yes the target resumes. The target
    /// is killed when the answer is no or the migration fails before the decision.
    public static func run(
        source: QEMUGuest, target: QEMUGuest, policy: QEMUMigrationPolicy = QEMUMigrationPolicy(),
        open: @escaping @Sendable (_ targetSocket: String) async throws -> any QEMUStreamOutlet,
        decide: @escaping @Sendable () async -> Bool
    ) async throws -> QEMUMigrationResult {
        try await withTarget(target) { socket in
            try await runSource(
                source: source, policy: policy,
                migrate: .carried(socket: outgoingSocket(of: source), open: { try await open(socket) }),
                decide: decide)
        }
    }

    /// QEMU migrating straight to the target's `uri` (e.g. `tcp:127.0.0.1:PORT`), not through a
    /// node: the yardstick the carried stream is measured against, with the same hold at
    /// pre-switchover and the same decision. `sourceURI`, when given, is where the source sends
    /// instead (a relay in between that delivers to `uri`).
    public static func runDirect(
        source: QEMUGuest, target: QEMUGuest, uri: String, sourceURI: String? = nil,
        policy: QEMUMigrationPolicy = QEMUMigrationPolicy(), decide: @escaping @Sendable () async -> Bool
    ) async throws -> QEMUMigrationResult {
        try await withTarget(target, incoming: uri) { _ in
            try await runSource(source: source, policy: policy, migrate: .direct(sourceURI ?? uri), decide: decide)
        }
    }

    /// Runs a source half against a local target listening on `incoming` (its socket when nil),
    /// and finishes the target as the outcome says.
    private static func withTarget(
        _ target: QEMUGuest, incoming: String? = nil, source: (String) async throws -> QEMUMigrationResult
    ) async throws -> QEMUMigrationResult {
        let started = ContinuousClock.now
        let socket: String
        do {
            if let incoming {
                try await listen(target: target, uri: incoming)
                socket = incoming
            } else {
                socket = try await listen(target: target)
            }
        } catch {
            await target.kill()
            throw QEMUMigrationError.beforeSwitchover("the target does not listen: \(error)")
        }
        var result: QEMUMigrationResult
        do {
            result = try await source(socket)
        } catch {
            if case .beforeSwitchover = error as? QEMUMigrationError { await target.kill() }
            throw error
        }
        guard result.outcome == .completed else {
            await target.kill()
            return result
        }
        do {
            try await resumeTarget(target, within: .seconds(60))
        } catch {
            throw QEMUMigrationError.afterSwitchover("\(error)")
        }
        let resumed = ContinuousClock.now
        result.totalTime = resumed - started
        result.pausedFor = result.stoppedAt.map { resumed - $0 }
        return result
    }

    /// Where the source's stream goes.
    public enum SourceRoute: Sendable {
        /// To a UNIX socket at `socket` this process listens on, whose bytes go into the outlet
        /// `open` makes (before QEMU is told to migrate) as they come, with backpressure.
        case carried(socket: String, open: @Sendable () async throws -> any QEMUStreamOutlet)
        /// QEMU's own transport, to `uri`.
        case direct(String)
    }

    /// The source's half: migrates along `migrate`, holds at pre-switchover and asks `decide`; yes:
    /// finishes (the result is `completed` once the source has sent everything; the target is then
    /// to be resumed by its side); no: cancels and runs the guest on here (`refused`). A failure
    /// before the decision runs the guest on here too (`.beforeSwitchover`).
    public static func runSource(
        source: QEMUGuest, policy: QEMUMigrationPolicy = QEMUMigrationPolicy(), migrate route: SourceRoute,
        decide: @escaping @Sendable () async -> Bool
    ) async throws -> QEMUMigrationResult {
        let started = ContinuousClock.now
        let decidedYes = NIOLockedValueBox(false)
        do {
            try await prepare(source: source, policy: policy)
            switch route {
            case .direct(let uri):
                try await source.execute("migrate", ["uri": .string(uri)])
                return try await drive(
                    source: source, policy: policy, started: started, decidedYes: decidedYes, decide: decide)
            case .carried(let socket, let open):
                return try await carried(
                    source: source, socket: socket, policy: policy, started: started, decidedYes: decidedYes,
                    open: open, decide: decide)
            }
        } catch {
            throw await failed(error, source: source, decidedYes: decidedYes)
        }
    }

    private static func carried(
        source: QEMUGuest, socket sourceSocket: String, policy: QEMUMigrationPolicy,
        started: ContinuousClock.Instant, decidedYes: NIOLockedValueBox<Bool>,
        open: @escaping @Sendable () async throws -> any QEMUStreamOutlet,
        decide: @escaping @Sendable () async -> Bool
    ) async throws -> QEMUMigrationResult {
        try QEMUGuest.checkSocketPath(sourceSocket, "the migration's socket path")
        // `drive` reads the source's status only once `migrate` was sent: before, query-migrate
        // answers for the source's previous migration (a cancelled one would read as a failure).
        let (migrateSent, sent) = AsyncStream.makeStream(of: Void.self)
        // The stream and the decision run side by side. The stream's end decides nothing: a stream
        // that breaks makes the source's migration fail, which `drive` reports; one that ends is the
        // source closing it after the switchover; one cut because the answer was no is expected.
        enum Finished: Sendable {
            case carried((any Error)?)
            case drove(Result<QEMUMigrationResult, any Error>)
            case gaveUpWaiting
        }
        return try await withThrowingTaskGroup(of: Finished.self) { tasks in
            tasks.addTask {
                defer { sent.finish() }
                do {
                    try await QEMUMigrationStream.carryFromSource(
                        socketPath: sourceSocket, outlet: try await open(),
                        start: {
                            try await source.execute("migrate", ["uri": .string("unix:" + sourceSocket)])
                            sent.yield()
                        })
                    return .carried(nil)
                } catch {
                    return .carried(error)
                }
            }
            tasks.addTask {
                do {
                    var signal = migrateSent.makeAsyncIterator()
                    guard await signal.next() != nil else {
                        throw QEMUGuestError("the source was never told to migrate (its stream failed first)")
                    }
                    return .drove(
                        .success(
                            try await drive(
                                source: source, policy: policy, started: started, decidedYes: decidedYes,
                                decide: decide)))
                } catch {
                    return .drove(.failure(error))
                }
            }
            var carryError: (any Error)?
            // A completed migration's result waits for the stream to be all delivered: QEMU has
            // written its last bytes when it says completed, not the carrier.
            var completed: QEMUMigrationResult?
            var carriedAll = false
            while let finished = try await tasks.next() {
                switch finished {
                case .drove(let result):
                    let result = try result.get()
                    if result.outcome == .completed && !carriedAll {
                        completed = result
                        tasks.addTask {
                            try? await Task.sleep(for: .seconds(60))
                            return .gaveUpWaiting
                        }
                        continue
                    }
                    tasks.cancelAll()
                    return result
                case .carried(nil):
                    if let completed {
                        tasks.cancelAll()
                        return completed
                    }
                    carriedAll = true
                case .carried(let error?):
                    if completed != nil {
                        tasks.cancelAll()
                        throw QEMUMigrationError.afterSwitchover("the stream broke after the switchover: \(error)")
                    }
                    // The source should see its stream gone and fail; if it does not say so soon, stop.
                    carryError = error
                    tasks.addTask {
                        try? await Task.sleep(for: .seconds(30))
                        return .gaveUpWaiting
                    }
                case .gaveUpWaiting:
                    if completed != nil {
                        tasks.cancelAll()
                        throw QEMUMigrationError.afterSwitchover(
                            "the stream's last bytes were not delivered within 60 s")
                    }
                    // After a yes the stream has done its part: the outcome is drive's.
                    if decidedYes.withLockedValue({ $0 }) || carryError == nil { continue }
                    tasks.cancelAll()
                    throw carryError!
                }
            }
            throw QEMUGuestError("the migration ended without an outcome")
        }
    }

    /// Rolls a failed migration back on the source if its switchover was not decided; says which it was.
    private static func failed(_ error: any Error, source: QEMUGuest, decidedYes: NIOLockedValueBox<Bool>) async
        -> QEMUMigrationError
    {
        if let known = error as? QEMUMigrationError { return known }
        if decidedYes.withLockedValue({ $0 }) { return .afterSwitchover("\(error)") }
        _ = try? await source.execute("migrate_cancel")
        if let state = try? await source.runState(), state != "running" { _ = try? await source.resume() }
        return .beforeSwitchover("\(error)")
    }

    /// The source will stop at pre-switchover, under the policy.
    private static func prepare(source: QEMUGuest, policy: QEMUMigrationPolicy) async throws {
        try await source.execute(
            "migrate-set-capabilities",
            [
                "capabilities": .array([
                    ["capability": "pause-before-switchover", "state": true],
                    // A MIGRATION event at every change of status: no polling for pre-switchover.
                    ["capability": "events", "state": true],
                ])
            ])
        try await source.execute(
            "migrate-set-parameters",
            [
                "downtime-limit": .number(Double(policy.downtimeLimit.milliseconds)),
                "max-bandwidth": .number(Double(policy.maxBandwidth)),
            ])
    }

    private static func drive(
        source: QEMUGuest, policy: QEMUMigrationPolicy, started: ContinuousClock.Instant,
        decidedYes: NIOLockedValueBox<Bool>, decide: @Sendable () async -> Bool
    ) async throws -> QEMUMigrationResult {
        let deadline = started + policy.timeLimit
        var status = try await waitForStatus(source, in: ["pre-switchover"], until: deadline, policy: policy)
        let stopped = ContinuousClock.now
        let go = await decide()
        let decisionTime = ContinuousClock.now - stopped
        guard go else {
            try await source.execute("migrate_cancel")
            _ = try await waitForStatus(
                source, in: ["cancelled"], until: ContinuousClock.now + .seconds(30), policy: policy)
            if try await source.runState() != "running" { try await source.resume() }
            return QEMUMigrationResult(
                outcome: .refused, totalTime: ContinuousClock.now - started, decisionTime: decisionTime)
        }
        decidedYes.withLockedValue { $0 = true }
        try await source.execute("migrate-continue", ["state": "pre-switchover"])
        status = try await waitForStatus(
            source, in: ["completed"], until: ContinuousClock.now + .seconds(60), policy: policy)
        return QEMUMigrationResult(
            outcome: .completed, totalTime: ContinuousClock.now - started,
            qemuDowntime: status["downtime"]?.count.map { .milliseconds(Int64($0)) }, stoppedAt: stopped,
            decisionTime: decisionTime, transferredBytes: status["ram"]?["transferred"]?.count,
            dirtySyncCount: status["ram"]?["dirty-sync-count"]?.count)
    }

    /// Reads `query-migrate` until its status is one of `wanted`, again at each MIGRATION event
    /// (at the latest after `policy.poll`); a failed or cancelled migration (when not wanted) is an
    /// error with QEMU's reason.
    private static func waitForStatus(
        _ source: QEMUGuest, in wanted: Set<String>, until deadline: ContinuousClock.Instant,
        policy: QEMUMigrationPolicy
    ) async throws -> QMPValue {
        // Counted before each read: an event while it is read wakes the wait after it at once.
        var seen = try await source.eventCount("MIGRATION")
        while true {
            let answer = try await source.execute("query-migrate")
            let status = answer["status"]?.string ?? "none"
            // QEMU sets `completed` (and sends its event) before it works out the migration's
            // times: until then it answers a total time and downtime of 0. Read again shortly.
            if status == "completed" && wanted.contains(status) && (answer["total-time"]?.count ?? 0) == 0
                && ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(1))
                continue
            }
            if wanted.contains(status) { return answer }
            if status == "failed" || status == "cancelled" {
                throw QEMUGuestError(
                    "the migration \(status)" + (answer["error-desc"]?.string.map { ": \($0)" } ?? ""))
            }
            let now = ContinuousClock.now
            guard now < deadline else {
                throw QEMUGuestError("the migration is still \(status) at its time limit")
            }
            seen = try await source.waitForEvent("MIGRATION", after: seen, timeout: min(policy.poll, deadline - now))
        }
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
