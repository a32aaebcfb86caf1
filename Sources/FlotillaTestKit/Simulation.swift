// The deterministic cluster simulator: real Raft cores on a simulated network, disk and clock.
import ClusterModel
import RaftCore

/// Runs one cluster from one seed, checking the Raft safety properties after every step and
/// the clients' history for linearizability at the end.
///
/// It is a plain loop over an agenda of events (ticks, message arrivals, client requests,
/// faults); there are no threads, no wall clock and no system randomness, so the same
/// configuration always produces the same run. Each node is driven the way the real node shell
/// drives the core, following the `Ready` contract: persist, then send, then apply, then advance.
public struct Simulation {
    public let configuration: SimulationConfiguration

    private enum Event {
        case tick(slot: Int, incarnation: Int)
        case deliver(Message)
        case clientRequest(slot: Int, ClientRequest)
        case clientResponse(client: Int, ClientResponse)
        case clientTimeout(client: Int, handle: Int, attempt: Int)
        case clientRetry(client: Int, handle: Int, attempt: Int)
        case clientNext(client: Int)
        case chaos
        case heal(episode: Int)
        case restart(slot: Int)
        /// `observer` learns that the process in `gone` died (its connection closed and a reconnect
        /// was refused), if `gone` is still down in the life it died in.
        case processGone(observer: Int, gone: Int, goneIncarnation: Int)
        /// A leader's sync, begun off its loop when `written` records were on its disk, returned.
        case syncReturned(slot: Int, incarnation: Int, written: Int, durability: Durability)
        case decommission(slot: Int)
        case calm
        case stopClients
        case finish
    }

    private enum ClientRequest {
        case put(handle: Int, requestID: RequestID, key: UInt32, value: UInt64)
        case get(handle: Int, key: UInt32)

        var handle: Int {
            switch self {
            case .put(let handle, _, _, _), .get(let handle, _): handle
            }
        }
    }

    private enum ClientResponse {
        case written(handle: Int)
        case read(handle: Int, value: UInt64?)
        case redirect(handle: Int, leader: NodeID?)
    }

    private enum Lifecycle {
        case notStarted, running, crashed, removed
    }

    private enum Phase {
        case chaos, quiet, draining, finished
    }

    /// One node: the core plus everything its shell keeps.
    private struct SimulatedNode {
        var id: NodeID
        var lifecycle: Lifecycle = .notStarted
        var raft: RaftNode?
        var disk = SimulatedDisk<RaftRecord>()
        /// Everything the core has handed over for persistence (synced or not): the node's log.
        var log = DurableRaftState()
        /// The newest hard state on disk: a batch whose term and vote match it and that carries no
        /// entries or snapshot is not synced (only its commit index moved), as in `RaftDiskStorage`.
        var syncedHardState = HardState()
        var store = KeyValueStore()
        var appliedIndex: LogIndex = 0
        /// Bumped on every crash and restart, so timers of an earlier life are ignored.
        var incarnation = 0
        var crashesOnNextWrite = false
        /// Syncs begun off the loop that have not returned (`SimulationConfiguration.leaderSyncDelay`).
        var syncsInFlight = 0
        /// Crash right after the next write is synced and its messages sent (a vote or an
        /// acknowledgement has gone out; only what is on disk may be remembered).
        var crashesAfterNextWrite = false
        /// Time units between this node's ticks: clocks drift, so nodes tick at different rates.
        var tickInterval: UInt64 = 10
        /// While `now` is before this, the process is frozen (a long GC or VM pause): it neither
        /// ticks nor handles messages, which wait for it.
        var pausedUntil: UInt64 = 0
        /// The membership the node was created with; a restart without a snapshot needs it.
        var bootstrapMembership = Membership()
        var leaderOfTerm: Term?
        var waitingWrites: [RequestID: (client: Int, handle: Int)] = [:]
        var waitingReads: [UInt64: (client: Int, handle: Int, key: UInt32)] = [:]
        var readStatesToServe: [(index: LogIndex, token: UInt64)] = []

        init(id: NodeID) { self.id = id }
    }

    private struct ClientCall {
        var handle: Int
        var operation: KeyValueOperation
        var requestID: RequestID
        var attempt: Int
    }

    private struct SimulatedClient {
        var id: UInt64
        var sequence: UInt64 = 0
        var call: ClientCall?
        var leaderGuess: NodeID?
    }

    private var random: SimulationRandom
    private var queue = EventQueue<Event>()
    private var now: UInt64 = 0
    /// A counter that orders history events; advanced on every invocation and response.
    private var historyClock: UInt64 = 0
    private var network: SimulatedNetwork
    private var nodes: [SimulatedNode]
    private var clients: [SimulatedClient]
    private var history = KeyValueHistory()
    private var safety = SafetyMonitor()
    private var trace: SimulationTrace
    private var statistics = SimulationStatistics()
    private var phase = Phase.chaos
    private var partitionEpisode = 0
    private var isPartitioned = false
    private var nextReadToken: UInt64 = 1
    /// The newest membership any node has applied, and the index it was applied at.
    private var membership: Membership
    private var membershipIndex: LogIndex = 0

