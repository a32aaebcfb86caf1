// The Raft node: a value-type state machine with no I/O, no clock and no global randomness.
public import ClusterModel

/// One Raft node's consensus state (Ongaro's dissertation; the core/shell split of etcd's raft).
///
/// Inputs: `tick()` (one unit of logical time), `step(_:)` (a message from a peer), `propose(_:)`,
/// `readIndex(context:)` (or `readIndex(context:now:)`, with the leader's clock for lease reads), `transferLeadership(to:)`, `changeMembership(_:)`, `compact(snapshotAt:data:)`.
/// Output: a `Ready` batch whose documented duties the shell performs in order before `advance(_:)`.
/// The node never reads a clock, touches a file or socket, or draws randomness other than from the
/// `SeededGenerator` it was built with, so a run replays exactly from its seed and inputs.
public struct RaftNode: Sendable {
    let configuration: RaftConfiguration
    var random: SeededGenerator

    // MARK: State that the shell persists (through `Ready.hardState`, `entries` and `snapshot`).

    /// Invariant: never decreases.
    var currentTerm: Term = 0
    /// The vote cast in `currentTerm`. Invariant: reset only when `currentTerm` grows.
    var vote: NodeID?
    var log: RaftLog
    /// Invariant: `log.snapshotIndex <= commit <= log.lastIndex`; never decreases.
    var commit: LogIndex = 0

    // MARK: Volatile state.

    var currentRole: Role = .follower
    var currentLeader: NodeID?
    /// On a follower: the highest commit index `currentLeader` has sent this node (an append's,
    /// a heartbeat's, which the leader caps at our match, or a snapshot's last index), so the
    /// shell can tell how far behind its leader it has applied. Invariant: 0 whenever
    /// `currentLeader` is nil or this node leads; reset with every change of role or leader.
    var heardLeaderCommit: LogIndex = 0
    /// The membership in force: the latest one in the log, committed or not (Ongaro §4.1).
    var membership: Membership
    /// The index of the entry that set `membership` (the snapshot index, or 0 at bootstrap).
    var membershipIndex: LogIndex = 0
    /// The membership in force at `log.snapshotIndex`, to fall back on when a suffix is truncated.
    var snapshotMembership: Membership
    /// Other members (plus `departingNodes`), sorted, so that every broadcast happens in the same
    /// order on every run.
    var peers: [NodeID] = []
    /// On a leader: nodes removed by the membership change that is not yet committed. They still get
    /// the log (not counted in any quorum) until it commits, so that they learn they were removed
    /// and stop campaigning.
    var departingNodes: Set<NodeID> = []

    /// Ticks since the last leader contact (follower), the election start (candidate), or the start of
    /// the current leadership-transfer window (leader).
    var electionElapsed = 0
    var heartbeatElapsed = 0
    /// Drawn in [electionTicks, 2 × electionTicks) at every reset (§5.2).
    var randomizedElectionTimeout = 0
    /// Votes received in the current (pre-)campaign: voter → granted.
    var votes: [NodeID: Bool] = [:]

    // MARK: Leader state (empty on other roles).

    /// Invariant: holds exactly `peers` while leader; empty otherwise.
    var progress: [NodeID: Progress] = [:]
    /// The voter being handed leadership; proposals are refused meanwhile.
    var transferTarget: NodeID?
    /// Bytes appended by this leader and not yet committed (bounds memory when followers are gone).
    var uncommittedBytes = 0
    /// The latest ReadIndex round; heartbeats carry it and followers echo it.
    var readRound: UInt64 = 0
    /// Reads waiting for a quorum to confirm `round`, oldest first.
    var pendingReads: [PendingRead] = []
    /// Reads that arrived before this leader committed an entry of its term (§6.4 step 1).
    var readsAwaitingLeaderCommit: [(context: [UInt8], requester: NodeID)] = []
    /// A heartbeat round must go out at the next `ready()` to confirm pending reads.
    var readHeartbeatDue = false
    /// The lease round in flight: its ReadIndex round and when it began on the leader's clock.
    /// Heartbeats carry `leasePromise` while it is set.
    var leaseRound: (round: UInt64, startedAt: Duration)?
    /// The read lease runs until here on the leader's clock (nil: none).
    var leaseExpiry: Duration?
    /// This leader sent TimeoutNow in its term, whose election voters grant despite their promise:
    /// it takes no lease again in this term.
    var leaseForfeited = false
    /// Reads this node answered from its lease, without a heartbeat round, since it started.
    public internal(set) var leaseReads: UInt64 = 0

