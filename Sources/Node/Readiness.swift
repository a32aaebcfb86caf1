// Whether a node is ready for traffic (`GET /readyz`): a pure decision from its Raft status.
import ClusterModel
import FlotillaAPI
import RaftCore

/// What `GET /readyz` answers, decided from the node's Raft status alone (no clock, no I/O).
///
/// Ready means: this node knows a leader, and has applied everything that leader had committed
/// when this node last heard from it (`RaftStatus.leaderCommit`); the leader itself is ready once it
/// has applied its own commit index. A ready node serves stale reads that are at most one contact
/// behind its leader, and forwards writes to a leader that exists. Liveness is `/healthz`: a node
/// that is not ready is still alive, and restarting it would not help it find a leader.
enum Readiness: Equatable, Sendable {
    case ready(leader: NodeID, applied: LogIndex)
    case notReady(Reason)

    enum Reason: Equatable, Sendable {
        /// No leader is known: an election is on, or this node cannot reach a majority.
        case noLeader
        /// A leader is known, but this node has applied less than it had committed.
        case catchingUp(leader: NodeID, applied: LogIndex, leaderCommit: LogIndex)
        /// A leader is known, but this node is not in the membership it holds: it was removed
        /// (`flotilla members remove`), or it is being added and has not received that entry yet.
        case notMember(leader: NodeID)

        /// The stable name a program matches (`reason` in the answer).
        var name: String {
            switch self {
            case .noLeader: "no_leader"
            case .catchingUp: "catching_up"
            case .notMember: "not_member"
            }
        }
    }

    static func of(_ status: RaftStatus) -> Readiness {
        guard let leader = status.leader else { return .notReady(.noLeader) }
        guard status.membership.contains(status.id) else { return .notReady(.notMember(leader: leader)) }
        // On the leader `leaderCommit` is its own commit index.
        guard status.applied >= status.leaderCommit else {
            return .notReady(.catchingUp(leader: leader, applied: status.applied, leaderCommit: status.leaderCommit))
        }
        return .ready(leader: leader, applied: status.applied)
    }

    /// The HTTP status `/readyz` answers with: 200 when ready, 503 when not.
    var httpStatus: Int {
        if case .ready = self { 200 } else { 503 }
    }

    /// The answer's body for node `node`; `status` is the one the decision was made from.
    func view(node: NodeID, status: RaftStatus) -> ReadinessView {
        let detail: String
        var reason: String?
        switch self {
        case .ready(let leader, let applied):
            detail =
                leader == node
                ? "\(node) leads term \(status.term) and has applied its commit index \(applied)"
                : "\(node) follows \(leader) in term \(status.term) and has applied \(applied), "
                    + "all the leader had committed at its last contact (\(status.leaderCommit))"
        case .notReady(let why):
            reason = why.name
            switch why {
            case .noLeader:
                detail =
                    "\(node) knows no leader in term \(status.term) (\(status.role)): an election is on, "
                    + "or it cannot reach a majority of \(status.membership.voters.count) voters"
            case .catchingUp(let leader, let applied, let leaderCommit):
                detail =
                    leader == node
                    ? "\(node) leads term \(status.term) but has applied \(applied) of its commit index \(leaderCommit)"
                    : "\(node) has applied \(applied) of the \(leaderCommit) its leader \(leader) had committed "
                        + "at its last contact; it is catching up"
            case .notMember(let leader):
                detail =
                    "\(node) knows the leader \(leader) but is not a member of the cluster it has seen: it was "
                    + "removed (it takes no part; stop it), or it is being added and has not heard of it yet"
            }
        }
        return ReadinessView(
            ready: reason == nil, node: node.description, reason: reason, detail: detail,
            leader: status.leader?.description, term: status.term.rawValue, appliedIndex: status.applied.rawValue,
            leaderCommitIndex: status.leaderCommit.rawValue)
    }
}
