// Live migration of a real guest: QEMU's own pre-copy stream, carried by the nodes instead of a side
// TCP port, held at `pre-switchover` until the cluster has decided (committed) the switchover.
import Foundation
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix

/// QEMU's migration stream in and out of its processes through UNIX sockets, so a node can carry
/// it over its own connection to the target node (HTTP/2 in the cluster).
public enum QEMUMigrationStream {
    /// Source side: listens on `socketPath`, runs `start` (which tells the source QEMU to migrate to
    /// `unix:socketPath`), takes QEMU's connection and hands its bytes to `forward` as they come,
    /// with backpressure (QEMU is read only as fast as `forward` takes the bytes).
    public static func carryFromSource(
        socketPath: String, group: any EventLoopGroup, start: @Sendable () async throws -> Void,
        forward: @Sendable (NIOAsyncChannelInboundStream<ByteBuffer>) async throws -> Void
    ) async throws {
        let server = try await ServerBootstrap(group: group)
            // QEMU writes as fast as it is read: reads of up to 1 MiB, not NIO's 64 KiB.
            .childChannelOption(
                ChannelOptions.recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 64 << 10, initial: 256 << 10, maximum: 1 << 20)
            )
            .bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        try await server.executeThenClose { connections in
            try await start()
            var accepted = connections.makeAsyncIterator()
            guard let connection = try await accepted.next() else {
                throw QEMUGuestError("the source QEMU never connected to \(socketPath)")
            }
            try await connection.executeThenClose { inbound, _ in try await forward(inbound) }
        }
        try? FileManager.default.removeItem(atPath: socketPath)
    }

    /// Target side: connects to the socket the target QEMU listens on (`migrate-incoming
    /// uri=unix:socketPath`) and writes every chunk of `bytes` to it; returns how many bytes.
    public static func feedTarget<Bytes: AsyncSequence>(socketPath: String, group: any EventLoopGroup, bytes: Bytes)
        async throws -> UInt64 where Bytes.Element == ByteBuffer
    {
        let connection = try await ClientBootstrap(group: group).connect(unixDomainSocketPath: socketPath) { channel in
            channel.eventLoop.makeCompletedFuture {
                // Finishing the writer shuts the write side down once every queued write is out.
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                    wrappingChannelSynchronously: channel,
                    configuration: .init(isOutboundHalfClosureEnabled: true))
            }
        }
        return try await connection.executeThenClose { inbound, outbound in
            var count: UInt64 = 0
            for try await chunk in bytes {
                count += UInt64(chunk.readableBytes)
                try await outbound.write(chunk)
            }
            outbound.finish()
            // A write returns once queued, not once in the socket, and closing drops what is still
            // queued: the stream ends with the write side's shutdown after the last write, and the
            // connection stays open until QEMU, having read to that end, closes it.
            for try await _ in inbound {}
            return count
        }
    }
}

/// How a migration of a real guest is to run.
public struct QEMUMigrationPolicy: Sendable, Hashable {
    /// QEMU's `downtime-limit`: it stops the guest for the last pages once they fit in this.
    public var downtimeLimit: Duration
    /// QEMU's `max-bandwidth` (bytes/s); QEMU 7.2's default (128 MiB/s) would cap a fast link.
    public var maxBandwidth: UInt64
    /// How often the source's progress is read.
    public var poll: Duration
    /// A copy not at pre-switchover by then is given up (and rolled back).
    public var timeLimit: Duration

