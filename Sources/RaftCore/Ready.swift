// The batch of work the core hands its shell, and the order in which the shell must do it.
public import ClusterModel

/// What a node is doing right now.
public enum Role: Hashable, Sendable, CustomStringConvertible {
    case follower
    /// Collecting pre-votes without raising its term (Ongaro §9.6).
    case preCandidate
    case candidate
    case leader

    public var description: String {
        switch self {
        case .follower: "follower"
        case .preCandidate: "pre-candidate"
        case .candidate: "candidate"
        case .leader: "leader"
        }
    }
}

/// A committed entry for the application to apply.
public struct CommittedEntry: Hashable, Sendable {
    public var entry: Entry
    /// The entry's request id was already applied (a retried proposal): do not apply it again, but do
    /// answer the waiting client as if it had been.
    public var isDuplicate: Bool

    public init(entry: Entry, isDuplicate: Bool) {
        self.entry = entry
        self.isDuplicate = isDuplicate
    }
}

/// Work the shell must do, in order, before it calls `RaftNode.advance(_:)`.
///
/// The shell's duties, in this order:
///
/// 1. **Persist, durably (fsync), before anything else.** First `snapshot` if present: it replaces
///    the whole stored log (the log continues after `snapshot.metadata.index`). Then `entries`: if
///    the stored log has entries at or after `entries.first.index`, delete them first (a leader
///    overwrote them), then append. Then `hardState` if present. One fsync may cover all three.
///    Only the snapshot, the entries, and the term and vote in `hardState` must be durable before
///    step 2; the commit index need not be. It is volatile state (Figure 2 of the Raft paper): every
///    committed entry is already durable on a majority, and a node that restarts with an older
///    commit learns the newer one from the leader. So a batch whose only change is the commit may
///    skip the fsync (etcd raft's `MustSync`: sync iff entries, a snapshot, or a new term or vote);
///    its hard state then reaches the disk with a later fsync, or is lost in a crash. The restoring
///    initializer takes `commit = max(hardState.commit, snapshot index)`, so a commit older than a
///    snapshot the application took later is harmless.
/// 2. **Send `messages`, only after step 1 is durable** — unless `canSendBeforePersisting` is set,
///    in which case send them first and persist while they travel. A vote or an acknowledgement
///    sent before the term, vote or entries it promises are on disk can elect two leaders or lose a
///    committed entry after a crash. A leader's appends promise nothing about its own disk: it
///    counts its own entries toward commit only after `advance` reports them durable, so its fsync
///    and its followers' run side by side (Ongaro's dissertation §10.2.1). Messages may be lost,
///    duplicated or reordered; Raft tolerates that.
/// 3. **Restore the state machine from `snapshot` if present, then apply `committedEntries` in
///    order** — and nothing else: only these are committed. Skip the effect of an entry whose
///    `isDuplicate` is set but answer its client.
/// 4. **Serve `readStates`:** a read may answer once the applied index is at least its `index`.
/// 5. **Call `advance(_:)` with this value**, which also tells the core that step 1 is durable —
///    or, for a leader's batch synced elsewhere, `advance(_:durable: false)` and later
///    `persisted(_:)` with its `durability`. Then ask `hasReady` again.
///
/// Every field holds only what is new since the previous `Ready`; an unchanged `hardState` is nil.
public struct Ready: Sendable {
    /// The term, vote and commit to persist; nil when unchanged. A change of the commit alone need
    /// not be fsynced (see duty 1).
    public var hardState: HardState?
    /// Log entries to persist, contiguous, possibly replacing a stored suffix (see duty 1).
    public var entries: [Entry]
    /// A snapshot received from the leader, to persist and restore (see duties 1 and 3).
    public var snapshot: Snapshot?
    /// Messages to send once step 1 is durable (or at once, see `canSendBeforePersisting`).
    public var messages: [Message]
    /// The messages promise nothing that step 1 is writing: the shell may send them before (or
    /// while) it persists. Set only for a leader whose term and vote are already durable.
    public var canSendBeforePersisting: Bool
    /// The log's generation when the batch was handed out (the core's own bookkeeping: entries of
    /// a batch from before a truncation do not count as durable when it is advanced).
    var logGeneration: UInt64 = 0
    /// Committed entries to apply, in order.
    public var committedEntries: [CommittedEntry]
    /// Linearizable reads that may be served once their index is applied.
    public var readStates: [ReadState]
    /// The leader this node knows of, for routing clients (not persisted).
    public var leader: NodeID?
    /// This node's role when the batch was taken (not persisted).
    public var role: Role

