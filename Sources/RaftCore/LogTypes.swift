// The values Raft stores and replicates: entries, membership, hard state and snapshots.
public import ClusterModel

/// Identifies one client request so that a retried proposal is applied once (Ongaro §6.3).
///
/// A client numbers its requests 1, 2, 3, … and retries a request with the same number. The core
/// remembers, per client, the highest sequence it has delivered for apply; a committed entry whose
/// sequence is not above that is delivered with `CommittedEntry.isDuplicate == true`. A client must
/// therefore issue its requests one at a time (or at least have them committed in sequence order).
/// The table keeps one number per client id ever seen (it travels in snapshots), so client ids should
/// be reused per long-lived client rather than minted per request; expiring idle clients, as the
/// dissertation's sessions do, is left to the application.
public struct RequestID: Hashable, Sendable, CustomStringConvertible {
    public var client: UInt64
    public var sequence: UInt64

    public init(client: UInt64, sequence: UInt64) {
        self.client = client
        self.sequence = sequence
    }

    public var description: String { "c\(client)#\(sequence)" }
}

/// Who takes part in the cluster: voters elect and commit, learners only receive the log.
///
/// Invariant: `voters` and `learners` are disjoint.
public struct Membership: Hashable, Sendable, CustomStringConvertible {
    public var voters: Set<NodeID>
    public var learners: Set<NodeID>

    public init(voters: Set<NodeID> = [], learners: Set<NodeID> = []) {
        self.voters = voters
        self.learners = learners
    }

    /// Every node that receives the log: voters and learners.
    public var members: Set<NodeID> { voters.union(learners) }

    public func contains(_ node: NodeID) -> Bool { voters.contains(node) || learners.contains(node) }

    /// Votes needed to win an election or commit an entry: a strict majority of the voters.
    public var quorum: Int { voters.count / 2 + 1 }

    public var description: String {
        let voterList = voters.sorted().map(\.description).joined(separator: " ")
        let learnerList = learners.sorted().map(\.description).joined(separator: " ")
        return learners.isEmpty ? "voters=(\(voterList))" : "voters=(\(voterList)) learners=(\(learnerList))"
    }
}

/// One single-server membership change (Ongaro §4.1): at most one is uncommitted at a time.
public enum MembershipChange: Hashable, Sendable, CustomStringConvertible {
    /// Adds a node that receives the log but does not vote; it catches up before it is promoted.
    case addLearner(NodeID)
    /// Makes a caught-up learner a voter.
    case promote(NodeID)
    /// Removes a voter or learner. Removing the leader makes it step down once the change commits.
    case remove(NodeID)

    public var description: String {
        switch self {
        case .addLearner(let node): "add-learner \(node)"
        case .promote(let node): "promote \(node)"
        case .remove(let node): "remove \(node)"
        }
    }
}

/// What an entry carries.
public enum EntryPayload: Hashable, Sendable {
    /// The entry a new leader appends so that it can commit something of its own term (§5.4.2, §6.4).
    case noop
    /// An application command; the core never looks inside.
    case command([UInt8])
    /// The complete membership that applies from this entry on (it takes effect when appended).
    case membership(Membership)
}

/// One log entry.
public struct Entry: Hashable, Sendable, CustomStringConvertible {
    public var term: Term
    public var index: LogIndex
    /// Set for client commands that want exactly-once application; nil for internal entries.
    public var requestID: RequestID?
    public var payload: EntryPayload

    public init(term: Term, index: LogIndex, requestID: RequestID? = nil, payload: EntryPayload) {
        self.term = term
        self.index = index
        self.requestID = requestID
        self.payload = payload
    }

    /// The size counted against message and in-flight byte limits: payload plus a fixed header.
    public var byteSize: Int {
        switch payload {
        case .noop: Entry.headerBytes
        case .command(let bytes): Entry.headerBytes + bytes.count
        case .membership(let membership): Entry.headerBytes + 8 * (membership.voters.count + membership.learners.count)
        }
    }

    static let headerBytes = 32

    public var description: String {
        let body: String =
            switch payload {
            case .noop: "noop"
            case .command(let bytes): String(decoding: bytes, as: UTF8.self)
            case .membership(let membership): membership.description
            }
        let request = requestID.map { " \($0)" } ?? ""
        return "\(term)/\(index) \(body)\(request)"
    }
}

/// The state that must be durable before any message that depends on it is sent (§5, Figure 2).
public struct HardState: Hashable, Sendable, CustomStringConvertible {
    public var term: Term
    /// The node this node voted for in `term`, if any.
    public var vote: NodeID?
    /// The highest index known to be committed. Persisting it is an optimisation (entries up to it
    /// can be applied after a restart without waiting for a leader), not a safety requirement.
    public var commit: LogIndex

    public init(term: Term = 0, vote: NodeID? = nil, commit: LogIndex = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    public var description: String { "term=\(term) vote=\(vote.map(\.description) ?? "-") commit=\(commit)" }
}

/// What a snapshot stands for: the state after applying every entry up to `index`.
public struct SnapshotMetadata: Hashable, Sendable, CustomStringConvertible {
    public var index: LogIndex
    public var term: Term
    /// The membership in force at `index`.
    public var membership: Membership
    /// Client id → highest request sequence applied at `index` (the dedup table, Ongaro §6.3).
    public var appliedRequests: [UInt64: UInt64]

    public init(index: LogIndex, term: Term, membership: Membership, appliedRequests: [UInt64: UInt64] = [:]) {
        self.index = index
        self.term = term
        self.membership = membership
        self.appliedRequests = appliedRequests
    }

    public var description: String { "index=\(index) term=\(term) \(membership)" }
}

/// The application's state at an index, as opaque bytes, with the metadata Raft needs.
public struct Snapshot: Hashable, Sendable {
    public var metadata: SnapshotMetadata
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata, data: [UInt8]) {
        self.metadata = metadata
        self.data = data
    }
}
