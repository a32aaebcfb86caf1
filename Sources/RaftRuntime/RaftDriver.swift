// Runs a RaftNode for real: ticks from a clock, Ready handled in the contract's order, clients answered.
public import ClusterModel
public import NIOCore
public import NIOPosix
public import RaftCore
public import RaftStorage
import Synchronization

// A client's write and read as the driver holds them until answered. Outside the generic
// `RaftDriver`: a type nested in it is generic too, and every use of its dictionaries looked its
// metadata up at run time (the driver is not specialized across modules; perf showed the lookups).

private struct DriverProposal {
    var term: Term
    var deadline: UInt64
    /// Told the answer once, on the driver's loop: a task's continuation, or a caller's callback.
    var complete: @Sendable (Result<[UInt8], any Error>) -> Void
}

private struct DriverPendingRead {
    var deadline: UInt64
    /// Issued while this node led: it fails at once if leadership is lost before the answer.
    var issuedAsLeader: Bool
    var index: LogIndex?
    /// Told once, on the driver's loop: success once the state is current enough to read.
    var complete: @Sendable (Result<Void, any Error>) -> Void
}

/// Why a client's proposal or read did not complete.
public struct RaftDriverError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// This node is not the leader; `leaderHint` is who it thinks is.
        case notLeader(leaderHint: NodeID?)
        /// The entry was replaced by a new leader's before it committed; retry with the same request id.
        case dropped
        /// No answer within the deadline; the command may or may not have been applied.
        case timedOut
        /// The node is shutting down.
        case stopped
        /// The core refused it (e.g. too many uncommitted bytes); `detail` says why.
        case refused
    }

    public var kind: Kind
    public var detail: String

    /// Whether this node is not the leader (the request may go to the one that is).
    public var isNotLeader: Bool {
        if case .notLeader = kind { return true }
        return false
    }

    public var description: String {
        switch kind {
        case .notLeader(let hint):
            "not the leader" + (hint.map { "; the leader is \($0)" } ?? "; no leader is known yet")
        case .dropped: "the entry was replaced by a new leader's before it committed; retry"
        case .timedOut: "no answer before the deadline; the command may or may not have been applied"
        case .stopped: "the node is shutting down"
        case .refused: "refused: \(detail)"
        }
    }
}