    public init(
        hardState: HardState? = nil,
        entries: [Entry] = [],
        snapshot: Snapshot? = nil,
        messages: [Message] = [],
        committedEntries: [CommittedEntry] = [],
        readStates: [ReadState] = [],
        leader: NodeID? = nil,
        role: Role = .follower,
        canSendBeforePersisting: Bool = false
    ) {
        self.hardState = hardState
        self.entries = entries
        self.snapshot = snapshot
        self.messages = messages
        self.committedEntries = committedEntries
        self.readStates = readStates
        self.leader = leader
        self.role = role
        self.canSendBeforePersisting = canSendBeforePersisting
    }

    /// What duty 1 of this batch makes durable, for `RaftNode.persisted(_:)` when the shell
    /// reports its sync after `advance(_:durable: false)`.
    public var durability: Durability {
        Durability(
            lastIndex: entries.last?.index, lastTerm: entries.last?.term ?? Term(0), logGeneration: logGeneration)
    }

    /// True when the batch asks nothing of the shell.
    public var isEmpty: Bool {
        hardState == nil && entries.isEmpty && snapshot == nil && messages.isEmpty && committedEntries.isEmpty
            && readStates.isEmpty
    }
}

/// The entries a batch wrote, as `Ready.durability` names them: reported back through
/// `RaftNode.persisted(_:)` once their sync returned.
public struct Durability: Hashable, Sendable {
    /// The index of the batch's last entry; nil when it wrote none (its sync then changes nothing
    /// for the core).
    public var lastIndex: LogIndex?
    var lastTerm: Term
    var logGeneration: UInt64
}

/// A point-in-time view of a node, for operators, tests and the simulator's invariant checks.
public struct RaftStatus: Hashable, Sendable {
    public var id: NodeID
    public var term: Term
    public var vote: NodeID?
    public var role: Role
    public var leader: NodeID?
    public var commit: LogIndex
    /// The leader's commit index as of this node's last contact with it: on the leader its own
    /// commit; on a follower the highest one its current leader sent it; 0 when no leader is known.
    /// A follower that has applied this far is as current as its leader was then (`/readyz`).
    public var leaderCommit: LogIndex
    /// The last index the shell has applied (acknowledged by `advance`).
    public var applied: LogIndex
    /// The first index still in the log (after the snapshot).
    public var firstIndex: LogIndex
    public var lastIndex: LogIndex
    public var lastTerm: Term
    /// The last index the shell has reported durable (`advance`, or `persisted` for a batch
    /// advanced before its sync returned): a leader counts its own copy up to here.
    public var durableIndex: LogIndex
    public var snapshotIndex: LogIndex
    public var membership: Membership
    /// The index of the entry that set `membership` (the snapshot's index, or 0 at bootstrap);
    /// it may not be committed yet.
    public var membershipIndex: LogIndex
    /// The leader's view of each other member; empty on other nodes.
    public var progress: [NodeID: FollowerStatus]
    public var leadershipTransferTarget: NodeID?
    /// Reads this node answered from its read lease, with no heartbeat round, since it started.
    public var leaseReads: UInt64 = 0

    public var isLearner: Bool { membership.learners.contains(id) }
}

/// How far the leader believes a follower has come.
public struct FollowerStatus: Hashable, Sendable {
    public enum Mode: Hashable, Sendable {
        /// One AppendEntries at a time until the leader learns where the logs match.
        case probe
        /// Optimistic pipelining: many AppendEntries in flight.
        case replicate
        /// Too far behind the log: a snapshot is being streamed.
        case snapshot(index: LogIndex)
    }

    public var match: LogIndex
    public var next: LogIndex
    public var mode: Mode
    public var inflightMessages: Int
    public var inflightBytes: Int
    /// Leader ticks since this follower last answered.
    public var ticksSinceHeard: Int
}