    // MARK: Lease promises (any role).

    /// Ticks left of the lease promise this node keeps (`LeasePromise`): while above zero it grants
    /// no vote (but a transfer's) and does not campaign. Starts at `LeasePromise.startTicks`
    /// when the node keeps promises, for whatever it promised before it stopped. Kept across
    /// changes of role and term: a promise is about time.
    var leasePromiseTicksLeft: Int

    // MARK: Snapshots.

    /// The latest snapshot of this node's state machine, streamed to followers that fell behind.
    var latestSnapshot: Snapshot?
    /// A snapshot being received from the leader, chunk by chunk.
    var incomingSnapshot: Snapshot?

    // MARK: Hand-over to the shell.

    var messages: [Message] = []
    var readStates: [ReadState] = []
    /// A snapshot installed from the leader that the shell has not been handed yet.
    var snapshotToHandOver: Snapshot?
    /// The first log index not yet handed to the shell for persistence.
    /// Invariant: `unstableFrom <= log.lastIndex + 1`; it moves back when a suffix is truncated.
    var unstableFrom: LogIndex
    var handedHardState: HardState
    /// The hard state the shell has reported durable (through `advance`; a batch advanced with
    /// `durable: false` changes only the commit, which need not be). While the term and vote in
    /// it are the current ones, a leader's messages promise nothing that is still unwritten.
    var persistedHardState: HardState
    /// The last log index the shell has reported durable (through `advance`, or `persisted` for
    /// a batch advanced with `durable: false`). A leader counts
    /// itself toward a quorum only up to here, which is what lets it send entries while it writes
    /// them (Ongaro's dissertation §10.2.1). Invariant: `persistedIndex <= log.lastIndex`.
    var persistedIndex: LogIndex
    /// Bumped whenever the log loses a suffix or is replaced by a snapshot. A `Ready` handed out
    /// before that may hold entries the disk no longer has once later batches are written, so its
    /// `advance` does not raise `persistedIndex` (see `Ready.logGeneration`).
    var logGeneration: UInt64 = 0
    var handedLeader: NodeID?
    var handedRole: Role = .follower
    /// Committed entries up to here were handed to the shell for apply. Invariant: `applied <= handedCommit <= commit`.
    var handedCommit: LogIndex
    /// Acknowledged by `advance`: the shell's state machine reflects every entry up to here.
    var applied: LogIndex
    /// Client → highest sequence handed out for apply, as of `handedCommit` (the dedup table).
    var appliedRequests: [UInt64: UInt64]

    struct PendingRead: Sendable {
        var round: UInt64
        var index: LogIndex
        var context: [UInt8]
        var requester: NodeID
    }

    /// Creates a node of a new cluster, or one about to join an existing cluster.
    ///
    /// Every founding node gets the same `membership`; it stands for the state at index 0 and is
    /// not written to the log. A node joining later starts with an empty membership and learns the
    /// cluster's membership from the leader's log or snapshot.
    public init(
        configuration: RaftConfiguration,
        membership: Membership,
        random: SeededGenerator
    ) throws(ConfigurationError) {
        try configuration.validate()
        try Self.validate(membership)
        self.configuration = configuration
        self.random = random
        self.log = RaftLog()
        self.membership = membership
        self.snapshotMembership = membership
        self.unstableFrom = 1
        self.handedHardState = HardState()
        self.persistedHardState = HardState()
        self.persistedIndex = 0
        self.handedCommit = 0
        self.applied = 0
        self.appliedRequests = [:]
        self.peers = Self.sortedPeers(of: membership, excluding: configuration.id)
        self.leasePromiseTicksLeft = configuration.tickInterval.map { LeasePromise.startTicks(tick: $0) } ?? 0
        resetElectionTimer()
    }