    public init(configuration: SimulationConfiguration) {
        precondition(configuration.nodeCount >= 1, "a simulated cluster needs at least one node")
        self.configuration = configuration
        random = SimulationRandom(seed: configuration.seed)
        network = SimulatedNetwork(faults: configuration.faults.network)
        let total = configuration.nodeCount + configuration.spareNodeCount
        nodes = (1...total).map { SimulatedNode(id: NodeID(UInt64($0))) }
        // Each node's clock runs up to the configured drift fast or slow.
        let drift = Int(configuration.tickInterval * UInt64(configuration.clockDriftPercent) / 100)
        for slot in nodes.indices {
            nodes[slot].tickInterval = UInt64(Int(configuration.tickInterval) + random.int(in: -drift...drift))
        }
        clients = (1...max(1, configuration.clientCount)).map { SimulatedClient(id: UInt64($0)) }
        trace = SimulationTrace(capacity: max(1, configuration.traceCapacity), echo: configuration.echoesTrace)
        membership = Membership(
            voters: Set((1...configuration.nodeCount).map { NodeID(UInt64($0)) }), learners: [])
    }

    /// Runs the whole simulation; throws the first violation with the seed and a trace.
    public mutating func run() throws(SimulationFailure) -> SimulationStatistics {
        do throws(SafetyViolation) {
            try bootstrap()
            while phase != .finished, let (time, event) = queue.pop() {
                now = time
                statistics.steps += 1
                try handle(event)
            }
            try finalChecks()
        } catch {
            throw SimulationFailure(
                seed: configuration.seed, nodeCount: configuration.nodeCount, time: now, step: statistics.steps,
                invariant: error.invariant, detail: error.detail, trace: trace.recentLines)
        }
        statistics.seeds = 1
        statistics.simulatedTime = now
        statistics.committedEntries = safety.committedIndex.rawValue
        statistics.messagesSent = network.sentCount
        statistics.messagesDropped = network.droppedCount
        return statistics
    }

    // MARK: - Setup and the agenda

    private mutating func bootstrap() throws(SafetyViolation) {
        for slot in 0..<configuration.nodeCount {
            try start(slot: slot, joining: false)
        }
        for client in clients.indices {
            queue.schedule(.clientNext(client: client), at: UInt64(random.int(in: 1...100)))
        }
        queue.schedule(.chaos, at: configuration.faults.chaosInterval)
        queue.schedule(.calm, at: configuration.chaosDuration)
        queue.schedule(.stopClients, at: configuration.chaosDuration + configuration.quietDuration / 2)
        queue.schedule(.finish, at: configuration.chaosDuration + configuration.quietDuration)
    }

    private mutating func handle(_ event: Event) throws(SafetyViolation) {
        switch event {
        case .tick(let slot, let incarnation):
            guard nodes[slot].lifecycle == .running, nodes[slot].incarnation == incarnation else { return }
            guard nodes[slot].pausedUntil <= now else {
                deferUntilAwake(event, slot: slot)
                return
            }
            nodes[slot].raft!.tick()
            try drain(slot)
            queue.schedule(.tick(slot: slot, incarnation: incarnation), at: now + nodes[slot].tickInterval)
        case .deliver(let message):
            try deliver(message)
        case .clientRequest(let slot, let request):
            guard nodes[slot].pausedUntil <= now else {
                deferUntilAwake(event, slot: slot)
                return
            }
            try receive(request, at: slot)
        case .clientResponse(let client, let response):
            hear(response, client: client)
        case .clientTimeout(let client, let handle, let attempt):
            guard let call = clients[client].call, call.handle == handle, call.attempt == attempt else { return }
            trace.record("[t=\(now)] c\(clients[client].id) timed out waiting for \(call.operation)")
            clients[client].leaderGuess = nil
            retry(client)
        case .clientRetry(let client, let handle, let attempt):
            guard let call = clients[client].call, call.handle == handle, call.attempt == attempt else { return }
            send(client)
        case .clientNext(let client):
            startOperation(client)
        case .chaos:
            guard phase == .chaos else { return }
            try injectFaults()
            queue.schedule(.chaos, at: now + configuration.faults.chaosInterval)
        case .heal(let episode):
            guard episode == partitionEpisode, isPartitioned else { return }
            healNetwork()
        case .restart(let slot):
            try restart(slot: slot)
        case .processGone(let observer, let gone, let goneIncarnation):
            guard nodes[gone].lifecycle == .crashed, nodes[gone].incarnation == goneIncarnation,
                nodes[observer].lifecycle == .running
            else { return }
            guard nodes[observer].pausedUntil <= now else {
                deferUntilAwake(event, slot: observer)
                return
            }
            let goneID = nodes[gone].id
            if nodes[observer].raft!.leader == goneID { statistics.deadLeaderNotices += 1 }
            trace.record("[t=\(now)] \(nodes[observer].id) sees \(goneID)'s process gone")
            nodes[observer].raft!.leaderProcessGone(goneID)
            try drain(observer)
        case .syncReturned(let slot, let incarnation, let written, let durability):
            guard nodes[slot].lifecycle == .running, nodes[slot].incarnation == incarnation else { return }
            guard nodes[slot].pausedUntil <= now else {
                deferUntilAwake(event, slot: slot)
                return
            }
            nodes[slot].disk.sync(writtenBefore: written)
            nodes[slot].syncsInFlight -= 1
            nodes[slot].raft!.persisted(durability)
            try drain(slot)
        case .decommission(let slot):
            guard nodes[slot].lifecycle == .running || nodes[slot].lifecycle == .crashed else { return }
            trace.record("[t=\(now)] \(nodes[slot].id) decommissioned after its removal was applied")
            nodes[slot].lifecycle = .removed
            nodes[slot].raft = nil
            nodes[slot].incarnation += 1
        case .calm:
            try calmDown()
        case .stopClients:
            phase = .draining
        case .finish:
            phase = .finished
        }
    }

    // MARK: - Nodes