/// The node's Raft loop.
///
/// An actor owns the `RaftNode`, its disk storage and the state machine, and after every input
/// (a tick, a peer message, a proposal) drains the core's `Ready` batches in the contract's
/// order: persist (one fsync), send, apply, serve reads, advance — a leader sends its appends
/// before its fsync when the core allows it. Inputs that arrive while a
/// batch is being persisted queue on the actor and go into the next batch together — group
/// commit without a timer.
///
/// The actor runs on one NIO event loop (its executor), and the node puts its peer connections
/// and client API connections on that same loop: a peer batch or a client's write goes socket →
/// core → socket on one thread. Every hand-off between threads (loop → cooperative pool → loop)
/// costs a wake-up of 0.05–0.3 ms on a 2-core machine shared by three nodes, and a write crossed
/// six of them. Disk writes therefore happen on that loop: an fsync (0.2 ms on the machines
/// measured) holds the loop's other connections for its duration, which is also the window in
/// which their inputs gather into the next batch. Except a leader's while other writes wait: it
/// writes the batch on the loop and runs the fsync on a thread of its own, going on meanwhile
/// (`leaderSyncsOffLoop`; the core counts the leader's copy once the sync is reported).
public actor RaftDriver<Machine: ReplicatedStateMachine> {
    /// The loop the actor runs on; peer messages are queued onto it without a task.
    private nonisolated let eventLoop: any EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { eventLoop.executor.asUnownedSerialExecutor() }

    private var node: RaftNode
    private let storage: RaftDiskStorage
    private var machine: Machine
    private let transport: any PeerTransport
    /// Told of every `Ready` before its messages leave, so it knows when this node leads.
    private let leaderContact: LeaderContactTracker?
    private let tickDuration: Duration
    /// How soon after a dead leader's notice the follower ticks (see `peerProcessGone`).
    private let deadLeaderTickDelay: Duration
    private var earlyTickScheduled = false
    /// How long a leader holds an append without entries before sending it (`HeldAppends`), in ns.
    private let emptyAppendDelay: UInt64
    private var heldAppends = HeldAppends()
    private var heldAppendsRelease: Scheduled<Void>?
    /// A snapshot is taken after this many entries were applied since the last one.
    private let snapshotInterval: UInt64
    /// A leader's batches are synced on `syncThread` while the loop goes on (see `drain`).
    private let leaderSyncsOffLoop: Bool
    /// The thread a leader's syncs run on: started with the first, shut down by `stop`.
    private let syncThread = NIOThreadPool(numberOfThreads: 1)
    private var syncThreadStarted = false
    /// A sync is running on `syncThread`; the batches written meanwhile wait for the next one.
    private var syncInFlight = false
    /// Batches written and advanced before they were durable, not yet covered by a running sync.
    private var unsyncedBatches: [Durability] = []
    /// Syncs this node ran off its loop as leader, since it started (for tests and status).
    public private(set) var syncsOffLoop = 0

    private var applied: LogIndex
    private var lastSnapshotIndex: LogIndex
    private var drainScheduled = false
    private var running = true
    private var ticker: Task<Void, Never>?
    /// Ticks since start: the clock for deadlines.
    private var now: UInt64 = 0
    /// What the ticker and the early tick sleep by, and the monotonic time the core's read lease
    /// is measured in (a test's clock moves when the test says).
    private let clock: NodeClock

    private var proposals: [LogIndex: DriverProposal] = [:]

    private var reads: [UInt64: DriverPendingRead] = [:]
    private var nextReadID: UInt64 = 1
    private var leaderWaiters: [CheckedContinuation<NodeID, Never>] = []
    /// Why the driver stopped on its own (a disk or snapshot failure), once it has.
    private var failure: (any Error)?
    private var failureWaiters: [CheckedContinuation<(any Error)?, Never>] = []

    /// Starts a driver from what `storage` recovered.
    ///
    /// - Parameters:
    ///   - bootstrapMembership: the voters the cluster was created with (used when the disk is empty).
    ///   - seed: seeds the election-timeout jitter; distinct per node.
    ///   - eventLoop: the loop the driver runs on; the node's peer and client connections should
    ///     use it too, so their messages reach the core without a thread switch.
    ///   - emptyAppendDelay: how long a leader holds an append that carries no entries (a commit
    ///     moving forward) in case the next write's append carries it instead (`HeldAppends`); the
    ///     most a follower learns of a commit later than at once. Zero sends every message at once.
    ///   - leaderSyncsOffLoop: while more than one write waits for its commit (or such a sync is
    ///     running), a leader writes its batches on the loop and syncs them on a thread of their
    ///     own, going on meanwhile (false: every batch is synced on the loop).
    ///   - deadLeaderTickDelay: after its leader's process is reported gone, a follower ticks this
    ///     soon instead of on the ticker's next beat, so the successor campaigns within it
    ///     (ignored when not shorter than a tick).
    ///   - clock: the ticker's and the early tick's sleeps, and the lease's time (`ContinuousClock`;
    ///     a test passes one it advances itself).
    public init(
        configuration: RaftConfiguration,
        bootstrapMembership: Membership,
        storage: sending RaftDiskStorage,
        recovered: RecoveredRaftState,
        machine: sending Machine,
        transport: any PeerTransport,
        tickDuration: Duration,
        snapshotInterval: UInt64 = 10_000,
        leaderContact: LeaderContactTracker? = nil,
        seed: UInt64,
        eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next(),
        emptyAppendDelay: Duration = .microseconds(500),
        leaderSyncsOffLoop: Bool = true,
        deadLeaderTickDelay: Duration = .milliseconds(5),
        clock: NodeClock = NodeClock(ContinuousClock())
    ) throws {
        if let tickInterval = configuration.tickInterval, tickInterval != tickDuration {
            // A lease promise counts this driver's ticks as `tickInterval` long.
            throw ConfigurationError(
                "the core's tickInterval (\(tickInterval)) is not the driver's tickDuration (\(tickDuration)); "
                    + "a lease promise would be kept for the wrong time: give both the same")
        }
        self.eventLoop = eventLoop
        self.clock = clock
        self.deadLeaderTickDelay = deadLeaderTickDelay
        self.leaderSyncsOffLoop = leaderSyncsOffLoop
        let (seconds, attoseconds) = max(.zero, emptyAppendDelay).components
        self.emptyAppendDelay = UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
        let random = SeededGenerator(seed: seed)
        var machine = machine
        if recovered.isEmpty {
            node = try RaftNode(configuration: configuration, membership: bootstrapMembership, random: random)
        } else {
            node = try RaftNode(
                configuration: configuration, hardState: recovered.hardState, snapshot: recovered.snapshot,
                entries: recovered.entries, bootstrapMembership: bootstrapMembership, random: random)
        }
        if let snapshot = recovered.snapshot {
            try machine.restore(from: snapshot.data)
        }
        self.machine = machine
        self.storage = storage
        self.transport = transport
        self.leaderContact = leaderContact
        self.tickDuration = tickDuration
        self.snapshotInterval = snapshotInterval
        applied = recovered.snapshot?.metadata.index ?? 0
        lastSnapshotIndex = applied
    }

    /// Starts ticking. Call once.
    public func start() {
        guard ticker == nil, running else { return }
        let (duration, clock) = (tickDuration, self.clock)
        ticker = Task { [weak self] in
            while !Task.isCancelled {
                // A tick interval from the end of the last tick, never a burst of ticks to catch up
                // after a stall: a lease promise counts ticks, so two ticks are at least an interval apart.
                try? await clock.sleep(for: duration)
                guard let self, await self.tick() else { return }
            }
        }
    }

    /// Ticks since `start()` (the ticker's and the early ones after a dead leader's notice).
    public var ticksSinceStart: UInt64 { now }

    /// This node promised a leader's lease (or holds its start promise): it grants no vote and
    /// does not campaign until the promise's ticks have passed (`RaftNode.holdsLeasePromise`).
    public var holdsLeasePromise: Bool { node.holdsLeasePromise }

    /// Stops ticking and fails every waiting client with `.stopped`.
    public func stop() {
        for waiter in failureWaiters { waiter.resume(returning: failure) }
        failureWaiters.removeAll()
        running = false
        ticker?.cancel()
        ticker = nil
        heldAppendsRelease?.cancel()
        heldAppendsRelease = nil
        heldAppends.removeAll()
        if syncThreadStarted {
            syncThreadStarted = false
            syncThread.shutdownGracefully { _ in }
        }
        let error = RaftDriverError(kind: .stopped, detail: "")
        for proposal in proposals.values { proposal.complete(.failure(error)) }
        proposals.removeAll()
        for read in reads.values { read.complete(.failure(error)) }
        reads.removeAll()
    }

    public var status: RaftStatus { node.status }

    /// Returns once the driver has stopped: with the reason if it had to stop on its own (its
    /// disk failed) — the node must then exit rather than keep answering — or nil after `stop()`.
    public func waitForFailure() async -> (any Error)? {
        if !running { return failure }
        return await withCheckedContinuation { failureWaiters.append($0) }
    }

    deinit {
        // A driver dropped without `stop()` (a test that threw): its sync thread ends too.
        if syncThreadStarted { syncThread.shutdownGracefully { _ in } }
    }

    private func fail(_ error: any Error) {
        failure = error
        stop()
    }

    /// Peer messages waiting for the actor, in arrival order, and whether a task will take them.
    private let inbox = Mutex<(messages: [Message], scheduled: Bool)>(([], false))

    /// Hands messages from peers to the core without waiting for the actor: callable from any
    /// thread (the peer stream's sink calls it on its connection's event loop). Batches are
    /// stepped in the order they were delivered; those that arrive while the node is busy
    /// (persisting) are stepped together and persisted with one fsync.
    public nonisolated func deliver(_ messages: [Message]) {
        let schedule = inbox.withLock { inbox in
            inbox.messages.append(contentsOf: messages)
            if inbox.scheduled { return false }
            inbox.scheduled = true
            return true
        }
        // Run on the loop (no other thread woken when the caller is on it), after the read that
        // delivered this: batches that arrived together are stepped together, with one fsync.
        if schedule {
            eventLoop.execute { self.assumeIsolated { $0.takeInbox() } }
        }
    }

    private func takeInbox() {
        let messages = inbox.withLock { inbox in
            inbox.scheduled = false
            defer { inbox.messages.removeAll(keepingCapacity: true) }
            return inbox.messages
        }
        guard running else { return }
        for message in messages { try? node.step(message) }
        drain()
    }

    /// Hands messages from peers to the core.
    public func receive(_ messages: [Message]) {
        guard running else { return }
        for message in messages {
            // A message for another node id (a misrouted peer) is dropped; Raft copes with loss.
            try? node.step(message)
        }
        scheduleDrain()
    }

    /// Proposes a command; returns the state machine's answer once it is committed and applied.
    ///
    /// - Parameter timeoutTicks: how long to wait for the commit, in ticks.
    public func propose(_ command: [UInt8], requestID: RequestID? = nil, timeoutTicks: UInt64) async throws -> [UInt8] {
        // Proposed and registered inside the continuation's body, in one job on the actor: the body
        // may run one executor hop after the call (seen when the actor runs on an event loop and
        // the caller's task prefers that loop), and a drain in between would apply the entry
        // before anyone waits for it; the client would then time out on a committed write.
        try await withCheckedThrowingContinuation { continuation in
            proposeNow(command, requestID: requestID, timeoutTicks: timeoutTicks) { continuation.resume(with: $0) }
        }
    }

    /// Proposes a command and calls `completion` with the state machine's answer once it is
    /// committed and applied (or with the `RaftDriverError` that stopped it), on the driver's event
    /// loop. Callable from any thread; on that loop it proposes at once, with no task and no hop:
    /// the fast path for a request handler that runs there.
    public nonisolated func propose(
        _ command: [UInt8], requestID: RequestID? = nil, timeoutTicks: UInt64,
        completion: @escaping @Sendable (Result<[UInt8], any Error>) -> Void
    ) {
        if eventLoop.inEventLoop {
            assumeIsolated { $0.proposeNow(command, requestID: requestID, timeoutTicks: timeoutTicks, completion) }
        } else {
            eventLoop.execute {
                self.assumeIsolated {
                    $0.proposeNow(command, requestID: requestID, timeoutTicks: timeoutTicks, completion)
                }
            }
        }
    }

    /// Proposes and registers the waiter in one step, so no drain can apply the entry before
    /// anyone waits for it (the client would then time out on a committed write).
    private func proposeNow(
        _ command: [UInt8], requestID: RequestID?, timeoutTicks: UInt64,
        _ complete: @escaping @Sendable (Result<[UInt8], any Error>) -> Void
    ) {
        guard running else { return complete(.failure(RaftDriverError(kind: .stopped, detail: ""))) }
        let index: LogIndex
        do throws(ProposalError) {
            index = try node.propose(command, requestID: requestID)
        } catch .notLeader(let hint) {
            return complete(.failure(RaftDriverError(kind: .notLeader(leaderHint: hint), detail: "")))
        } catch {
            return complete(.failure(RaftDriverError(kind: .refused, detail: "\(error)")))
        }
        proposals[index] = DriverProposal(term: node.term, deadline: now + timeoutTicks, complete: complete)
        scheduleDrain()
    }

    /// Waits until this node's state reflects every write committed before the call (ReadIndex),
    /// then runs `read` on the state machine. With `lease`, a leader whose read lease runs answers
    /// without a heartbeat round (`RaftNode.readIndex(context:now:)`; the configuration's
    /// `readLease`), and a round it takes starts a lease. A read that must confirm a moment of
    /// contact with a quorum after the call (the failover controller's probe) passes false.
    public func linearizableRead<Result: Sendable>(
        timeoutTicks: UInt64, lease: Bool = false, _ read: (Machine) -> Result
    ) async throws -> Result {
        // Registered in the same job that asks the core, for the reason `propose` gives.
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            registerRead(timeoutTicks: timeoutTicks, lease: lease) { continuation.resume(with: $0) }
        }
        return read(machine)
    }

    /// `linearizableRead` for a caller that answers without a task (a deferred route): from any
    /// thread; `read` runs on the state machine on the driver's loop once the state is current
    /// enough, and `completion` gets what it returned, or the error that ended the read.
    public nonisolated func linearizableRead<Value: Sendable>(
        timeoutTicks: UInt64, lease: Bool = false, read: @escaping @Sendable (Machine) -> Value,
        completion: @escaping @Sendable (Result<Value, any Error>) -> Void
    ) {
        let complete: @Sendable (Result<Void, any Error>) -> Void = { result in
            switch result {
            case .success:
                // Called on the driver's loop, from within the actor (`releaseReads`).
                self.assumeIsolated { driver in completion(.success(read(driver.machine))) }
            case .failure(let error):
                completion(.failure(error))
            }
        }
        if eventLoop.inEventLoop {
            assumeIsolated { $0.registerRead(timeoutTicks: timeoutTicks, lease: lease, complete: complete) }
        } else {
            eventLoop.execute {
                self.assumeIsolated { $0.registerRead(timeoutTicks: timeoutTicks, lease: lease, complete: complete) }
            }
        }
    }

    /// Asks the core for a read point and registers `complete` for it, in one job.
    private func registerRead(
        timeoutTicks: UInt64, lease: Bool, complete: @escaping @Sendable (Result<Void, any Error>) -> Void
    ) {
        guard running else { return complete(.failure(RaftDriverError(kind: .stopped, detail: ""))) }
        let id = nextReadID
        nextReadID += 1
        var context = ByteWriter()
        context.writeVarint(id)
        do throws(ProposalError) {
            try node.readIndex(context: context.bytes, now: lease ? clock.now : nil)
        } catch .notLeader(let hint) {
            return complete(.failure(RaftDriverError(kind: .notLeader(leaderHint: hint), detail: "")))
        } catch {
            return complete(.failure(RaftDriverError(kind: .refused, detail: "\(error)")))
        }
        reads[id] = DriverPendingRead(
            deadline: now + timeoutTicks, issuedAsLeader: node.role == .leader, index: nil, complete: complete)
        scheduleDrain()
    }

    /// A snapshot of the state machine that reflects every write committed before the call (a
    /// ReadIndex round first), with the index, term and membership it stands for; the log is not
    /// compacted. For a copy taken out of the cluster (`flotilla snapshot save`).
    public func consistentSnapshot(timeoutTicks: UInt64) async throws -> Snapshot {
        try await linearizableRead(timeoutTicks: timeoutTicks) { _ in () }
        // No suspension from here on: the metadata and the bytes describe the same applied index.
        return Snapshot(metadata: try node.appliedSnapshotMetadata(), data: machine.snapshot())
    }

    /// Runs `read` on this node's copy of the state, which may lag the leader's.
    public func staleRead<Result: Sendable>(_ read: (Machine) -> Result) -> Result {
        read(machine)
    }

    /// Returns the leader as soon as one is known.
    public func awaitLeader() async -> NodeID {
        if let leader = node.leader { return leader }
        return await withCheckedContinuation { leaderWaiters.append($0) }
    }

    /// The transport lost messages to `node`: the leader probes it rather than pipelining blind.
    public func reportUnreachable(_ node: NodeID) {
        guard running else { return }
        self.node.reportUnreachable(node)
        scheduleDrain()
    }

    /// The transport saw `node`'s process die: if it led this node, an election starts within a
    /// few ticks instead of an election timeout (`RaftNode.leaderProcessGone`).
    public func peerProcessGone(_ node: NodeID) {
        guard running else { return }
        let followedIt = self.node.leader == node && self.node.role != .leader
        self.node.leaderProcessGone(node)
        scheduleDrain()
        // The core campaigns on the next tick (or the third, by rank): that tick comes after
        // `deadLeaderTickDelay` rather than on the ticker's beat, up to a tick later. The delay
        // leaves the other followers time to hear of the death too, or they would ignore the
        // pre-vote while they still follow the dead leader.
        guard followedIt, !earlyTickScheduled, !self.node.holdsLeasePromise, deadLeaderTickDelay < tickDuration
        else { return }
        earlyTickScheduled = true
        let (delay, clock) = (deadLeaderTickDelay, self.clock)
        Task {
            try? await clock.sleep(for: delay)
            earlyTickScheduled = false
            // A lease promise counts the ticker's beats: a tick between them would shorten it
            // (and the core does not campaign before it ends anyway).
            guard !self.node.holdsLeasePromise else { return }
            _ = tick()
        }
    }

    /// Asks the core to hand leadership to `target`.
    public func transferLeadership(to target: NodeID) throws {
        try node.transferLeadership(to: target)
        scheduleDrain()
    }

    /// Proposes a membership change; returns once it is committed.
    public func changeMembership(_ change: MembershipChange, timeoutTicks: UInt64) async throws {
        // Proposed and registered in one job, for the reason `propose` gives.
        _ = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8], any Error>) in
            let index: LogIndex
            do {
                index = try node.changeMembership(change)
            } catch {
                return continuation.resume(throwing: error)
            }
            proposals[index] = DriverProposal(
                term: node.term, deadline: now + timeoutTicks, complete: { continuation.resume(with: $0) })
            scheduleDrain()
        }
    }

    // MARK: - The loop

    /// One clock tick; returns false once stopped.
    private func tick() -> Bool {
        guard running else { return false }
        now += 1
        node.tick()
        expireWaiters()
        drain()
        return true
    }

    private func scheduleDrain() {
        guard !drainScheduled else { return }
        drainScheduled = true
        // Runs after the inputs already queued on the loop: they join this batch. A job on the loop
        // rather than a task: no task to make and start for every batch.
        eventLoop.execute { self.assumeIsolated { $0.drain() } }
    }

    /// Handles every pending `Ready`, in the contract's order.
    private func drain() {
        drainScheduled = false
        while running && node.hasReady {
            let ready = node.ready()
            // 0. Before anything leaves: a new leader's bound on its predecessors' leases is taken
            // now, and a node that leads (or just stopped) is in contact with a leader.
            leaderContact?.handlingReady(leaderOf: ready.role == .leader ? node.term : nil)
            // 2, early: a leader's appends travel while it writes; its followers' fsyncs and its
            // own run side by side (the core counts its own entries only once `advance` says so).
            if ready.canSendBeforePersisting && !ready.messages.isEmpty { send(ready.messages) }
            // 1. Persist, durably, before anything else leaves the node — except a leader's batch
            // whose messages promise nothing about its disk: it is written here and synced on
            // `syncThread` while the loop goes on taking writes and acknowledgements (the core
            // counts the leader's copy once the sync is reported; a quorum of followers commits
            // without it). An fsync on the loop held every connection of the node for its length.
            // Only while other writes wait (or a sync runs): one client's lone write has nothing
            // to overlap with, and the thread's two wake-ups cost it time on a busy machine.
            let syncsLater =
                leaderSyncsOffLoop && ready.canSendBeforePersisting && ready.snapshot == nil
                && (syncInFlight || proposals.count > 1)
            var durable = true
            do {
                if syncsLater {
                    if try storage.persistLater(hardState: ready.hardState, entries: ready.entries) {
                        durable = false
                        unsyncedBatches.append(ready.durability)
                        startSync()
                    }
                } else {
                    try storage.persist(hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot)
                }
            } catch {
                // The disk failed: this node can no longer promise anything. Stop rather than
                // send votes or acknowledgements it cannot keep.
                fail(error)
                return
            }
            // 2. Send.
            if !ready.canSendBeforePersisting && !ready.messages.isEmpty { send(ready.messages) }
            // 3. Restore, then apply only committed entries.
            if let snapshot = ready.snapshot {
                do {
                    try machine.restore(from: snapshot.data)
                } catch {
                    fail(error)
                    return
                }
                applied = snapshot.metadata.index
                lastSnapshotIndex = applied
                failProposals(upTo: applied)
            }
            for committed in ready.committedEntries {
                do {
                    try apply(committed)
                } catch {
                    // An entry this build cannot read (docs/operations.md, Upgrades): stop before
                    // it, as on a disk failure, rather than apply the entries after it.
                    fail(error)
                    return
                }
            }
            // 4. Reads wait for their index to be applied.
            for state in ready.readStates {
                var reader = ByteReader(state.context)
                guard let id = try? reader.readVarint(), reads[id] != nil else { continue }
                reads[id]!.index = state.index
            }
            releaseReads()
            // 5. Advance.
            node.advance(ready, durable: durable)
            if let leader = ready.leader, !leaderWaiters.isEmpty {
                for waiter in leaderWaiters { waiter.resume(returning: leader) }
                leaderWaiters.removeAll()
            }
        }
        if node.role != .leader { failReadsOnLostLeadership() }
        takeSnapshotIfDue()
    }

    /// Starts a sync of what the leader wrote for `unsyncedBatches`, unless one is running (its
    /// return starts the next): one at a time, each covering every batch written before it.
    private func startSync() {
        guard running, !syncInFlight, !unsyncedBatches.isEmpty else { return }
        guard let sync = storage.pendingSync() else {
            // A sync on the loop (a rotation, a batch that had to sync) covered them already.
            for batch in unsyncedBatches { node.persisted(batch) }
            unsyncedBatches.removeAll()
            return
        }
        let covered = unsyncedBatches
        unsyncedBatches.removeAll()
        syncInFlight = true
        syncsOffLoop += 1
        if !syncThreadStarted {
            syncThreadStarted = true
            syncThread.start()
        }
        syncThread.runIfActive(eventLoop: eventLoop) { try sync.sync() }.whenComplete { result in
            self.assumeIsolated { $0.syncReturned(sync, covering: covered, result) }
        }
    }

    /// A sync from `startSync` returned: its batches count as the leader's durable copy.
    private func syncReturned(_ sync: DeferredSync, covering batches: [Durability], _ result: Result<Void, any Error>) {
        syncInFlight = false
        guard running else { return }
        if case .failure(let error) = result {
            // As with a sync on the loop: this node can no longer promise anything.
            fail(error)
            return
        }
        storage.completeSync(sync)
        for batch in batches { node.persisted(batch) }
        startSync()
        drain()
    }

    /// Sends a `Ready`'s messages, holding appends without entries for `emptyAppendDelay`.
    private func send(_ messages: [Message]) {
        guard emptyAppendDelay > 0 else { return transport.send(messages) }
        let now = heldAppends.route(messages, now: NIODeadline.now().uptimeNanoseconds)
        if !now.isEmpty { transport.send(now) }
        if heldAppends.isEmpty, let release = heldAppendsRelease {
            // The next write's append took the held one along: no timer is left to wake the loop
            // for nothing (under one client's writes, once per write).
            release.cancel()
            heldAppendsRelease = nil
        }
        scheduleHeldAppendsRelease()
    }

    /// Arms the timer for the oldest held append, unless it is armed already.
    private func scheduleHeldAppendsRelease() {
        guard heldAppendsRelease == nil, let due = heldAppends.due(delay: emptyAppendDelay) else { return }
        heldAppendsRelease = eventLoop.scheduleTask(deadline: NIODeadline.uptimeNanoseconds(due)) {
            self.assumeIsolated { $0.releaseHeldAppends() }
        }
    }

    private func releaseHeldAppends() {
        heldAppendsRelease = nil
        guard running else { return }
        let due = heldAppends.release(now: NIODeadline.now().uptimeNanoseconds, delay: emptyAppendDelay)
        if !due.isEmpty { transport.send(due) }
        scheduleHeldAppendsRelease()
    }

    private func apply(_ committed: CommittedEntry) throws {
        let entry = committed.entry
        var result: [UInt8] = []
        if case .command(let command) = entry.payload, !committed.isDuplicate {
            result = try machine.apply(command, at: entry.index)
        }
        applied = entry.index
        guard let proposal = proposals.removeValue(forKey: entry.index) else { return }
        if proposal.term == entry.term {
            proposal.complete(.success(result))
        } else {
            proposal.complete(.failure(RaftDriverError(kind: .dropped, detail: "")))
        }
    }

    private func releaseReads() {
        for (id, read) in reads {
            if let index = read.index, index <= applied {
                reads.removeValue(forKey: id)
                read.complete(.success(()))
            }
        }
    }

    private func failProposals(upTo index: LogIndex) {
        for (proposalIndex, proposal) in proposals where proposalIndex <= index {
            proposals.removeValue(forKey: proposalIndex)
            proposal.complete(.failure(RaftDriverError(kind: .dropped, detail: "")))
        }
    }

    /// A deposed leader's pending entries may still commit (the new leader may have them), so
    /// they are left to commit or be replaced; only the reads it was confirming itself, which no
    /// one else will answer, are failed at once. Reads a follower forwarded wait for the leader.
    private func failReadsOnLostLeadership() {
        let hint = node.leader
        for (id, read) in reads where read.issuedAsLeader && read.index == nil {
            reads.removeValue(forKey: id)
            read.complete(.failure(RaftDriverError(kind: .notLeader(leaderHint: hint), detail: "")))
        }
    }

    private func expireWaiters() {
        let error = RaftDriverError(kind: .timedOut, detail: "")
        for (index, proposal) in proposals where proposal.deadline <= now {
            proposals.removeValue(forKey: index)
            proposal.complete(.failure(error))
        }
        for (id, read) in reads where read.deadline <= now {
            reads.removeValue(forKey: id)
            read.complete(.failure(error))
        }
    }

    private func takeSnapshotIfDue() {
        // A leader's sync may be running: the snapshot is a file of its own, synced before it
        // counts; the segments it lets go were synced when they were closed, and a running sync
        // holds its own descriptor of its segment.
        guard running, applied - lastSnapshotIndex >= snapshotInterval else { return }
        do {
            let snapshot = try node.compact(snapshotAt: applied, data: machine.snapshot())
            try storage.saveSnapshot(snapshot)
            lastSnapshotIndex = applied
        } catch {
            // A snapshot that cannot be taken or written now is retried after the next interval;
            // the log simply stays longer.
            lastSnapshotIndex = applied
        }
    }
}
