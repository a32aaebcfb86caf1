// Tests of RaftNode's inputs on small clusters: dedup, refused changes, and the Ready/advance cycle.
import ClusterModel
import RaftCore
import Testing

/// A tiny in-test cluster that delivers every message at once (no loss) until nothing moves.
private struct Cluster {
    var nodes: [NodeID: RaftNode] = [:]
    var applied: [NodeID: [CommittedEntry]] = [:]

    init(voters: [NodeID], preVote: Bool = false) throws {
        for id in voters {
            let configuration = RaftConfiguration(id: id, preVote: preVote, maxPromotionLag: 0)
            nodes[id] = try RaftNode(
                configuration: configuration,
                membership: Membership(voters: Set(voters)),
                random: SeededGenerator(seed: id.rawValue)
            )
        }
    }

    mutating func settle() throws {
        var moved = true
        while moved {
            moved = false
            for id in nodes.keys.sorted() where nodes[id]!.hasReady {
                moved = true
                let ready = nodes[id]!.ready()
                applied[id, default: []].append(contentsOf: ready.committedEntries)
                nodes[id]!.advance(ready)
                for message in ready.messages where nodes[message.to] != nil {
                    try nodes[message.to]!.step(message)
                }
            }
        }
    }

    mutating func elect(_ id: NodeID) throws {
        nodes[id]!.campaign()
        try settle()
    }
}

@Test func aRetriedRequestIsDeliveredAsDuplicateOnEveryNode() throws {
    var cluster = try Cluster(voters: [1, 2, 3])
    try cluster.elect(1)
    let request = RequestID(client: 9, sequence: 1)
    try cluster.nodes[1]!.propose(Array("x".utf8), requestID: request)
    try cluster.nodes[1]!.propose(Array("x".utf8), requestID: request)
    try cluster.nodes[1]!.propose(Array("y".utf8), requestID: RequestID(client: 9, sequence: 2))
    try cluster.settle()
    for id: NodeID in [1, 2, 3] {
        let commands = cluster.applied[id]!.filter { $0.entry.requestID != nil }
        #expect(commands.map(\.isDuplicate) == [false, true, false], "on \(id)")
    }
}

@Test func followersRefuseProposalsAndNameTheLeader() throws {
    var cluster = try Cluster(voters: [1, 2, 3])
    try cluster.elect(2)
    #expect(throws: ProposalError.notLeader(leaderHint: 2)) {
        try cluster.nodes[1]!.propose(Array("x".utf8))
    }
}

@Test func membershipChangesAreValidated() throws {
    var cluster = try Cluster(voters: [1, 2, 3])
    try cluster.elect(1)
    #expect(throws: MembershipChangeError.alreadyMember(2)) { try cluster.nodes[1]!.changeMembership(.addLearner(2)) }
    #expect(throws: MembershipChangeError.notLearner(2)) { try cluster.nodes[1]!.changeMembership(.promote(2)) }
    #expect(throws: MembershipChangeError.notMember(7)) { try cluster.nodes[1]!.changeMembership(.remove(7)) }
    #expect(throws: MembershipChangeError.notLeader(leaderHint: 1)) {
        try cluster.nodes[2]!.changeMembership(.addLearner(4))
    }
    // A learner nobody has heard from has match 0: too far behind to vote.
    try cluster.nodes[1]!.changeMembership(.addLearner(4))
    try cluster.settle()
    #expect(throws: MembershipChangeError.learnerNotCaughtUp(4, match: 0, leaderLastIndex: 2)) {
        try cluster.nodes[1]!.changeMembership(.promote(4))
    }
}

@Test func theLastVoterCannotBeRemoved() throws {
    var cluster = try Cluster(voters: [1])
    try cluster.elect(1)
    #expect(cluster.nodes[1]!.role == .leader)
    #expect(throws: MembershipChangeError.wouldRemoveLastVoter(1)) {
        try cluster.nodes[1]!.changeMembership(.remove(1))
    }
}

@Test func transferRequestsAreValidated() throws {
    var cluster = try Cluster(voters: [1, 2, 3])
    try cluster.elect(1)
    #expect(throws: TransferError.alreadyLeader) { try cluster.nodes[1]!.transferLeadership(to: 1) }
    #expect(throws: TransferError.notVoter(5)) { try cluster.nodes[1]!.transferLeadership(to: 5) }
    try cluster.nodes[1]!.transferLeadership(to: 3)
    try cluster.settle()
    #expect(cluster.nodes[3]!.role == .leader)
    #expect(cluster.nodes[1]!.leader == 3)
}

