// Leases: the leader's table of heartbeats and grants, and a node's own lease (DESIGN.md §8, docs/failover.md).
public import ClusterModel
public import ClusterState

/// How long leases last and how much slack the leader allows before it trusts that one ran out.
///
/// All times here are spans on a monotonic clock. The leader and the node each measure on their
/// own clock; they never compare instants, only elapsed spans, so the clocks need not agree on
/// what time it is, only (within `margin`) on how fast it passes.
public struct LeaseTimings: Hashable, Sendable {
    /// The longest lease: how long a node may run VMs after it sent the heartbeat that got a grant
    /// from a leader that had just confirmed its leadership with a majority.
    public var lease: Duration
    /// Slack for clock-rate differences and the time a fencing node takes to stop its VMs.
    public var margin: Duration
    /// How often nodes heartbeat. A lease shorter than this would run out before the next
    /// heartbeat could renew it, so the leader refuses instead of granting one.
    public var heartbeatInterval: Duration

    public init(
        lease: Duration = .seconds(2), margin: Duration = .milliseconds(500),
        heartbeatInterval: Duration = .milliseconds(200)
    ) {
        self.lease = lease
        self.margin = margin
        self.heartbeatInterval = heartbeatInterval
    }
}

/// What a node reports with every heartbeat: soft facts that are never committed (DESIGN.md §3).
public struct NodeFacts: Hashable, Sendable {
    /// The last log index the node has applied to its copy of the state.
    public var appliedIndex: LogIndex
    /// The VMs the node runs now, by its own account.
    public var runningVMs: [VMID]
    /// Its memory and its VMs' (nil from a node that has not balanced yet).
    public var memory: NodeMemoryFacts?

    public init(appliedIndex: LogIndex = 0, runningVMs: [VMID] = [], memory: NodeMemoryFacts? = nil) {
        self.appliedIndex = appliedIndex
        self.runningVMs = runningVMs
        self.memory = memory
    }
}

/// A lease as the leader grants it.
public struct LeaseGrant: Hashable, Sendable {
    /// Measured by the node from when it sent the heartbeat.
    public var duration: Duration
    /// The node may not start running VMs under this lease before it has applied this index:
    /// the leader decided on a state at least this new, so a node returning from a partition
    /// first learns which of its VMs were failed over elsewhere.
    public var requiredAppliedIndex: LogIndex

    public init(duration: Duration, requiredAppliedIndex: LogIndex) {
        self.duration = duration
        self.requiredAppliedIndex = requiredAppliedIndex
    }
}

/// The leader's answer to a heartbeat.
public enum HeartbeatAnswer: Hashable, Sendable {
    case granted(LeaseGrant)
    /// No lease: the reason says why and what brings one.
    case refused(reason: String)
    /// No lease, ever: the node is not in the leader's committed Raft membership, which the entry at
    /// `membershipIndex` set (`MembershipNotice`). The node takes it as its removal only if it
    /// knows a membership of its own that is older or leaves it out.
    case notAMember(membershipIndex: LogIndex, reason: String)
}

/// A node that is not in the cluster's membership any more: how the leader says so in its answer
/// to the node's heartbeat, and when the node takes that as its removal and stops
/// (`flotilla members remove`, docs/api.md; what etcd does with a removed member).
///
/// A removed node learns of it in one of two ways: it appended the membership entry that left it
/// out (the leader replicates to a departing node until that entry commits), or it missed that
/// entry (it was stopped, or cut off) and the leader's committed membership is newer than its
/// own. Neither is true of a node being added: one started with `--join` before `members add`
/// knows no membership at all, and one that has the entry adding it holds a newer membership
/// than a stale leader's that left it out.
public enum MembershipNotice {
    /// The leader's answer to a heartbeat from `node`, or nil if `node` is a member. Only a
    /// committed membership counts: an uncommitted change may still be rolled back.
    public static func answer(
        to node: NodeID, members: Set<NodeID>, membershipIndex: LogIndex, commit: LogIndex
    ) -> HeartbeatAnswer? {
        guard !members.contains(node), membershipIndex <= commit else { return nil }
        let list = members.sorted().map(\.description).joined(separator: " ")
        return .notAMember(
            membershipIndex: membershipIndex,
            reason: "\(node) is not a member of the cluster: the membership committed at index "
                + "\(membershipIndex) is \(list.isEmpty ? "empty" : list)")
    }