    private func raftConfiguration(for id: NodeID) -> RaftConfiguration {
        var raft = configuration.core.configuration(for: id)
        // Every node keeps promises, as every node does, with ticks of `tickInterval` units.
        raft.tickInterval = Self.timeUnit * Int(configuration.tickInterval)
        if configuration.readLease { raft.readLease = Self.timeUnit * Int(configuration.leaseUnits) }
        return raft
    }

    /// What one unit of simulated time stands for on a node's clock: 5 ms, so that the default 10
    /// units between ticks are the node's 50 ms (and a start's promise is as many ticks as a node's).
    static let timeUnit: Duration = .milliseconds(5)

    /// What node `slot`'s monotonic clock reads now: it runs at the rate of its ticks (a node that
    /// ticks slowly measures less time than has passed).
    private func clockReading(_ slot: Int) -> Duration {
        Self.timeUnit * Int(now * configuration.tickInterval) / Int(nodes[slot].tickInterval)
    }

    private mutating func start(slot: Int, joining: Bool) throws(SafetyViolation) {
        let id = nodes[slot].id
        let initial = joining ? Membership() : membership
        do {
            nodes[slot].raft = try RaftNode(
                configuration: raftConfiguration(for: id), membership: initial, random: random.splitForNode())
        } catch {
            throw SafetyViolation(invariant: "simulator", detail: "\(id) cannot start: \(error)")
        }
        nodes[slot].bootstrapMembership = initial
        nodes[slot].lifecycle = .running
        nodes[slot].incarnation += 1
        trace.record("[t=\(now)] \(id) started\(joining ? " to join as a learner" : "")")
        scheduleFirstTick(slot)
        try drain(slot)
    }

    private mutating func scheduleFirstTick(_ slot: Int) {
        let phaseOffset = UInt64(random.int(in: 1...Int(nodes[slot].tickInterval)))
        queue.schedule(.tick(slot: slot, incarnation: nodes[slot].incarnation), at: now + phaseOffset)
    }

    private mutating func deliver(_ message: Message) throws(SafetyViolation) {
        let slot = Int(message.to.rawValue) - 1
        guard nodes.indices.contains(slot), nodes[slot].lifecycle == .running else {
            network.recordDroppedInFlight()
            return
        }
        guard nodes[slot].pausedUntil <= now else {
            deferUntilAwake(.deliver(message), slot: slot)
            return
        }
        guard network.delivers(from: message.from, to: message.to) else {
            network.recordDroppedInFlight()
            return
        }
        trace.record("[t=\(now)] \(message.to) ← \(message.from) term \(message.term) \(Self.describe(message.kind))")
        do {
            try nodes[slot].raft!.step(message)
        } catch {
            throw SafetyViolation(invariant: "simulator", detail: "\(message.to) refused a message: \(error)")
        }
        try drain(slot)
    }

    /// Carries out the node's `Ready` batches until it has nothing more to do.
    private mutating func drain(_ slot: Int) throws(SafetyViolation) {
        let id = nodes[slot].id
        while nodes[slot].lifecycle == .running, nodes[slot].raft!.hasReady {
            let ready = nodes[slot].raft!.ready()

            // 2, early: a leader's appends may travel while it writes (the crash below then hits a
            // leader whose followers already hold entries it has not made durable).
            if ready.canSendBeforePersisting {
                for message in ready.messages { send(message) }
            }

            // 1. Persist: snapshot, entries, hard state; then sync, unless the node dies first or
            // only the commit index moved (that record stays unsynced until the next sync, and a
            // crash before it may lose it).
            var wrote = false
            var mustSync = ready.snapshot != nil || !ready.entries.isEmpty
            if let snapshot = ready.snapshot {
                nodes[slot].disk.write(.snapshot(snapshot))
                try record(.snapshot(snapshot), slot: slot)
                wrote = true
            }
            for entry in ready.entries {
                let replaced = nodes[slot].log.entry(at: entry.index)
                nodes[slot].disk.write(.entry(entry))
                try record(.entry(entry), slot: slot)
                try safety.observeWrite(entry, replacing: replaced, by: id, log: nodes[slot].log)
                wrote = true
            }
            if let hardState = ready.hardState {
                nodes[slot].disk.write(.hardState(hardState))
                try record(.hardState(hardState), slot: slot)
                wrote = true
                let synced = nodes[slot].syncedHardState
                if hardState.term != synced.term || hardState.vote != synced.vote { mustSync = true }
            }
            if wrote && nodes[slot].crashesOnNextWrite {
                try crash(slot: slot, midWrite: true)
                return
            }
            // A leader's batch is synced off its loop (`RaftDriver`): it goes on at once, and its
            // sync returns later. Any other batch that follows such writes syncs them too before
            // its messages leave, as `RaftDiskStorage` does.
            let syncsLater =
                mustSync && ready.canSendBeforePersisting && ready.snapshot == nil
                && configuration.leaderSyncDelay != nil
            if !ready.canSendBeforePersisting && nodes[slot].syncsInFlight > 0 { mustSync = true }
            if syncsLater {
                nodes[slot].syncsInFlight += 1
                let returned = now + UInt64(random.int(in: 0...Int(configuration.leaderSyncDelay!)))
                queue.schedule(
                    .syncReturned(
                        slot: slot, incarnation: nodes[slot].incarnation, written: nodes[slot].disk.writtenCount,
                        durability: ready.durability), at: returned)
                statistics.syncsOffLoop += 1
            } else if mustSync {
                nodes[slot].disk.sync()
                nodes[slot].syncedHardState = nodes[slot].log.hardState
            } else if wrote {
                statistics.unsyncedCommitWrites += 1
            }

            // 2. Send.
            if !ready.canSendBeforePersisting {
                for message in ready.messages { send(message) }
            }
            if wrote && nodes[slot].crashesAfterNextWrite {
                try crash(slot: slot, midWrite: false)
                return
            }

            // 3. Apply: the snapshot first, then the committed entries in order.
            if let snapshot = ready.snapshot {
                do {
                    nodes[slot].store = try KeyValueStore(snapshot: snapshot.data)
                } catch {
                    throw SafetyViolation(invariant: "state-machine safety", detail: "\(id): \(error)")
                }
                nodes[slot].appliedIndex = snapshot.metadata.index
                statistics.snapshotsInstalled += 1
                trace.record("[t=\(now)] \(id) installed a snapshot at index \(snapshot.metadata.index)")
            }
            if !ready.committedEntries.isEmpty {
                let commit = nodes[slot].raft!.status.commit
                for committed in ready.committedEntries {
                    try apply(committed, slot: slot, commit: commit)
                }
            }

            // 4. Answer reads whose read index has been applied.
            for readState in ready.readStates {
                nodes[slot].readStatesToServe.append((readState.index, Self.token(from: readState.context)))
            }
            serveReads(slot)

            // 5. Advance.
            nodes[slot].raft!.advance(ready, durable: !syncsLater)
            try compactIfDue(slot)
        }
        try observe(slot)
    }