@Test func aMessageForAnotherNodeIsRefused() throws {
    var node = try RaftNode(
        configuration: RaftConfiguration(id: 1),
        membership: Membership(voters: [1, 2]),
        random: SeededGenerator(seed: 1)
    )
    let message = Message(from: 2, to: 3, term: 1, kind: .timeoutNow)
    #expect(throws: StepError.wrongRecipient(expected: 1, message: message)) { try node.step(message) }
}

@Test func uncommittedBytesAreBounded() throws {
    var cluster = try Cluster(voters: [1, 2, 3])
    try cluster.elect(1)
    var leader = cluster.nodes[1]!
    // The followers never answer: everything proposed stays uncommitted.
    var refused: ProposalError?
    for _ in 0..<100 {
        do { try leader.propose([UInt8](repeating: 0, count: 1 << 20)) } catch {
            refused = error
            break
        }
    }
    #expect(refused == .tooManyUncommittedBytes(limit: 64 << 20))
}

@Test func readyDoesNotRepeatWhatItHandedOut() throws {
    var cluster = try Cluster(voters: [1])
    try cluster.elect(1)
    var leader = cluster.nodes[1]!
    try leader.propose(Array("x".utf8))
    let first = leader.ready()
    #expect(first.entries.count == 1)
    let second = leader.ready()
    #expect(second.entries.isEmpty && second.committedEntries.isEmpty)
    leader.advance(first)
    let third = leader.ready()
    #expect(third.entries.isEmpty && third.committedEntries.map(\.entry.index) == [2])
    leader.advance(second)
    leader.advance(third)
    #expect(leader.status.applied == 2)
    #expect(!leader.hasReady)
}

/// Dissertation §10.2.1: the leader writes its log in parallel with its followers. Its appends may
/// leave before its own fsync, so it must not count its own copy until the shell reports it durable.
@Test func aLeaderCountsItsOwnEntryOnlyOnceItIsDurable() throws {
    var cluster = try Cluster(voters: [1])
    try cluster.elect(1)
    var leader = cluster.nodes[1]!
    try leader.propose(Array("x".utf8))
    let written = leader.ready()
    #expect(written.canSendBeforePersisting)
    #expect(written.entries.map(\.index) == [2] && written.committedEntries.isEmpty)
    #expect(leader.status.commit == 1, "a lone leader commits nothing it has not persisted")
    leader.advance(written)
    #expect(leader.status.commit == 2)
}

@Test func followerAcknowledgementsAloneDoNotCommitWhatTheLeaderHasNotPersisted() throws {
    var cluster = try Cluster(voters: [1, 2, 3, 4, 5])
    try cluster.elect(1)
    try cluster.nodes[1]!.propose(Array("x".utf8))
    let leaderReady = cluster.nodes[1]!.ready()
    #expect(leaderReady.canSendBeforePersisting)
    let appends = leaderReady.messages.filter { if case .append = $0.kind { true } else { false } }
    #expect(appends.count == 4)
    // Two followers persist and answer before the leader's own write completes: with the
    // leader's copy that would be a quorum of five, without it only two.
    for append in appends where append.to == 2 || append.to == 3 {
        try cluster.nodes[append.to]!.step(append)
        let followerReady = cluster.nodes[append.to]!.ready()
        #expect(!followerReady.canSendBeforePersisting, "a follower acknowledges only what is on disk")
        cluster.nodes[append.to]!.advance(followerReady)
        for response in followerReady.messages { try cluster.nodes[1]!.step(response) }
    }
    #expect(cluster.nodes[1]!.status.commit == 1)
    cluster.nodes[1]!.advance(leaderReady)
    #expect(cluster.nodes[1]!.status.commit == 2)
}