    /// Restarts a node from what its shell persisted: hard state, latest snapshot, entries after it.
    ///
    /// `bootstrapMembership` is the membership the node was created with; it applies when there is
    /// no snapshot and no membership entry in `entries`. The shell restores its state machine from
    /// `snapshot`; committed entries after it are handed out again in the next `Ready`s.
    ///
    /// `hardState.commit` may be older than `snapshot` (a commit-only hard state need not be
    /// fsynced, see `Ready`'s duty 1): the commit restarts at the larger of the two, since a
    /// snapshot holds only committed entries. It must not pass the stored log's last index.
    public init(
        configuration: RaftConfiguration,
        hardState: HardState,
        snapshot: Snapshot?,
        entries: [Entry],
        bootstrapMembership: Membership,
        random: SeededGenerator
    ) throws(RestoreError) {
        do { try configuration.validate() } catch { throw RestoreError("invalid configuration: \(error)") }
        let base = snapshot?.metadata.membership ?? bootstrapMembership
        do { try Self.validate(base) } catch { throw RestoreError("invalid membership: \(error)") }
        let snapshotIndex = snapshot?.metadata.index ?? 0
        let snapshotTerm = snapshot?.metadata.term ?? 0
        var stored = entries
        if let first = stored.first, first.index <= snapshotIndex {
            // A crash between writing a leader's snapshot and clearing the old log leaves entries the
            // snapshot covers. Keep what follows only if the log agrees with the snapshot's last entry.
            let atSnapshot = stored.first { $0.index == snapshotIndex }
            if atSnapshot?.term == snapshotTerm {
                stored.removeAll { $0.index <= snapshotIndex }
            } else {
                stored = []
            }
        }
        var expectedIndex = snapshotIndex + 1
        var previousTerm = snapshotTerm
        for entry in stored {
            guard entry.index == expectedIndex else {
                throw RestoreError(
                    "stored entries are not contiguous: expected index \(expectedIndex), found \(entry); "
                        + "the log on disk is damaged"
                )
            }
            guard entry.term >= previousTerm else {
                throw RestoreError("stored entry \(entry) has a lower term than the entry before it (\(previousTerm))")
            }
            expectedIndex = expectedIndex + 1
            previousTerm = entry.term
        }
        let restoredLog = RaftLog(snapshotIndex: snapshotIndex, snapshotTerm: snapshotTerm, entries: stored)
        guard hardState.commit <= restoredLog.lastIndex else {
            throw RestoreError(
                "stored commit index \(hardState.commit) is beyond the stored log's last index \(restoredLog.lastIndex); "
                    + "entries the node acknowledged are missing from disk"
            )
        }
        self.configuration = configuration
        self.random = random
        self.log = restoredLog
        // The hard state is written after the entries and snapshot of the same batch; a crash in
        // between leaves it behind them. Nothing of that batch was sent (sending waits for the
        // fsync), so catching up is safe: a snapshot is committed, and a vote in a term we only
        // know from an entry was never cast.
        if hardState.term >= restoredLog.lastTerm {
            self.currentTerm = hardState.term
            self.vote = hardState.vote
        } else {
            self.currentTerm = restoredLog.lastTerm
            self.vote = nil
        }
        self.commit = max(hardState.commit, snapshotIndex)
        self.membership = base
        self.snapshotMembership = base
        self.membershipIndex = snapshotIndex
        self.latestSnapshot = snapshot
        self.unstableFrom = restoredLog.lastIndex + 1
        self.handedHardState = hardState
        self.persistedHardState = hardState
        self.persistedIndex = restoredLog.lastIndex
        self.handedCommit = snapshotIndex
        self.applied = snapshotIndex
        self.appliedRequests = snapshot?.metadata.appliedRequests ?? [:]
        // A node that restarts keeps whatever promise it gave before it stopped (it cannot know).
        self.leasePromiseTicksLeft = configuration.tickInterval.map { LeasePromise.startTicks(tick: $0) } ?? 0
        recomputeMembershipFromLog()
        resetElectionTimer()
    }