    /// Mirrors a write into the node's log, failing if the core asked for a log with a hole.
    private mutating func record(_ record: RaftRecord, slot: Int) throws(SafetyViolation) {
        do {
            try nodes[slot].log.apply(record)
        } catch {
            throw SafetyViolation(invariant: "log matching", detail: "\(nodes[slot].id): \(error)")
        }
    }

    private mutating func apply(
        _ committed: CommittedEntry, slot: Int, commit: LogIndex
    ) throws(SafetyViolation) {
        let id = nodes[slot].id
        let entry = committed.entry
        guard entry.index == nodes[slot].appliedIndex + 1 else {
            throw SafetyViolation(
                invariant: "state-machine safety",
                detail: "\(id) was handed entry \(entry.index) to apply after applying \(nodes[slot].appliedIndex)")
        }
        guard entry.index <= commit else {
            throw SafetyViolation(
                invariant: "state-machine safety",
                detail: "\(id) was handed entry \(entry.index) to apply, beyond its commit index")
        }
        guard nodes[slot].log.entry(at: entry.index) == entry || entry.index <= nodes[slot].log.snapshotIndex else {
            throw SafetyViolation(
                invariant: "state-machine safety",
                detail: "\(id) was handed \(entry) to apply, which it never persisted")
        }
        try safety.observeApply(entry, by: id)
        nodes[slot].appliedIndex = entry.index
        switch entry.payload {
        case .noop:
            break
        case .command(let bytes):
            if !committed.isDuplicate {
                do {
                    try nodes[slot].store.apply(bytes)
                } catch {
                    throw SafetyViolation(invariant: "state-machine safety", detail: "\(id): \(error)")
                }
                statistics.appliedCommands += 1
            }
            if let requestID = entry.requestID, let waiter = nodes[slot].waitingWrites.removeValue(forKey: requestID) {
                respond(.written(handle: waiter.handle), to: waiter.client)
            }
        case .membership(let next):
            applied(next, at: entry.index)
        }
        serveReads(slot)
    }

    private mutating func applied(_ next: Membership, at index: LogIndex) {
        guard index > membershipIndex else { return }
        let previous = membership
        membership = next
        membershipIndex = index
        trace.record(
            "[t=\(now)] membership at \(index): voters \(next.voters.sorted()) learners \(next.learners.sorted())")
        for removed in previous.members.subtracting(next.members).sorted() {
            // Give the removed node a moment to learn of its removal, then stop it for good.
            queue.schedule(.decommission(slot: Int(removed.rawValue) - 1), at: now + 300)
        }
    }

    private mutating func serveReads(_ slot: Int) {
        var remaining: [(index: LogIndex, token: UInt64)] = []
        for pending in nodes[slot].readStatesToServe {
            guard pending.index <= nodes[slot].appliedIndex else {
                remaining.append(pending)
                continue
            }
            if let waiter = nodes[slot].waitingReads.removeValue(forKey: pending.token) {
                let value = nodes[slot].store[waiter.key]
                respond(.read(handle: waiter.handle, value: value), to: waiter.client)
            }
        }
        nodes[slot].readStatesToServe = remaining
    }

    private mutating func compactIfDue(_ slot: Int) throws(SafetyViolation) {
        let applied = nodes[slot].appliedIndex
        guard applied - nodes[slot].log.snapshotIndex >= configuration.compactionThreshold else { return }
        // Not while a leader's sync runs off its loop: this disk holds the log and the snapshot
        // as one file, so compacting syncs every record, which would make the leader's writes
        // durable before their sync returned. (`RaftDriver` compacts meanwhile: its snapshot is
        // a file of its own and its log stays unsynced.)
        guard nodes[slot].syncsInFlight == 0 else { return }
        let snapshot: Snapshot
        do {
            snapshot = try nodes[slot].raft!.compact(snapshotAt: applied, data: nodes[slot].store.snapshotData())
        } catch {
            throw SafetyViolation(invariant: "simulator", detail: "\(nodes[slot].id) cannot compact: \(error)")
        }
        // The snapshot file is written, synced and renamed into place: atomic and durable.
        nodes[slot].disk.write(.snapshot(snapshot))
        nodes[slot].disk.sync()
        try record(.snapshot(snapshot), slot: slot)
        let durable: DurableRaftState
        do {
            durable = try DurableRaftState(replaying: nodes[slot].disk.durableRecords)
        } catch {
            throw SafetyViolation(invariant: "log matching", detail: "\(nodes[slot].id): \(error)")
        }
        nodes[slot].disk.replaceDurable(with: durable.records)
    }