@Test func aLeaderAdvancedBeforeItsSyncCountsItselfOnlyOnceTheSyncIsReported() throws {
    var cluster = try Cluster(voters: [1, 2, 3])
    try cluster.elect(1)
    try cluster.nodes[1]!.propose(Array("x".utf8))
    let written = cluster.nodes[1]!.ready()
    #expect(written.canSendBeforePersisting && written.entries.map(\.index) == [2])
    // The shell wrote the batch and syncs it on another thread: it goes on at once.
    cluster.nodes[1]!.advance(written, durable: false)
    let appends = written.messages.filter { if case .append = $0.kind { true } else { false } }
    // One follower's acknowledgement with the leader's unsynced copy is not a quorum of three.
    let toTwo = try #require(appends.first { $0.to == 2 })
    try cluster.nodes[2]!.step(toTwo)
    let followerReady = cluster.nodes[2]!.ready()
    cluster.nodes[2]!.advance(followerReady)
    for response in followerReady.messages { try cluster.nodes[1]!.step(response) }
    #expect(cluster.nodes[1]!.status.commit == 1, "the leader counted a copy that is not on its disk yet")
    // The sync returns: now the leader's copy counts.
    cluster.nodes[1]!.persisted(written.durability)
    #expect(cluster.nodes[1]!.status.commit == 2)
}

@Test func twoFollowersCommitWhatTheLeaderIsStillSyncing() throws {
    var cluster = try Cluster(voters: [1, 2, 3])
    try cluster.elect(1)
    try cluster.nodes[1]!.propose(Array("x".utf8))
    let written = cluster.nodes[1]!.ready()
    cluster.nodes[1]!.advance(written, durable: false)
    for append in written.messages {
        guard case .append = append.kind else { continue }
        try cluster.nodes[append.to]!.step(append)
        let followerReady = cluster.nodes[append.to]!.ready()
        cluster.nodes[append.to]!.advance(followerReady)
        for response in followerReady.messages { try cluster.nodes[1]!.step(response) }
    }
    #expect(cluster.nodes[1]!.status.commit == 2, "two durable followers are a quorum of three")
}

@Test func aSyncReportedForEntriesTheLogNoLongerHoldsChangesNothing() throws {
    var cluster = try Cluster(voters: [1, 2, 3])
    try cluster.elect(1)
    for command in ["x", "y", "z"] { try cluster.nodes[1]!.propose(Array(command.utf8)) }
    let written = cluster.nodes[1]!.ready()
    #expect(written.entries.map(\.index) == [2, 3, 4])
    cluster.nodes[1]!.advance(written, durable: false)
    #expect(cluster.nodes[1]!.status.durableIndex == 1)
    // Node 2 leads a later term without them (node 1 cut off); back in contact, node 1 loses
    // them to node 2's entry at index 2.
    let one = cluster.nodes.removeValue(forKey: 1)!
    for _ in 0..<30 {
        cluster.nodes[2]!.tick()
        cluster.nodes[3]!.tick()
        try cluster.settle()
    }
    try cluster.elect(2)
    cluster.nodes[1] = one
    cluster.nodes[2]!.tick()
    try cluster.settle()
    #expect(cluster.nodes[1]!.status.role == .follower)
    #expect(cluster.nodes[1]!.status.lastIndex == 2 && cluster.nodes[1]!.status.durableIndex == 2)
    // The old batch's report names index 4 of term 1's leader: nothing at 4 now, so nothing moves.
    cluster.nodes[1]!.persisted(written.durability)
    #expect(cluster.nodes[1]!.status.durableIndex == 2)
}

@Test func onlyALeadersBatchMayBeAdvancedBeforeItIsDurable() async throws {
    await #expect(processExitsWith: .failure) {
        var node = try RaftNode(
            configuration: RaftConfiguration(id: 1, preVote: false),
            membership: Membership(voters: [1]),
            random: SeededGenerator(seed: 1))
        node.campaign()
        // The election's term and vote must be durable before its messages leave.
        node.advance(node.ready(), durable: false)
    }
}

@Test func aNewlyElectedLeaderWaitsForItsVoteToBeDurableBeforeSendingEarly() throws {
    var node = try RaftNode(
        configuration: RaftConfiguration(id: 1, preVote: false),
        membership: Membership(voters: [1]),
        random: SeededGenerator(seed: 1)
    )
    node.campaign()
    let elected = node.ready()
    #expect(elected.role == .leader)
    #expect(!elected.canSendBeforePersisting, "the term and vote of this election are not on disk yet")
    node.advance(elected)
    try node.propose(Array("x".utf8))
    #expect(node.ready().canSendBeforePersisting)
}

