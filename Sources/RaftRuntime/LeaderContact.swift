// When this node and its peers last heard from a Raft leader: the bound a new leader puts on its predecessors' leases.
public import ClusterModel
import RaftCore
import Synchronization

/// This node's record of contact with a leader, and what its peers reported of theirs.
///
/// A leader grants only leases that end a lease after a moment at which a majority of voters
/// heard from it (docs/failover.md). A later leader was elected by a majority too, which shares
/// a voter with that one; that voter heard from the old leader before it voted, and its vote
/// carried how long ago that was. So the latest contact reported before the election, plus a
/// lease and the margin, bounds every lease any predecessor granted.
///
/// All times are spans since one origin on the node's monotonic clock (`LeaderContactTracker`);
/// a later contact is always the safe side: it only makes a new leader wait longer.
package struct LeaderContact: Sendable {
    /// When this node last heard from a leader, or last was one. Starts at process start: what
    /// the node heard before it (re)started is not remembered, so it counts as just heard.
    package private(set) var lastLeaderContact: Duration
    /// Per peer, the latest contact with a leader it reported: receive time minus its age.
    package private(set) var reportedContact: [NodeID: Duration] = [:]
    /// The term this node led when it handled its last `Ready`; nil if it did not lead.
    private var ledTerm: Term?
    /// The bound taken when this node became leader of `term` (see `predecessorContact(term:)`).
    private var predecessor: (term: Term, contact: Duration)?

    package init(startedAt: Duration) {
        lastLeaderContact = startedAt
    }

    /// A Raft batch with an append, a heartbeat or a snapshot arrived, whatever its term: the
    /// shell cannot tell whether the core accepts it, and a later contact is only more cautious.
    package mutating func heardFromLeader(now: Duration) {
        lastLeaderContact = max(lastLeaderContact, now)
    }

    /// How long ago this node last heard from a leader: what its outgoing batches report.
    package func age(now: Duration) -> Duration {
        max(.zero, now - lastLeaderContact)
    }

    /// A batch from `peer`, received at `receivedAt`, said it last heard from a leader `age` ago.
    /// The network delay only makes the result later than the truth, which is the safe side.
    package mutating func peerReported(_ peer: NodeID, age: Duration, receivedAt: Duration) {
        let contact = receivedAt - max(age, .zero)
        reportedContact[peer] = max(reportedContact[peer] ?? contact, contact)
    }

    /// The driver is about to act on a `Ready` (before any of its messages leave): `term` is the
    /// term this node leads in it, or nil if it does not lead.
    ///
    /// On the first `Ready` of a leadership it takes the bound on its predecessors' contacts then,
    /// before its own first messages, whose answers would push it to "now". While leading, and on
    /// the first `Ready` after it stopped leading (which carries its vote for a successor, say), a
    /// node is itself in contact with a leader.
    package mutating func handlingReady(leaderOf term: Term?, now: Duration) {
        if let term, ledTerm != term {
            let reported = reportedContact.values.max() ?? lastLeaderContact
            predecessor = (term, max(lastLeaderContact, reported))
        }
        if term != nil || ledTerm != nil { lastLeaderContact = max(lastLeaderContact, now) }
        ledTerm = term
    }

    /// The latest contact with a leader that this node had, or a peer reported, before it became
    /// leader of `term`; nil if it has not handled a `Ready` as leader of that term.
    package func predecessorContact(term: Term) -> Duration? {
        guard let predecessor, predecessor.term == term else { return nil }
        return predecessor.contact
    }
}

/// The node's one `LeaderContact`, shared by the Raft driver, the peer transport and the leader's
/// controllers, with the one monotonic clock origin all three measure from.
public final class LeaderContactTracker: Sendable {
    /// The node's one monotonic clock, which the lease code measures by too.
    public let clock: NodeClock
    private let contact: Mutex<LeaderContact>

    public init(clock: NodeClock = NodeClock(ContinuousClock())) {
        self.clock = clock
        contact = Mutex(LeaderContact(startedAt: clock.now))
    }

    /// The node's monotonic clock: the time since it was made (at process start).
    public var now: Duration { clock.now }

    package func heardFromLeader() {
        let now = now
        contact.withLock { $0.heardFromLeader(now: now) }
    }

    /// The age, in whole microseconds, that a batch encoded now carries (`PeerStreamFrame`).
    package func ageMicroseconds() -> UInt64 {
        let now = now
        let age = contact.withLock { $0.age(now: now) }
        return UInt64(max(0, age.microseconds))
    }

    /// Records the age a peer's batch carried, counted back from now, when it arrived: time it
    /// spent on the way only makes the contact look later, the cautious side.
    package func peerReported(_ peer: NodeID, ageMicroseconds: UInt64) {
        let age = Duration.microseconds(Int64(clamping: ageMicroseconds))
        let now = now
        contact.withLock { $0.peerReported(peer, age: age, receivedAt: now) }
    }

    package func handlingReady(leaderOf term: Term?) {
        let now = now
        contact.withLock { $0.handlingReady(leaderOf: term, now: now) }
    }

    public func predecessorContact(term: Term) -> Duration? {
        contact.withLock { $0.predecessorContact(term: term) }
    }

    /// The latest contact with a leader `peer` reported, on this node's clock.
    public func reportedContact(of peer: NodeID) -> Duration? {
        contact.withLock { $0.reportedContact[peer] }
    }
}

extension Duration {
    /// Whole microseconds, rounded down.
    fileprivate var microseconds: Int64 {
        components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000
    }
}

extension Message {
    /// Whether only a leader sends this message: an append, a heartbeat or a snapshot chunk.
    package var comesFromLeader: Bool {
        switch kind {
        case .append, .heartbeat, .installSnapshot: true
        default: false
        }
    }
}