    public init(
        downtimeLimit: Duration = .milliseconds(50), maxBandwidth: UInt64 = 10 << 30, poll: Duration = .milliseconds(5),
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
    /// From `migrate` to the target running (or the source resumed).
    public var totalTime: Duration
    /// QEMU's own downtime (the source stopped → the stream's end), which includes the decision.
    public var qemuDowntime: Duration?
    /// The guest's processors stopped (pre-switchover seen) → running again on the target, as seen
    /// from here: QEMU's figure plus the target's `cont`.
    public var pausedFor: Duration?
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

/// One live migration of a real guest from `source` to `target` (started with `incomingMigration`
/// and `paused`). The stream goes through `carry` (the caller's transport: in a test a direct
/// relay, in a cluster an HTTP/2 request to the target node, which feeds the target's socket).
/// At `pre-switchover` — every page copied, the guest stopped — `decide` is asked (a cluster
/// commits the switchover through its log here); yes: the source finishes, the target resumes;
/// no, or any failure before the decision: the source runs the guest on and the target is killed
/// (`QEMUMigrationError.beforeSwitchover`); a failure after a yes rolls nothing back
/// (`.afterSwitchover`).
public enum QEMULiveMigration {
    public static func run(
        source: QEMUGuest, target: QEMUGuest, policy: QEMUMigrationPolicy = QEMUMigrationPolicy(),
        group: any EventLoopGroup,
        carry:
            @escaping @Sendable (NIOAsyncChannelInboundStream<ByteBuffer>, _ targetSocket: String) async throws -> Void,
        decide: @escaping @Sendable () async -> Bool
    ) async throws -> QEMUMigrationResult {
        let started = ContinuousClock.now
        let targetSocket = target.directory + "/migration-in.sock"
        let sourceSocket = source.directory + "/migration-out.sock"
        for path in [targetSocket, sourceSocket] where path.utf8.count > QEMUGuest.maximumSocketPath {
            throw QEMUMigrationError.beforeSwitchover(
                "the socket path \(path) is longer than \(QEMUGuest.maximumSocketPath) bytes; use a shorter data directory"
            )
        }
        try? FileManager.default.removeItem(atPath: targetSocket)
        let decidedYes = NIOLockedValueBox(false)
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
        do {
            try await prepare(source: source, target: target, incoming: "unix:" + targetSocket, policy: policy)
            return try await withThrowingTaskGroup(of: Finished.self) { tasks in
                tasks.addTask {
                    defer { sent.finish() }
                    do {
                        try await QEMUMigrationStream.carryFromSource(
                            socketPath: sourceSocket, group: group,
                            start: {
                                try await source.execute("migrate", ["uri": .string("unix:" + sourceSocket)])
                                sent.yield()
                            },
                            forward: { bytes in try await carry(bytes, targetSocket) })
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
                                    source: source, target: target, policy: policy, started: started,
                                    decidedYes: decidedYes, decide: decide)))
                    } catch {
                        return .drove(.failure(error))
                    }
                }
                var carryError: (any Error)?
                while let finished = try await tasks.next() {
                    switch finished {
                    case .drove(let result):
                        tasks.cancelAll()
                        return try result.get()
                    case .carried(nil):
                        continue
                    case .carried(let error?):
                        // The source should see its stream gone and fail; if it does not say so soon, stop.
                        carryError = error
                        tasks.addTask {
                            try? await Task.sleep(for: .seconds(30))
                            return .gaveUpWaiting
                        }
                    case .gaveUpWaiting:
                        // After a yes the stream has done its part: the outcome is drive's.
                        if decidedYes.withLockedValue({ $0 }) { continue }
                        tasks.cancelAll()
                        throw carryError!
                    }
                }
                throw QEMUGuestError("the migration ended without an outcome")
            }
        } catch {
            throw await failed(error, source: source, target: target, decidedYes: decidedYes)
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
        let started = ContinuousClock.now
        let decidedYes = NIOLockedValueBox(false)
        do {
            try await prepare(source: source, target: target, incoming: uri, policy: policy)
            try await source.execute("migrate", ["uri": .string(sourceURI ?? uri)])
            return try await drive(
                source: source, target: target, policy: policy, started: started, decidedYes: decidedYes,
                decide: decide)
        } catch {
            throw await failed(error, source: source, target: target, decidedYes: decidedYes)
        }
    }