    /// Checks what this node's state says about leaders and commitment.
    private mutating func observe(_ slot: Int) throws(SafetyViolation) {
        guard nodes[slot].lifecycle == .running, let raft = nodes[slot].raft else { return }
        let status = raft.status
        let id = nodes[slot].id
        let isLeader = status.role == .leader
        if isLeader {
            if nodes[slot].leaderOfTerm != status.term {
                nodes[slot].leaderOfTerm = status.term
                statistics.leadersElected += 1
                trace.record("[t=\(now)] \(id) is leader of term \(status.term)")
            }
            try safety.observeLeader(id, term: status.term, log: nodes[slot].log)
        }
        try safety.observeCommit(status.commit, by: id, term: status.term, isLeader: isLeader, log: nodes[slot].log)
    }

    private mutating func send(_ message: Message) {
        for delay in network.arrivalDelays(from: message.from, to: message.to, random: &random) {
            queue.schedule(.deliver(message), at: now + delay)
        }
    }

    // MARK: - Crashes and restarts

    private mutating func crash(slot: Int, midWrite: Bool) throws(SafetyViolation) {
        let id = nodes[slot].id
        let unsynced = nodes[slot].disk.unsynced
        let damage = nodes[slot].disk.crash(
            random: &random, tornWriteProbability: configuration.faults.tornWriteProbability)
        let lostAnEntry = unsynced[damage.survived...].contains { if case .entry = $0 { true } else { false } }
        statistics.crashes += 1
        if midWrite { statistics.crashesDuringWrite += 1 }
        if damage.tornRecord { statistics.tornWrites += 1 }
        // Outside a write, the unsynced records are hard states that moved just the commit, and
        // a leader's writes whose sync is still running off its loop.
        if !midWrite && damage.lost > 0 {
            if nodes[slot].syncsInFlight > 0 && lostAnEntry {
                statistics.crashesLosingLeaderWrites += 1
            } else if !lostAnEntry {
                statistics.crashesLosingCommit += 1
            }
        }
        trace.record(
            "[t=\(now)] \(id) crashed"
                + (midWrite || damage.lost > 0
                    ? "\(midWrite ? " mid-write" : ""): \(damage.survived) unsynced records survived, "
                        + "\(damage.lost) lost" + (damage.tornRecord ? ", the first of them torn" : "") : ""))
        nodes[slot].raft = nil
        nodes[slot].lifecycle = .crashed
        nodes[slot].incarnation += 1
        nodes[slot].crashesOnNextWrite = false
        nodes[slot].crashesAfterNextWrite = false
        nodes[slot].syncsInFlight = 0
        nodes[slot].leaderOfTerm = nil
        nodes[slot].waitingWrites = [:]
        nodes[slot].waitingReads = [:]
        nodes[slot].readStatesToServe = []
        // A supervisor often restarts a process at once (its messages still in flight); sometimes
        // the machine takes a while to come back.
        let downtime =
            phase == .chaos && random.chance(0.5)
            ? UInt64(random.int(in: 100...2_000)) : UInt64(random.int(in: 1...30))
        queue.schedule(.restart(slot: slot), at: now + downtime)
        reportProcessGone(slot)
        try checkNothingCommittedLost()
    }

    /// A killed process's host closes its connections and refuses new ones, and the peers notice
    /// (the node shell's `HTTP2PeerTransport` does); a machine that vanishes says nothing. Half the
    /// crashes are of each kind. Only peers still linked both ways to the dead node notice.
    private mutating func reportProcessGone(_ slot: Int) {
        guard random.chance(0.5) else { return }
        let id = nodes[slot].id
        for observer in nodes.indices where observer != slot && nodes[observer].lifecycle == .running {
            let peer = nodes[observer].id
            guard network.delivers(from: id, to: peer), network.delivers(from: peer, to: id) else { continue }
            let delay = UInt64(random.int(in: 1...Int(2 * configuration.tickInterval)))
            queue.schedule(
                .processGone(observer: observer, gone: slot, goneIncarnation: nodes[slot].incarnation), at: now + delay)
        }
    }

    private mutating func restart(slot: Int) throws(SafetyViolation) {
        guard nodes[slot].lifecycle == .crashed else { return }
        let id = nodes[slot].id
        let state: DurableRaftState
        do {
            state = try DurableRaftState(replaying: nodes[slot].disk.recover())
        } catch let error as SimulatedDisk<RaftRecord>.CorruptionError {
            throw SafetyViolation(invariant: "recovery", detail: "\(id) cannot recover: \(error)")
        } catch {
            throw SafetyViolation(invariant: "log matching", detail: "\(id) cannot recover: \(error)")
        }
        do {
            nodes[slot].raft = try RaftNode(
                configuration: raftConfiguration(for: id), hardState: state.hardState, snapshot: state.snapshot,
                entries: state.entries, bootstrapMembership: nodes[slot].bootstrapMembership,
                random: random.splitForNode())
        } catch {
            throw SafetyViolation(invariant: "recovery", detail: "\(id) cannot restart from its disk: \(error)")
        }
        nodes[slot].log = state
        nodes[slot].syncedHardState = state.hardState
        do {
            nodes[slot].store = try state.snapshot.map { try KeyValueStore(snapshot: $0.data) } ?? KeyValueStore()
        } catch {
            throw SafetyViolation(invariant: "state-machine safety", detail: "\(id): \(error)")
        }
        nodes[slot].appliedIndex = state.snapshotIndex
        nodes[slot].lifecycle = .running
        nodes[slot].incarnation += 1
        statistics.restarts += 1
        trace.record(
            "[t=\(now)] \(id) restarted: term \(state.hardState.term), commit \(state.hardState.commit), "
                + "log \(state.firstIndex)...\(state.lastIndex)")
        scheduleFirstTick(slot)
        try drain(slot)
    }