@Test(arguments: [
    AppendEntries(previousIndex: 3, previousTerm: 1, entries: [Entry(term: 1, index: 5, payload: .noop)], commit: 0),
    AppendEntries(
        previousIndex: 0,
        previousTerm: 0,
        entries: [Entry(term: 2, index: 1, payload: .noop), Entry(term: 1, index: 2, payload: .noop)],
        commit: 0
    ),
    AppendEntries(previousIndex: 0, previousTerm: 0, entries: [Entry(term: 9, index: 1, payload: .noop)], commit: 0),
])
func malformedAppendEntriesAreRefusedWithoutEffect(append: AppendEntries) throws {
    var node = try RaftNode(
        configuration: RaftConfiguration(id: 1),
        membership: Membership(voters: [1, 2]),
        random: SeededGenerator(seed: 1)
    )
    let before = node.status
    #expect(throws: StepError.self) {
        try node.step(Message(from: 2, to: 1, term: 2, kind: .append(append)))
    }
    #expect(node.status == before)
    #expect(!node.hasReady)
}

@Test func aSnapshotChunkOutsideItsSnapshotIsRefused() throws {
    var node = try RaftNode(
        configuration: RaftConfiguration(id: 1),
        membership: Membership(voters: [1, 2]),
        random: SeededGenerator(seed: 1)
    )
    let metadata = SnapshotMetadata(index: 5, term: 1, membership: Membership(voters: [1, 2]))
    let chunk = SnapshotChunk(metadata: metadata, offset: 4, bytes: [1, 2, 3], totalBytes: 5, isLast: true)
    #expect(throws: StepError.self) { try node.step(Message(from: 2, to: 1, term: 1, kind: .installSnapshot(chunk))) }
}

@Test func anUnreachableFollowerIsProbedAgain() throws {
    var cluster = try Cluster(voters: [1, 2, 3])
    try cluster.elect(1)
    var leader = cluster.nodes[1]!
    try leader.propose(Array("x".utf8))
    // The append to n2 is lost with its connection.
    _ = leader.ready()
    #expect(leader.status.progress[2]?.inflightMessages == 1)
    leader.reportUnreachable(2)
    #expect(leader.status.progress[2]?.mode == .probe)
    #expect(leader.status.progress[2]?.inflightMessages == 0)
    let retry = leader.ready()
    #expect(retry.messages.contains { $0.to == 2 })
}

/// §7: when a follower already holds a snapshot's last entry it keeps the entries after it, but those
/// may be a deposed leader's; it must not tell the leader it matches beyond the snapshot.
@Test func aFollowerKeepingItsLogAfterASnapshotClaimsOnlyTheSnapshot() throws {
    let entries = [
        Entry(term: 1, index: 1, payload: .noop),
        Entry(term: 1, index: 2, payload: .command(Array("a".utf8))),
        Entry(term: 2, index: 3, payload: .command(Array("from a deposed leader".utf8))),
    ]
    var follower = try RaftNode(
        configuration: RaftConfiguration(id: 1),
        hardState: HardState(term: 2, vote: nil, commit: 1),
        snapshot: nil,
        entries: entries,
        bootstrapMembership: Membership(voters: [1, 2, 3]),
        random: SeededGenerator(seed: 1)
    )
    let metadata = SnapshotMetadata(index: 2, term: 1, membership: Membership(voters: [1, 2, 3]))
    let chunk = SnapshotChunk(metadata: metadata, offset: 0, bytes: [7], totalBytes: 1, isLast: true)
    try follower.step(Message(from: 2, to: 1, term: 3, kind: .installSnapshot(chunk)))
    let ready = follower.ready()
    #expect(ready.messages.map(\.kind) == [.appendResponse(AppendResponse(index: 2))])
    #expect(follower.status.commit == 2)
    #expect(follower.status.lastIndex == 3, "the entries after the snapshot's last one are kept")
}