    /// Rolls a failed migration back if its switchover was not decided; says which it was.
    private static func failed(
        _ error: any Error, source: QEMUGuest, target: QEMUGuest, decidedYes: NIOLockedValueBox<Bool>
    ) async -> QEMUMigrationError {
        if let known = error as? QEMUMigrationError { return known }
        if decidedYes.withLockedValue({ $0 }) { return .afterSwitchover("\(error)") }
        _ = try? await source.execute("migrate_cancel")
        if let state = try? await source.runState(), state != "running" { _ = try? await source.resume() }
        await target.kill()
        return .beforeSwitchover("\(error)")
    }

    /// The target listens on `incoming`; the source will stop at pre-switchover, under the policy.
    private static func prepare(source: QEMUGuest, target: QEMUGuest, incoming: String, policy: QEMUMigrationPolicy)
        async throws
    {
        try await target.execute("migrate-incoming", ["uri": .string(incoming)])
        try await source.execute(
            "migrate-set-capabilities",
            ["capabilities": .array([["capability": "pause-before-switchover", "state": true]])])
        try await source.execute(
            "migrate-set-parameters",
            [
                "downtime-limit": .number(Double(policy.downtimeLimit.milliseconds)),
                "max-bandwidth": .number(Double(policy.maxBandwidth)),
            ])
    }

    private static func drive(
        source: QEMUGuest, target: QEMUGuest, policy: QEMUMigrationPolicy, started: ContinuousClock.Instant,
        decidedYes: NIOLockedValueBox<Bool>, decide: @Sendable () async -> Bool
    ) async throws -> QEMUMigrationResult {
        let deadline = started + policy.timeLimit
        var status = try await waitForStatus(source, in: ["pre-switchover"], until: deadline, policy: policy)
        let stopped = ContinuousClock.now
        let decisionStarted = ContinuousClock.now
        let go = await decide()
        let decisionTime = ContinuousClock.now - decisionStarted
        guard go else {
            try await source.execute("migrate_cancel")
            _ = try await waitForStatus(
                source, in: ["cancelled"], until: ContinuousClock.now + .seconds(30), policy: policy)
            if try await source.runState() != "running" { try await source.resume() }
            await target.kill()
            return QEMUMigrationResult(
                outcome: .refused, totalTime: ContinuousClock.now - started, decisionTime: decisionTime)
        }
        decidedYes.withLockedValue { $0 = true }
        try await source.execute("migrate-continue", ["state": "pre-switchover"])
        status = try await waitForStatus(
            source, in: ["completed"], until: ContinuousClock.now + .seconds(60), policy: policy)
        // The target has every page once it leaves `inmigrate`; started with -S it waits, paused.
        while try await target.runState() == "inmigrate" { try await Task.sleep(for: policy.poll) }
        try await target.resume()
        let resumed = ContinuousClock.now
        return QEMUMigrationResult(
            outcome: .completed, totalTime: resumed - started,
            qemuDowntime: status["downtime"]?.count.map { .milliseconds(Int64($0)) }, pausedFor: resumed - stopped,
            decisionTime: decisionTime, transferredBytes: status["ram"]?["transferred"]?.count,
            dirtySyncCount: status["ram"]?["dirty-sync-count"]?.count)
    }

    /// Reads `query-migrate` until its status is one of `wanted`; a failed or cancelled migration
    /// (when not wanted) is an error with QEMU's reason.
    private static func waitForStatus(
        _ source: QEMUGuest, in wanted: Set<String>, until deadline: ContinuousClock.Instant,
        policy: QEMUMigrationPolicy
    ) async throws -> QMPValue {
        while true {
            let answer = try await source.execute("query-migrate")
            let status = answer["status"]?.string ?? "none"
            if wanted.contains(status) { return answer }
            if status == "failed" || status == "cancelled" {
                throw QEMUGuestError(
                    "the migration \(status)" + (answer["error-desc"]?.string.map { ": \($0)" } ?? ""))
            }
            guard ContinuousClock.now < deadline else {
                throw QEMUGuestError("the migration is still \(status) at its time limit")
            }
            try await Task.sleep(for: policy.poll)
        }
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