    /// Whether `node`, told by the leader that the membership committed at `leaderMembershipIndex`
    /// leaves it out, has been removed: it knows a membership of its own (`ownMembers`, set at
    /// `ownMembershipIndex`), and that one leaves it out too or is older than the leader's.
    public static func isRemoved(
        _ node: NodeID, ownMembers: Set<NodeID>, ownMembershipIndex: LogIndex, leaderMembershipIndex: LogIndex
    ) -> Bool {
        guard !ownMembers.isEmpty else { return false }
        return !ownMembers.contains(node) || leaderMembershipIndex > ownMembershipIndex
    }
}

/// The leader's record of heartbeats and of the leases it granted.
///
/// Every lease this leader grants ends at `confirmedContact + lease` (its clock), where
/// `confirmedContact` is the start of its latest ReadIndex round that a majority confirmed: a
/// majority of voters heard from it at or after that instant, so any later leader (elected by a
/// majority, which shares a voter with it) learns of a contact at least that late
/// (docs/failover.md, "Why no VM runs twice").
///
/// A fresh table belongs to a leader that just took over: it knows nothing of the leases its
/// predecessors granted, only the latest contact with a leader its voters reported before it was
/// elected (`predecessorContact`), so it declares nobody down before that contact plus a lease
/// plus the margin.
public struct LeaseTable: Sendable {
    public struct Entry: Hashable, Sendable {
        public var facts: NodeFacts
        public var lastHeartbeat: Duration
        /// When the latest lease this table granted the node ends (leader's clock), before the
        /// margin; nil if it refused every heartbeat.
        public var lastGrantEnd: Duration?
    }

    public let timings: LeaseTimings
    /// When this leader's table started (the leader's monotonic clock).
    public let startedAt: Duration
    /// The latest moment (this leader's clock) at which a voter reported, before this leader was
    /// elected, that it had heard from a leader.
    public let predecessorContact: Duration
    /// The latest moment a lease granted by any predecessor may still be valid:
    /// `predecessorContact` plus a lease plus the margin.
    public var predecessorEnd: Duration { predecessorContact + timings.lease + timings.margin }
    public private(set) var entries: [NodeID: Entry] = [:]

    /// - Parameter predecessorContact: the latest moment (this leader's clock) at which this node
    ///   or a voter that reported before the election last heard from a leader; no predecessor
    ///   granted a lease that ends later than a lease after it.
    public init(timings: LeaseTimings = LeaseTimings(), startedAt: Duration, predecessorContact: Duration) {
        self.timings = timings
        self.startedAt = startedAt
        self.predecessorContact = predecessorContact
    }

    /// Records a heartbeat and answers it: a lease for a node the state knows and has not
    /// declared down, ending a lease after `confirmedContact`; a refusal otherwise (a down node
    /// gets a lease once it is committed up again; every node gets one once the leader has
    /// recently confirmed with a majority that it still leads).
    ///
    /// - Parameters:
    ///   - appliedIndex: the leader's applied index, which `state` reflects.
    ///   - confirmedContact: when the latest ReadIndex round a majority confirmed in this term
    ///     started; nil if none has completed yet.
    public mutating func heartbeat(
        from node: NodeID, facts: NodeFacts, in state: ClusterState, appliedIndex: LogIndex,
        confirmedContact: Duration?, now: Duration
    ) -> HeartbeatAnswer {
        var entry = entries[node] ?? Entry(facts: facts, lastHeartbeat: now, lastGrantEnd: nil)
        entry.facts = facts
        entry.lastHeartbeat = now
        defer { entries[node] = entry }
        guard let record = state.nodes[node] else {
            return .refused(
                reason: "\(node) is not registered in the cluster state yet; it is registered once it has joined")
        }
        guard record.state.canOwnVMs else {
            return .refused(reason: "\(node) is declared down; the leader brings it back up now that it heartbeats")
        }
        guard let confirmedContact else {
            return .refused(
                reason: "the leader has not yet confirmed with a majority that it still leads; it grants once it has")
        }
        let end = confirmedContact + timings.lease
        let duration = end - now
        guard duration >= timings.heartbeatInterval else {
            return .refused(
                reason: "the leader last confirmed with a majority that it still leads \(now - confirmedContact) ago; "
                    + "it grants again once a majority answers it")
        }
        entry.lastGrantEnd = max(entry.lastGrantEnd ?? end, end)
        return .granted(LeaseGrant(duration: duration, requiredAppliedIndex: appliedIndex))
    }

    /// The last moment at which a lease granted by this leader, or by a predecessor, may still
    /// be valid on the node.
    public func lastPossibleLeaseEnd(of node: NodeID) -> Duration {
        guard let end = entries[node]?.lastGrantEnd else { return predecessorEnd }
        return max(predecessorEnd, end + timings.margin)
    }