    static func validate(_ membership: Membership) throws(ConfigurationError) {
        let both = membership.voters.intersection(membership.learners)
        if !both.isEmpty {
            throw ConfigurationError(
                "\(both.sorted().map(\.description).joined(separator: " ")) listed as both voter and learner"
            )
        }
        if membership.members.contains(NodeID(0)) {
            throw ConfigurationError("node id 0 is not allowed in a membership (0 means \"no node\")")
        }
    }

    static func sortedPeers(of membership: Membership, excluding id: NodeID) -> [NodeID] {
        membership.members.subtracting([id]).sorted()
    }

    // MARK: Observing.

    public var id: NodeID { configuration.id }
    public var role: Role { currentRole }
    public var leader: NodeID? { currentLeader }
    public var term: Term { currentTerm }

    public var status: RaftStatus {
        var followers: [NodeID: FollowerStatus] = [:]
        for (node, record) in progress { followers[node] = record.status }
        return RaftStatus(
            id: id,
            term: currentTerm,
            vote: vote,
            role: currentRole,
            leader: currentLeader,
            commit: commit,
            leaderCommit: currentRole == .leader ? commit : heardLeaderCommit,
            applied: applied,
            firstIndex: log.firstIndex,
            lastIndex: log.lastIndex,
            lastTerm: log.lastTerm,
            durableIndex: persistedIndex,
            snapshotIndex: log.snapshotIndex,
            membership: membership,
            membershipIndex: membershipIndex,
            progress: followers,
            leadershipTransferTarget: transferTarget,
            leaseReads: leaseReads
        )
    }

    /// The entries still in the in-memory log from `index` on (for tests and the simulator's checks).
    public func logEntries(from index: LogIndex) -> ArraySlice<Entry> { log.entries(from: index) }

    // MARK: Inputs.

    /// Advances logical time by one tick: election timeouts for followers, heartbeats for leaders.
    public mutating func tick() {
        tickLeasePromise()
        if currentRole == .leader {
            tickLeader()
        } else {
            tickElection()
        }
    }

    /// Takes one message from a peer.
    ///
    /// Throws, changing nothing, when the message is addressed to another node or is malformed (its
    /// entries do not follow `previousIndex` one by one with non-decreasing terms, a snapshot chunk
    /// lies outside its snapshot, …): Raft's safety arguments assume correct peers, so such a message
    /// is refused rather than trusted.
    public mutating func step(_ message: Message) throws(StepError) {
        guard message.to == id else { throw StepError.wrongRecipient(expected: id, message: message) }
        if let reason = Self.malformation(of: message) { throw StepError.malformed(reason: reason, message: message) }
        handle(message)
    }