    private func checkNothingCommittedLost() throws(SafetyViolation) {
        var durable: [NodeID: DurableRaftState] = [:]
        for node in nodes where node.lifecycle == .running || node.lifecycle == .crashed {
            do {
                durable[node.id] = try DurableRaftState(replaying: node.disk.durableRecords)
            } catch {
                throw SafetyViolation(invariant: "log matching", detail: "\(node.id)'s disk: \(error)")
            }
        }
        try safety.checkNothingCommittedLost(durable: durable)
    }

    // MARK: - Faults

    private var leaderSlot: Int? {
        var best: (slot: Int, term: Term)?
        for (slot, node) in nodes.enumerated() where node.lifecycle == .running {
            let status = node.raft!.status
            if status.role == .leader, best.map({ status.term > $0.term }) ?? true { best = (slot, status.term) }
        }
        return best?.slot
    }

    private var memberSlots: [Int] {
        nodes.indices.filter { nodes[$0].lifecycle == .running || nodes[$0].lifecycle == .crashed }
    }

    private mutating func injectFaults() throws(SafetyViolation) {
        let faults = configuration.faults
        if !isPartitioned && random.chance(faults.partitionProbability) { startPartition() }
        if random.chance(faults.crashProbability) { try crashSomeNode() }
        if random.chance(faults.pauseProbability) { pauseSomeNode() }
        if random.chance(faults.membershipChangeProbability) { try changeMembership() }
        if random.chance(faults.leadershipTransferProbability) { try transferLeadership() }
    }

    private mutating func startPartition() {
        let members = memberSlots.map { nodes[$0].id }
        guard members.count >= 2 else { return }
        let everyone = Set(members)
        let description: String
        switch random.int(in: 0...4) {
        case 0:
            let node = random.element(of: members)
            network.partition([node], from: everyone.subtracting([node]))
            description = "\(node) isolated"
        case 1:
            let node = leaderSlot.map { nodes[$0].id } ?? random.element(of: members)
            network.partition([node], from: everyone.subtracting([node]))
            description = "leader \(node) isolated"
        case 2:
            let shuffled = members.shuffled(using: &random)
            let cut = random.int(in: 1...(shuffled.count - 1))
            let side = Set(shuffled[..<cut])
            network.partition(side, from: everyone.subtracting(side))
            description = "split \(side.sorted()) | \(everyone.subtracting(side).sorted())"
        case 3:
            let node = random.element(of: members)
            if random.chance(0.5) {
                network.cutOneWay(from: [node], to: everyone)
                description = "\(node) can hear but not be heard"
            } else {
                network.cutOneWay(from: everyone, to: [node])
                description = "\(node) can be heard but not hear"
            }
        default:
            var links: [Link] = []
            for _ in 0..<random.int(in: 1...3) {
                let from = random.element(of: members)
                let to = random.element(of: members)
                guard from != to else { continue }
                network.cutOneWay(from: [from], to: [to])
                links.append(Link(from: from, to: to))
            }
            description = "links cut one way: \(links)"
        }
        isPartitioned = true
        partitionEpisode += 1
        statistics.partitions += 1
        trace.record("[t=\(now)] partition: \(description)")
        queue.schedule(.heal(episode: partitionEpisode), at: now + UInt64(random.int(in: 300...3_000)))
    }

    private mutating func healNetwork() {
        network.heal()
        isPartitioned = false
        trace.record("[t=\(now)] network healed")
    }

    private mutating func crashSomeNode() throws(SafetyViolation) {
        let running = nodes.indices.filter { nodes[$0].lifecycle == .running }
        guard let slot = running.isEmpty ? nil : random.element(of: running) else { return }
        // Mostly keep a majority of voters up so the cluster makes progress; now and then take
        // down more, to see it recover from its disks alone.
        let votersUp = running.filter { membership.voters.contains(nodes[$0].id) }.count
        let majority = membership.voters.count / 2 + 1
        if membership.voters.contains(nodes[slot].id) && votersUp - 1 < majority && !random.chance(0.1) { return }
        if random.chance(configuration.faults.crashDuringWriteProbability) {
            nodes[slot].crashesOnNextWrite = true
            trace.record("[t=\(now)] \(nodes[slot].id) will crash during its next write")
        } else if random.chance(0.5) {
            nodes[slot].crashesAfterNextWrite = true
            trace.record("[t=\(now)] \(nodes[slot].id) will crash right after its next write")
        } else {
            try crash(slot: slot, midWrite: false)
        }
    }

