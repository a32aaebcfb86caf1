// `GET /readyz`'s decision: a leader known, and applied up to its commit index as of the last contact.
import ClusterModel
import FlotillaAPI
import RaftCore
import Testing

@testable import Node

/// A status of node n1 with the fields the decision reads set; the rest as a new node has them.
private func status(role: Role, leader: NodeID?, applied: LogIndex, leaderCommit: LogIndex) throws -> RaftStatus {
    var status = try RaftNode(
        configuration: RaftConfiguration(id: 1, electionTicks: 10, heartbeatTicks: 1),
        membership: Membership(voters: [1, 2, 3]),
        random: SeededGenerator(seed: 1)
    ).status
    status.role = role
    status.leader = leader
    status.term = 4
    status.applied = applied
    status.leaderCommit = leaderCommit
    status.commit = max(applied, role == .leader ? leaderCommit : applied)
    return status
}

struct ReadinessCase: Sendable, CustomTestStringConvertible {
    var role: Role
    var leader: NodeID?
    var applied: LogIndex
    var leaderCommit: LogIndex
    var expected: Readiness
    var testDescription: String { "\(role) leader=\(leader.map(\.description) ?? "-") \(applied)/\(leaderCommit)" }
}

@Test(arguments: [
    // A follower that applied all its leader had committed at the last contact.
    ReadinessCase(role: .follower, leader: 2, applied: 41, leaderCommit: 41, expected: .ready(leader: 2, applied: 41)),
    // It may have applied more than the last heartbeat said (appends carry newer commits).
    ReadinessCase(role: .follower, leader: 2, applied: 42, leaderCommit: 41, expected: .ready(leader: 2, applied: 42)),
    // Behind: a restarted follower replaying, or one that lagged.
    ReadinessCase(
        role: .follower, leader: 2, applied: 30, leaderCommit: 41,
        expected: .notReady(.catchingUp(leader: 2, applied: 30, leaderCommit: 41))),
    // No leader: an election, or this node is cut off from the majority.
    ReadinessCase(role: .follower, leader: nil, applied: 41, leaderCommit: 0, expected: .notReady(.noLeader)),
    ReadinessCase(role: .preCandidate, leader: nil, applied: 41, leaderCommit: 0, expected: .notReady(.noLeader)),
    ReadinessCase(role: .candidate, leader: nil, applied: 41, leaderCommit: 0, expected: .notReady(.noLeader)),
    // The leader: ready once it has applied its own commit index.
    ReadinessCase(role: .leader, leader: 1, applied: 41, leaderCommit: 41, expected: .ready(leader: 1, applied: 41)),
    ReadinessCase(
        role: .leader, leader: 1, applied: 40, leaderCommit: 41,
        expected: .notReady(.catchingUp(leader: 1, applied: 40, leaderCommit: 41))),
])
func readinessFollowsTheLeadersCommitIndex(_ example: ReadinessCase) throws {
    let status = try status(
        role: example.role, leader: example.leader, applied: example.applied, leaderCommit: example.leaderCommit)
    let readiness = Readiness.of(status)
    #expect(readiness == example.expected)
    let view = readiness.view(node: 1, status: status)
    if case .ready = example.expected {
        #expect(readiness.httpStatus == 200 && view.ready && view.reason == nil && view.error == nil)
    } else {
        #expect(readiness.httpStatus == 503 && !view.ready && view.error == ReadinessView.notReady)
    }
    #expect(view.appliedIndex == example.applied.rawValue && view.leaderCommitIndex == example.leaderCommit.rawValue)
    #expect(view.leader == example.leader?.description && view.term == 4 && view.node == "n1")
}

@Test func theAnswerSaysWhyNotInWordsAndByName() throws {
    let behind = try status(role: .follower, leader: 2, applied: 30, leaderCommit: 41)
    let view = Readiness.of(behind).view(node: 1, status: behind)
    #expect(view.reason == "catching_up")
    #expect(
        view.detail == "n1 has applied 30 of the 41 its leader n2 had committed at its last contact; it is catching up")
    let alone = try status(role: .candidate, leader: nil, applied: 41, leaderCommit: 0)
    let noLeader = Readiness.of(alone).view(node: 1, status: alone)
    #expect(noLeader.reason == "no_leader")
    #expect(noLeader.detail.hasPrefix("n1 knows no leader in term 4 (candidate)"))
}

/// A removed node still knows its last leader and has applied all it heard of: not ready, by name.
@Test func aNodeOutsideItsMembershipIsNotReady() throws {
    var removed = try status(role: .follower, leader: 2, applied: 41, leaderCommit: 41)
    removed.membership = Membership(voters: [2, 3])
    let readiness = Readiness.of(removed)
    #expect(readiness == .notReady(.notMember(leader: 2)))
    let view = readiness.view(node: 1, status: removed)
    #expect(readiness.httpStatus == 503 && view.reason == "not_member")
    #expect(view.detail.hasPrefix("n1 knows the leader n2 but is not a member of the cluster it has seen"))
}