    static func malformation(of message: Message) -> String? {
        if message.from.rawValue == 0 { return "the sender is node 0" }
        switch message.kind {
        case .append(let append):
            var expectedIndex = append.previousIndex + 1
            var previousTerm = append.previousTerm
            for entry in append.entries {
                if entry.index != expectedIndex { return "entry \(entry) where index \(expectedIndex) was due" }
                if entry.term < previousTerm { return "entry \(entry) has a lower term than the one before it" }
                if entry.term > message.term {
                    return "entry \(entry) is from a term after the sender's \(message.term)"
                }
                if case .membership(let membership) = entry.payload,
                    !membership.voters.isDisjoint(with: membership.learners)
                {
                    return "entry \(entry) lists a node as both voter and learner"
                }
                expectedIndex = expectedIndex + 1
                previousTerm = entry.term
            }
        case .installSnapshot(let chunk):
            if chunk.offset < 0 || chunk.totalBytes < 0 || chunk.offset + chunk.bytes.count > chunk.totalBytes {
                return "chunk \(chunk.offset)+\(chunk.bytes.count) lies outside a snapshot of \(chunk.totalBytes) bytes"
            }
            if chunk.isLast && chunk.offset + chunk.bytes.count != chunk.totalBytes {
                return "the last chunk ends at \(chunk.offset + chunk.bytes.count), not at \(chunk.totalBytes)"
            }
        case .snapshotResponse(let response):
            if response.nextOffset < 0 { return "negative snapshot offset \(response.nextOffset)" }
        default:
            break
        }
        return nil
    }

    /// Proposes a client command; it is committed (and handed out for apply) once a quorum has it.
    ///
    /// Returns the index the command was appended at. The command may still be lost if this leader is
    /// deposed before it commits; the client then retries with the same `requestID`.
    @discardableResult
    public mutating func propose(_ command: [UInt8], requestID: RequestID? = nil) throws(ProposalError) -> LogIndex {
        guard currentRole == .leader else { throw ProposalError.notLeader(leaderHint: currentLeader) }
        if let target = transferTarget { throw ProposalError.leadershipTransferInProgress(target: target) }
        let entry = Entry(term: currentTerm, index: log.lastIndex + 1, requestID: requestID, payload: .command(command))
        if uncommittedBytes > 0 && uncommittedBytes + entry.byteSize > configuration.maxUncommittedBytes {
            throw ProposalError.tooManyUncommittedBytes(limit: configuration.maxUncommittedBytes)
        }
        appendAsLeader(entry)
        return entry.index
    }

    // MARK: Output.

    /// There is work for the shell.
    public var hasReady: Bool {
        if !messages.isEmpty || !readStates.isEmpty || snapshotToHandOver != nil { return true }
        if unstableFrom <= log.lastIndex || handedCommit < commit { return true }
        if hardState != handedHardState || currentLeader != handedLeader || currentRole != handedRole { return true }
        return currentRole == .leader && leaderHasTraffic
    }

    var hardState: HardState { HardState(term: currentTerm, vote: vote, commit: commit) }

    /// Takes the work that is due: see `Ready` for the order in which the shell must do it.
    ///
    /// Each call hands out only what is new; it may be called again before `advance(_:)`.
    public mutating func ready() -> Ready {
        if currentRole == .leader { sendLeaderTraffic() }
        var batch = Ready(leader: currentLeader, role: currentRole)
        let state = hardState
        if state != handedHardState {
            batch.hardState = state
            handedHardState = state
        }
        if let snapshot = snapshotToHandOver {
            batch.snapshot = snapshot
            snapshotToHandOver = nil
        }
        if unstableFrom <= log.lastIndex {
            batch.entries = Array(log.entries(from: unstableFrom))
            unstableFrom = log.lastIndex + 1
        }
        batch.logGeneration = logGeneration
        swap(&batch.messages, &messages)
        // A leader whose term and vote are on disk promises nothing by its appends, heartbeats or
        // read answers that the write still in progress could break: it counts its own entries
        // toward commit only once they are reported durable. Everyone else waits for the fsync.
        batch.canSendBeforePersisting =
            currentRole == .leader && batch.snapshot == nil && currentTerm == persistedHardState.term
            && vote == persistedHardState.vote
        if handedCommit < commit {
            var bytes = 0
            var index = handedCommit + 1
            while index <= commit && (batch.committedEntries.isEmpty || bytes < configuration.maxCommittedBytesPerReady)
            {
                let entry = log.entry(at: index)
                bytes += entry.byteSize
                batch.committedEntries.append(CommittedEntry(entry: entry, isDuplicate: recordDelivery(of: entry)))
                index = index + 1
            }
            handedCommit = index.previous
        }
        swap(&batch.readStates, &readStates)
        handedLeader = currentLeader
        handedRole = currentRole
        return batch
    }