    /// Asks the leader for the next step of a membership walk that keeps at least 3 voters:
    /// add a learner, promote it, remove a voter (perhaps the leader itself).
    /// Holds an event for a paused node until it wakes. A waking process finds many sockets
    /// readable at once and serves them in no particular order, so held events are reordered.
    private mutating func deferUntilAwake(_ event: Event, slot: Int) {
        let jitter = UInt64(random.int(in: 0...Int(2 * configuration.tickInterval)))
        queue.schedule(event, at: nodes[slot].pausedUntil + jitter)
    }

    /// Freezes a node for up to a few election timeouts; a paused leader wakes up still believing
    /// it leads, which is when stale reads and stale writes would show.
    private mutating func pauseSomeNode() {
        let running = nodes.indices.filter { nodes[$0].lifecycle == .running && nodes[$0].pausedUntil <= now }
        guard !running.isEmpty else { return }
        let slot = random.chance(0.5) ? (leaderSlot ?? random.element(of: running)) : random.element(of: running)
        let pause = UInt64(random.int(in: 50...Int(60 * configuration.tickInterval)))
        nodes[slot].pausedUntil = now + pause
        statistics.pauses += 1
        trace.record("[t=\(now)] \(nodes[slot].id) paused until t=\(now + pause)")
    }

    private mutating func changeMembership() throws(SafetyViolation) {
        guard let leader = leaderSlot else { return }
        let current = nodes[leader].raft!.status.membership
        let spare = nodes.indices.first { nodes[$0].lifecycle == .notStarted }
        let change: MembershipChange
        if let learner = current.learners.min() {
            change = .promote(learner)
        } else if current.voters.count > 3 && (spare == nil || random.chance(0.5)) {
            change = .remove(random.element(of: current.voters.sorted()))
        } else if let spare {
            change = .addLearner(nodes[spare].id)
        } else {
            return
        }
        do {
            try nodes[leader].raft!.changeMembership(change)
        } catch {
            trace.record("[t=\(now)] \(nodes[leader].id) refused membership change \(change): \(error)")
            return
        }
        statistics.membershipChanges += 1
        trace.record("[t=\(now)] \(nodes[leader].id) proposes membership change \(change)")
        if case .addLearner(let id) = change, let spare, nodes[spare].id == id {
            // The operator starts the new node; it joins empty and learns everything from the leader.
            try start(slot: spare, joining: true)
        }
        try drain(leader)
    }

    private mutating func transferLeadership() throws(SafetyViolation) {
        guard let leader = leaderSlot else { return }
        let voters = nodes[leader].raft!.status.membership.voters
        let candidates = voters.filter { $0 != nodes[leader].id }.sorted()
        guard !candidates.isEmpty else { return }
        let target = random.element(of: candidates)
        do {
            try nodes[leader].raft!.transferLeadership(to: target)
            statistics.leadershipTransfers += 1
            trace.record("[t=\(now)] \(nodes[leader].id) transfers leadership to \(target)")
        } catch {
            trace.record("[t=\(now)] \(nodes[leader].id) refused to transfer leadership to \(target): \(error)")
        }
        try drain(leader)
    }

    /// Ends the chaos: the network heals and becomes reliable, crashed nodes come back.
    private mutating func calmDown() throws(SafetyViolation) {
        phase = .quiet
        healNetwork()
        network.faults = .reliable
        trace.record("[t=\(now)] chaos over: network reliable, crashed nodes restarting")
        for slot in nodes.indices {
            nodes[slot].crashesOnNextWrite = false
            nodes[slot].crashesAfterNextWrite = false
            if nodes[slot].lifecycle == .crashed {
                queue.schedule(.restart(slot: slot), at: now + UInt64(random.int(in: 1...50)))
            }
        }
    }

    // MARK: - Clients

    private mutating func nextHistoryTime() -> UInt64 {
        historyClock += 1
        return historyClock
    }

    private mutating func startOperation(_ client: Int) {
        guard phase == .chaos || phase == .quiet, clients[client].call == nil else { return }
        clients[client].sequence += 1
        let id = clients[client].id
        let requestID = RequestID(client: id, sequence: clients[client].sequence)
        let key = UInt32(random.int(in: 0...Int(configuration.keyCount) - 1))
        let operation: KeyValueOperation =
            random.chance(0.5)
            ? .put(key: key, value: id << 32 | clients[client].sequence) : .get(key: key)
        let handle = history.invoke(client: id, operation: operation, at: nextHistoryTime())
        clients[client].call = ClientCall(handle: handle, operation: operation, requestID: requestID, attempt: 0)
        trace.record("[t=\(now)] c\(id) invokes \(operation)")
        send(client)
    }

    /// Sends the client's current call to the node it believes leads (or any member).
    private mutating func send(_ client: Int) {
        guard let call = clients[client].call else { return }
        let members = memberSlots
        guard !members.isEmpty else { return }
        let guess = clients[client].leaderGuess.map { Int($0.rawValue) - 1 }
        let slot = guess.flatMap { members.contains($0) ? $0 : nil } ?? random.element(of: members)
        let request: ClientRequest
        switch call.operation {
        case .put(let key, let value):
            request = .put(handle: call.handle, requestID: call.requestID, key: key, value: value)
        case .get(let key):
            request = .get(handle: call.handle, key: key)
        }
        if let delay = clientLinkDelay() {
            queue.schedule(.clientRequest(slot: slot, request), at: now + delay)
        }
        queue.schedule(
            .clientTimeout(client: client, handle: call.handle, attempt: call.attempt),
            at: now + configuration.clientTimeout)
    }

    private mutating func retry(_ client: Int) {
        guard var call = clients[client].call else { return }
        call.attempt += 1
        clients[client].call = call
        let backoff = UInt64(random.int(in: 5...40))
        queue.schedule(.clientRetry(client: client, handle: call.handle, attempt: call.attempt), at: now + backoff)
    }

