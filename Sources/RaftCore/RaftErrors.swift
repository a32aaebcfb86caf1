// The typed errors of the core's inputs; each says what went wrong and what the caller should do.
public import ClusterModel

/// A configuration value that cannot work.
public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Why a proposal or read was not accepted. Nothing was appended; the caller decides whether to retry.
public enum ProposalError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Send the request to `leaderHint` (nil: no leader is known yet; retry after an election).
    case notLeader(leaderHint: NodeID?)
    /// The leader is handing over to `target`; retry on the new leader shortly.
    case leadershipTransferInProgress(target: NodeID)
    /// Too much of the leader's log is uncommitted (followers are slow or unreachable); back off.
    case tooManyUncommittedBytes(limit: Int)

    public var description: String {
        switch self {
        case .notLeader(let hint):
            hint.map { "this node is not the leader; send the request to \($0)" }
                ?? "this node is not the leader and no leader is known; retry after the election"
        case .leadershipTransferInProgress(let target):
            "leadership is being transferred to \(target); retry on the new leader"
        case .tooManyUncommittedBytes(let limit):
            "more than \(limit) bytes of the log are uncommitted; back off until followers catch up"
        }
    }
}

/// Why a membership change was refused. Nothing was appended.
public enum MembershipChangeError: Error, Hashable, Sendable, CustomStringConvertible {
    case notLeader(leaderHint: NodeID?)
    /// A new leader must commit an entry of its own term first (Ongaro's fix to §4.1); retry shortly.
    case leaderHasNotCommittedInItsTerm(term: Term)
    /// Another change (at `index`) is not committed yet; one change at a time. Retry after it commits.
    case changeInProgress(index: LogIndex)
    case leadershipTransferInProgress(target: NodeID)
    case alreadyMember(NodeID)
    case notMember(NodeID)
    case notLearner(NodeID)
    /// The learner's log is too far behind to vote safely; retry when it has caught up.
    case learnerNotCaughtUp(NodeID, match: LogIndex, leaderLastIndex: LogIndex)
    /// The cluster would have no voter left.
    case wouldRemoveLastVoter(NodeID)

    public var description: String {
        switch self {
        case .notLeader(let hint):
            hint.map { "this node is not the leader; ask \($0)" }
                ?? "this node is not the leader; retry after the election"
        case .leaderHasNotCommittedInItsTerm(let term):
            "the leader has not yet committed an entry of its term \(term); retry in a moment"
        case .changeInProgress(let index):
            "the membership change at index \(index) is not committed yet; retry after it commits"
        case .leadershipTransferInProgress(let target):
            "leadership is being transferred to \(target); retry on the new leader"
        case .alreadyMember(let node): "\(node) is already a member; remove it first or choose another id"
        case .notMember(let node): "\(node) is not a member of the cluster"
        case .notLearner(let node): "\(node) is not a learner; add it as a learner first"
        case .learnerNotCaughtUp(let node, let match, let last):
            "\(node) holds the log up to \(match) but the leader is at \(last); retry when it has caught up"
        case .wouldRemoveLastVoter(let node): "removing \(node) would leave no voter"
        }
    }
}

/// Why a leadership transfer was refused.
public enum TransferError: Error, Hashable, Sendable, CustomStringConvertible {
    case notLeader(leaderHint: NodeID?)
    /// Only a voter can become leader.
    case notVoter(NodeID)
    case alreadyLeader
    case transferInProgress(target: NodeID)

    public var description: String {
        switch self {
        case .notLeader(let hint):
            hint.map { "this node is not the leader; ask \($0)" }
                ?? "this node is not the leader; retry after the election"
        case .notVoter(let node): "\(node) is not a voter; only a voter can lead (promote it first)"
        case .alreadyLeader: "this node is already the leader"
        case .transferInProgress(let target): "a transfer to \(target) is already under way; wait for it"
        }
    }
}

/// Why a snapshot could not be taken.
public enum CompactionError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Snapshots are taken at the applied index so that the dedup table matches the data.
    case notAppliedIndex(requested: LogIndex, applied: LogIndex)
    /// There is already a snapshot at or beyond this index.
    case alreadyCompacted(requested: LogIndex, snapshotIndex: LogIndex)

    public var description: String {
        switch self {
        case .notAppliedIndex(let requested, let applied):
            "a snapshot must be taken at the applied index \(applied), not \(requested); snapshot the state after advance"
        case .alreadyCompacted(let requested, let snapshot):
            "the log is already compacted up to \(snapshot); nothing to do for \(requested)"
        }
    }
}

/// Why a message was not taken.
public enum StepError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The shell delivered a message meant for another node.
    case wrongRecipient(expected: NodeID, message: Message)
    /// The message cannot have come from a correct peer (a codec or transport bug): it was ignored.
    case malformed(reason: String, message: Message)

    public var description: String {
        switch self {
        case .wrongRecipient(let expected, let message):
            "message \(message) is addressed to \(message.to), not to this node \(expected); check the routing"
        case .malformed(let reason, let message):
            "ignored malformed message \(message): \(reason); check the peer's encoder and the transport"
        }
    }
}

/// Why the state read from disk cannot be the state of a Raft node.
public struct RestoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