@Test func committedEntriesAreHandedOutInBoundedBatches() throws {
    let entries = (1...10).map {
        Entry(term: 1, index: LogIndex(UInt64($0)), payload: .command([UInt8](repeating: 0, count: 100)))
    }
    var node = try RaftNode(
        configuration: RaftConfiguration(id: 1, maxCommittedBytesPerReady: 300),
        hardState: HardState(term: 1, vote: nil, commit: 10),
        snapshot: nil,
        entries: entries,
        bootstrapMembership: Membership(voters: [1, 2, 3]),
        random: SeededGenerator(seed: 1)
    )
    var batches: [[LogIndex]] = []
    while node.hasReady {
        let ready = node.ready()
        batches.append(ready.committedEntries.map(\.entry.index))
        node.advance(ready)
    }
    #expect(batches.flatMap { $0 } == (1...10).map { LogIndex(UInt64($0)) })
    #expect(batches.count == 4, "132 bytes per entry: three entries reach 300 bytes, so batches of 3, 3, 3, 1")
}

/// §5.2, Figure 2: the vote must be durable before the grant is sent, and survive a restart, or a node
/// could vote twice in one term.
@Test func aVoteIsPersistedWithItsGrantAndHonouredAfterARestart() throws {
    let membership = Membership(voters: [1, 2, 3])
    var voter = try RaftNode(
        configuration: RaftConfiguration(id: 1, preVote: false),
        membership: membership,
        random: SeededGenerator(seed: 1)
    )
    let request = VoteRequest(lastIndex: 0, lastTerm: 0)
    try voter.step(Message(from: 2, to: 1, term: 5, kind: .vote(request)))
    let ready = voter.ready()
    #expect(ready.hardState == HardState(term: 5, vote: 2, commit: 0))
    #expect(ready.messages.map(\.kind) == [.voteResponse(granted: true)])
    var restarted = try RaftNode(
        configuration: RaftConfiguration(id: 1, preVote: false),
        hardState: try #require(ready.hardState),
        snapshot: nil,
        entries: ready.entries,
        bootstrapMembership: membership,
        random: SeededGenerator(seed: 2)
    )
    try restarted.step(Message(from: 3, to: 1, term: 5, kind: .vote(request)))
    #expect(restarted.ready().messages.map(\.kind) == [.voteResponse(granted: false)])
}

/// `/readyz` compares what a follower applied with its leader's commit index as of its last contact.
@Test func aFollowerKnowsItsLeadersCommitIndexAndForgetsItWhenTheLeaderIsGone() throws {
    var cluster = try Cluster(voters: [1, 2, 3])
    try cluster.elect(1)
    try cluster.nodes[1]!.propose(Array("x".utf8))
    try cluster.settle()
    let leader = cluster.nodes[1]!.status
    #expect(leader.leaderCommit == leader.commit && leader.commit == 2)
    for id: NodeID in [2, 3] {
        let follower = cluster.nodes[id]!.status
        #expect(follower.leader == 1 && follower.leaderCommit == 2 && follower.applied == 2, "on \(id)")
    }
    cluster.nodes[2]!.leaderProcessGone(1)
    #expect(cluster.nodes[2]!.status.leader == nil && cluster.nodes[2]!.status.leaderCommit == 0)
}

@Test func aFollowerBehindItsLeaderReportsTheLeadersCommitAboveItsOwn() throws {
    var follower = try RaftNode(
        configuration: RaftConfiguration(id: 2, preVote: false),
        membership: Membership(voters: [1, 2, 3]),
        random: SeededGenerator(seed: 2)
    )
    // The leader has committed 5; this append brings the follower only its first entry.
    let append = AppendEntries(
        previousIndex: 0, previousTerm: 0, entries: [Entry(term: 1, index: 1, payload: .noop)], commit: 5)
    try follower.step(Message(from: 1, to: 2, term: 1, kind: .append(append)))
    #expect(follower.status.leader == 1)
    #expect(follower.status.commit == 1 && follower.status.leaderCommit == 5)
    // A heartbeat's commit is capped at the follower's match, so it never lowers what was heard.
    try follower.step(Message(from: 1, to: 2, term: 1, kind: .heartbeat(Heartbeat(commit: 1, readRound: 0))))
    #expect(follower.status.leaderCommit == 5)
    // A new term's leader starts from what it says itself.
    try follower.step(Message(from: 3, to: 2, term: 2, kind: .heartbeat(Heartbeat(commit: 1, readRound: 0))))
    #expect(follower.status.leader == 3 && follower.status.leaderCommit == 1)
}