    /// Client traffic crosses the same lossy network but no partition (clients reach every node).
    private mutating func clientLinkDelay() -> UInt64? {
        guard !random.chance(network.faults.lossProbability) else { return nil }
        let range = network.faults.delay
        return range.lowerBound == range.upperBound ? range.lowerBound : UInt64.random(in: range, using: &random)
    }

    private mutating func receive(_ request: ClientRequest, at slot: Int) throws(SafetyViolation) {
        guard nodes[slot].lifecycle == .running else { return }
        // A request whose client already has its answer (a duplicate, or a late retry) is dropped.
        guard let client = clients.firstIndex(where: { $0.call?.handle == request.handle }) else { return }
        do {
            switch request {
            case .put(let handle, let requestID, let key, let value):
                try nodes[slot].raft!.propose(KeyValueCommand.put(key: key, value: value).encoded, requestID: requestID)
                nodes[slot].waitingWrites[requestID] = (client, handle)
            case .get(let handle, let key):
                let token = nextReadToken
                nextReadToken += 1
                let leaseReads = nodes[slot].raft!.leaseReads
                try nodes[slot].raft!.readIndex(
                    context: Self.context(for: token), now: configuration.readLease ? clockReading(slot) : nil)
                statistics.leaseReads += Int(nodes[slot].raft!.leaseReads - leaseReads)
                nodes[slot].waitingReads[token] = (client, handle, key)
            }
        } catch {
            respond(.redirect(handle: request.handle, leader: nodes[slot].raft!.leader), to: client)
        }
        try drain(slot)
    }

    private mutating func respond(_ response: ClientResponse, to client: Int) {
        if let delay = clientLinkDelay() {
            queue.schedule(.clientResponse(client: client, response), at: now + delay)
        }
    }

    private mutating func hear(_ response: ClientResponse, client: Int) {
        guard let call = clients[client].call else { return }
        let id = clients[client].id
        switch response {
        case .written(let handle) where handle == call.handle:
            history.complete(handle, result: .written, at: nextHistoryTime())
        case .read(let handle, let value) where handle == call.handle:
            history.complete(handle, result: .read(value), at: nextHistoryTime())
        case .redirect(let handle, let leader) where handle == call.handle:
            clients[client].leaderGuess = leader
            retry(client)
            return
        default:
            return
        }
        trace.record("[t=\(now)] c\(id) completes \(history.operations[call.handle])")
        clients[client].call = nil
        queue.schedule(.clientNext(client: client), at: now + UInt64(random.int(in: 0...50)))
    }

    /// Read contexts are ASCII (`r<token>`) so they read well in the core's message descriptions.
    private static func context(for token: UInt64) -> [UInt8] {
        Array("r\(token)".utf8)
    }

    private static func token(from context: [UInt8]) -> UInt64 {
        UInt64(String(decoding: context.dropFirst(), as: UTF8.self)) ?? 0
    }

    // MARK: - The end of the run

    private mutating func finalChecks() throws(SafetyViolation) {
        try checkNothingCommittedLost()
        if configuration.requiresProgressAfterHealing {
            for client in clients {
                guard let call = client.call else { continue }
                throw SafetyViolation(
                    invariant: "progress after healing",
                    detail:
                        "c\(client.id)'s \(call.operation) is still unanswered \(configuration.quietDuration) "
                        + "time units after the network healed and every node restarted")
            }
        }
        if configuration.requiresProgressAfterHealing { try checkConvergence() }
        let report = LinearizabilityChecker().check(history.operations)
        statistics.linearizabilityChecks += report.keysChecked
        statistics.completedOperations = history.completedCount
        statistics.pendingOperations = history.operations.count - history.completedCount
        switch report.verdict {
        case .linearizable:
            break
        case .notLinearizable(let violation):
            throw SafetyViolation(invariant: "linearizability", detail: violation.description)
        case .undecided(let key, let steps):
            throw SafetyViolation(
                invariant: "linearizability",
                detail: "the checker gave up on key k\(key) after \(steps) search steps; shorten the run")
        }
    }

    /// After the quiet period (no faults, and no writes in its second half) there is a leader and
    /// every member has applied everything it committed, to the same state.
    private func checkConvergence() throws(SafetyViolation) {
        guard let leader = leaderSlot else {
            throw SafetyViolation(
                invariant: "progress after healing",
                detail: "no leader \(configuration.quietDuration) time units after the network healed")
        }
        let status = nodes[leader].raft!.status
        for member in status.membership.members.sorted() {
            let slot = Int(member.rawValue) - 1
            guard nodes.indices.contains(slot), nodes[slot].lifecycle == .running else {
                throw SafetyViolation(
                    invariant: "progress after healing", detail: "member \(member) is not running at the end")
            }
            guard nodes[slot].appliedIndex == status.commit, nodes[slot].store == nodes[leader].store else {
                throw SafetyViolation(
                    invariant: "progress after healing",
                    detail:
                        "\(member) applied up to \(nodes[slot].appliedIndex) but leader \(status.id) committed "
                        + "\(status.commit), \(configuration.quietDuration / 2) time units after the last write "
                        + "(\(member) progress at the leader: \(status.progress[member].map { "\($0)" } ?? "none"))")
            }
        }
    }

    private static func describe(_ kind: MessageKind) -> String {
        let text = String(describing: kind)
        return text.count > 240 ? String(text.prefix(240)) + "…" : text
    }
}