    /// Whether no lease the node holds can still be valid, so it may be declared down.
    public func leaseIsGone(_ node: NodeID, now: Duration) -> Bool {
        now > lastPossibleLeaseEnd(of: node)
    }

    /// Whether the node heartbeated within the last lease: it is alive and reaches the leader.
    public func isHeartbeating(_ node: NodeID, now: Duration) -> Bool {
        guard let last = entries[node]?.lastHeartbeat else { return false }
        return now - last < timings.lease
    }

    /// How long ago the node last heartbeated this leader, if it ever did.
    public func silence(of node: NodeID, now: Duration) -> Duration? {
        entries[node].map { now - $0.lastHeartbeat }
    }

    /// When the next of `nodes` that has missed a heartbeat may be declared down (its lease is
    /// gone and it is no longer heartbeating), if that is at or after `now`: the controller decides
    /// then rather than up to one round later. Past that moment `leaseIsGone` and
    /// `!isHeartbeating` both hold.
    public func nextDownDeadline(among nodes: some Sequence<NodeID>, now: Duration) -> Duration? {
        var earliest: Duration?
        for node in nodes {
            let quietSince = entries[node]?.lastHeartbeat
            if let quietSince, now - quietSince <= timings.heartbeatInterval { continue }
            // A node that never heartbeated this leader never counts as heartbeating.
            let deadline = max(lastPossibleLeaseEnd(of: node), quietSince.map { $0 + timings.lease } ?? .zero)
            guard deadline >= now else { continue }
            earliest = min(earliest ?? deadline, deadline)
        }
        return earliest
    }
}

/// A node's own lease, measured on its own monotonic clock.
///
/// The lease runs from when the node SENT the heartbeat that was answered with the grant, never
/// from when the answer arrived: the leader granted no earlier than the send, so the node's lease
/// always ends before the leader's record of it (by the network delay, plus `margin` the leader adds).
public struct LeaseHolder: Sendable {
    /// What the node's shell must do now.
    public enum Action: Hashable, Sendable {
        /// Stop every VM and stop coordinating volumes.
        case fence(reason: String)
        /// Running VMs is allowed again.
        case unfence
    }

    /// When the lease runs out; nil before the first grant.
    public private(set) var expiresAt: Duration?
    /// The node may not unfence before it has applied this index (see `LeaseGrant`).
    public private(set) var requiredAppliedIndex: LogIndex = 0
    /// Whether the node is fenced now; a node starts fenced, since it holds no lease yet.
    public private(set) var isFenced = true
    /// Why the lease is gone, for the fencing message; set by `refused`.
    private var refusal: String?
    /// A grant arrived for a heartbeat sent after the lease had already run out (the process was
    /// stopped, say, before its check ran): the node must still fence once, since the leader may
    /// have failed its VMs over in the gap.
    private var lapsed = false

    public init() {}

    /// Records a grant for a heartbeat sent at `sentAt`. A grant never shortens a lease
    /// (answers may arrive out of order).
    public mutating func granted(_ grant: LeaseGrant, sentAt: Duration) {
        if !isFenced, let expiresAt, expiresAt <= sentAt { lapsed = true }
        let end = sentAt + grant.duration
        expiresAt = max(expiresAt ?? end, end)
        requiredAppliedIndex = max(requiredAppliedIndex, grant.requiredAppliedIndex)
        refusal = nil
    }

    /// Records that the leader refused a lease; the current one still runs out on its own time.
    public mutating func refused(reason: String) {
        refusal = reason
    }

    /// Whether the node may run VMs at `now` by the clock alone.
    public func isValid(now: Duration) -> Bool {
        guard let expiresAt else { return false }
        return now < expiresAt
    }

    /// Moves between fenced and unfenced and says what to do, or nil when nothing changes.
    ///
    /// - Parameter appliedIndex: the node's applied index, which must reach the grant's
    ///   `requiredAppliedIndex` before the node unfences.
    public mutating func check(now: Duration, appliedIndex: LogIndex) -> Action? {
        let valid = isValid(now: now)
        if isFenced {
            guard valid, appliedIndex >= requiredAppliedIndex else { return nil }
            isFenced = false
            return .unfence
        }
        guard !valid || lapsed else { return nil }
        isFenced = true
        if lapsed {
            lapsed = false
            return .fence(reason: "the lease ran out before a new one was granted")
        }
        let why =
            refusal.map { " (the leader refused a new one: \($0))" } ?? " (no leader answered a heartbeat in time)"
        return .fence(reason: "the lease ran out\(why)")
    }
}
