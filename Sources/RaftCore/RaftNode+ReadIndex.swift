// Linearizable reads without writing to the log: ReadIndex (§6.4), and lease reads (§6.4.1).
import ClusterModel

extension RaftNode {
    /// Asks for a linearizable read point; the answer arrives as a `ReadState` in a later `Ready`.
    ///
    /// On the leader: once it has committed an entry of its term, the read index is its commit index,
    /// released when a quorum confirms in a heartbeat round that it is still leader. On a follower: the
    /// request goes to the leader. If leadership changes meanwhile, no answer comes; the shell times
    /// the read out and retries.
    public mutating func readIndex(context: [UInt8]) throws(ProposalError) {
        try readIndex(context: context, now: nil)
    }

    /// `readIndex(context:)`, answered at once from the leader's read lease when one runs at `now`
    /// (the leader's monotonic clock; the configuration's `readLease`). Otherwise the heartbeat round
    /// it takes opens a lease round, whose confirmation by a quorum of promises starts a lease that
    /// runs `readLease` from `now`. A follower forwards the read as `readIndex(context:)` does.
    public mutating func readIndex(context: [UInt8], now: Duration?) throws(ProposalError) {
        if currentRole == .leader {
            handleReadRequest(context: context, requester: id, now: now)
        } else if let leader = currentLeader {
            send(.readIndex(context: context), to: leader)
        } else {
            throw ProposalError.notLeader(leaderHint: nil)
        }
    }

    mutating func handleReadRequest(context: [UInt8], requester: NodeID, now: Duration? = nil) {
        guard hasCommittedInTerm else {
            // §6.4 step 1: until its no-op commits, the leader does not know the latest commit index.
            readsAwaitingLeaderCommit.append((context, requester))
            return
        }
        if membership.voters == [id] {
            answerRead(ReadState(index: commit, context: context), requester: requester)
            return
        }
        if let now, leaseRuns(at: now) {
            // No other leader can have committed anything yet: every voter that confirmed the lease
            // still keeps its promise (`LeasePromise`), and they are a quorum.
            leaseReads += 1
            answerRead(ReadState(index: commit, context: context), requester: requester)
            return
        }
        readRound += 1
        if let now, configuration.readLease != nil, !leaseForfeited, leaseRound == nil {
            leaseRound = (readRound, now)
        }
        pendingReads.append(PendingRead(round: readRound, index: commit, context: context, requester: requester))
        readHeartbeatDue = true
    }

    /// Whether this leader's read lease runs at `now` (its own clock).
    func leaseRuns(at now: Duration) -> Bool {
        guard let expiry = leaseExpiry, !leaseForfeited, transferTarget == nil else { return false }
        return now < expiry
    }

    /// The leader is about to send TimeoutNow: the voters grant that election despite their
    /// promises, so no lease of this term may run any more.
    mutating func forfeitLease() {
        leaseForfeited = true
        leaseExpiry = nil
        leaseRound = nil
    }

    mutating func releaseReadsAwaitingLeaderCommit() {
        let waiting = readsAwaitingLeaderCommit
        readsAwaitingLeaderCommit = []
        for read in waiting { handleReadRequest(context: read.context, requester: read.requester) }
    }

    /// Releases every pending read whose round a quorum of voters (counting this leader) has echoed,
    /// and starts the lease of a lease round that a quorum has promised (the leader counts itself:
    /// it votes for nobody while it leads).
    mutating func confirmReads() {
        if let lease = leaseRound, let duration = configuration.readLease,
            quorumRound(\.promisedRound) >= lease.round
        {
            leaseExpiry = max(leaseExpiry ?? lease.startedAt, lease.startedAt + duration)
            leaseRound = nil
        }
        guard let oldest = pendingReads.first else { return }
        let confirmed = quorumRound(\.readRound)
        guard confirmed >= oldest.round else { return }
        let released = pendingReads.prefix { $0.round <= confirmed }
        pendingReads.removeFirst(released.count)
        for read in released {
            answerRead(ReadState(index: read.index, context: read.context), requester: read.requester)
        }
    }

    /// The highest round a quorum of voters has reached in `round` of their progress (this leader
    /// counting as at `readRound`).
    private func quorumRound(_ round: KeyPath<Progress, UInt64>) -> UInt64 {
        var rounds: [UInt64] = []
        for voter in membership.voters {
            rounds.append(voter == id ? readRound : progress[voter]?[keyPath: round] ?? 0)
        }
        rounds.sort(by: >)
        return rounds[membership.quorum - 1]
    }

    private mutating func answerRead(_ state: ReadState, requester: NodeID) {
        if requester == id {
            readStates.append(state)
        } else {
            send(.readIndexResponse(state), to: requester)
        }
    }

    // MARK: Lease promises.

    /// Whether this node keeps a lease promise now: it grants no vote (but a leadership transfer's)
    /// and does not campaign. The shell must not tick it early meanwhile (`RaftDriver`'s tick after
    /// a dead leader's notice): its ticks measure the promise.
    public var holdsLeasePromise: Bool { leasePromiseTicksLeft > 0 }

    /// Takes the promise a lease round's heartbeat asks for, if this node keeps promises and the
    /// lease is one it can keep (`LeasePromise.promiseTicks`); returns whether it did.
    mutating func promise(lease: Duration) -> Bool {
        guard let tick = configuration.tickInterval, let ticks = LeasePromise.promiseTicks(for: lease, tick: tick)
        else { return false }
        leasePromiseTicksLeft = max(leasePromiseTicksLeft, ticks)
        return true
    }

    mutating func tickLeasePromise() {
        if leasePromiseTicksLeft > 0 { leasePromiseTicksLeft -= 1 }
    }
}