    /// Records that the shell did the duties of `ready`: its state machine now reflects that batch.
    ///
    /// - Parameter durable: duty 1 is durable. A shell may pass `false` for a batch whose
    ///   `canSendBeforePersisting` is set and that holds no snapshot — it wrote the batch and syncs
    ///   it elsewhere while it goes on — and then reports the sync with `persisted(_:)` and the
    ///   batch's `durability`. Until then the leader does not count these entries as its own
    ///   replica; a quorum of followers commits them without it (Ongaro's dissertation §10.2.1).
    public mutating func advance(_ ready: Ready, durable: Bool = true) {
        precondition(
            durable || (ready.canSendBeforePersisting && ready.snapshot == nil),
            "only a leader's batch without a snapshot may be advanced before it is durable")
        var newApplied = applied
        if let snapshot = ready.snapshot { newApplied = max(newApplied, snapshot.metadata.index) }
        if let last = ready.committedEntries.last { newApplied = max(newApplied, last.entry.index) }
        precondition(
            newApplied <= handedCommit,
            "advance to applied \(newApplied) beyond the entries handed out (\(handedCommit)); pass the Ready you were given"
        )
        applied = newApplied
        if let state = ready.hardState { persistedHardState = state }
        if let snapshot = ready.snapshot, log.snapshotIndex == snapshot.metadata.index {
            persistedIndex = max(persistedIndex, snapshot.metadata.index)
        }
        if durable, let last = ready.entries.last, ready.logGeneration == logGeneration,
            log.term(at: last.index) == last.term
        {
            // Writing entries from `first.index` on replaced whatever the disk held after them.
            persistedIndex = last.index
        }
        // The leader's own durable entries may complete a quorum the followers already formed.
        if currentRole == .leader { maybeCommit() }
    }

    /// Records that a batch advanced with `durable: false` is now durable (its sync returned).
    ///
    /// Marks may arrive late and out of order with later batches; a mark from before the log lost
    /// a suffix, or whose entry the log no longer holds, changes nothing. Durability only moves
    /// forward here: a later sync covers every earlier write.
    public mutating func persisted(_ durability: Durability) {
        guard let last = durability.lastIndex, durability.logGeneration == logGeneration,
            log.term(at: last) == durability.lastTerm
        else { return }
        persistedIndex = max(persistedIndex, last)
        if currentRole == .leader { maybeCommit() }
    }

    /// Updates the dedup table for a committed entry; returns true if its request was already applied.
    mutating func recordDelivery(of entry: Entry) -> Bool {
        guard let request = entry.requestID else { return false }
        if let highest = appliedRequests[request.client], request.sequence <= highest { return true }
        appliedRequests[request.client] = request.sequence
        return false
    }

    // MARK: Shared helpers.

    mutating func send(_ kind: MessageKind, to node: NodeID, term: Term? = nil) {
        messages.append(Message(from: id, to: node, term: term ?? currentTerm, kind: kind))
    }

    /// A voter in the membership in force may campaign; learners and removed nodes may not.
    var isPromotable: Bool { membership.voters.contains(id) }

    mutating func resetElectionTimer() {
        electionElapsed = 0
        randomizedElectionTimeout =
            configuration.electionTicks + Int.random(in: 0..<configuration.electionTicks, using: &random)
    }

    /// Moves the commit index forward (never back).
    mutating func commit(to index: LogIndex) {
        guard index > commit else { return }
        precondition(
            index <= log.lastIndex,
            "\(id) committing \(index) beyond its last index \(log.lastIndex) (term \(currentTerm), role \(currentRole))"
        )
        commit = index
    }
}
