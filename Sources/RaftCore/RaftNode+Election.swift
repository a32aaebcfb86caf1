// Elections: timeouts, PreVote, RequestVote, CheckQuorum and the term rules every message obeys.
public import ClusterModel

extension RaftNode {
    /// Starts an election now, as if the election timeout had fired (with a pre-vote round first
    /// when PreVote is on). Does nothing on a leader or on a node that cannot vote.
    public mutating func campaign() {
        campaign(isLeadershipTransfer: false)
    }

    /// Reports that the process of `node` is gone: the shell saw its connection to `node` close
    /// and a new connection refused, which a live process never does (its port is open for as long
    /// as it runs). Nothing is sent and no term changes here.
    ///
    /// A follower whose leader is `node` forgets that leader, so that it grants pre-votes and votes
    /// at once instead of defending a dead leader for a whole election timeout (the CheckQuorum
    /// stickiness of Ongaro §4.2.3), and arms its election timer to fire within a few ticks
    /// (`leaderGoneDelay`), unless it fires sooner anyway. A leader that is in fact alive loses
    /// nothing: its next heartbeat or append makes it the leader again and restores the normal
    /// timeout, and the pre-vote it may meet first is refused by every voter that did not hear the
    /// news. Raft's safety never depends on timing, so a wrong report can cost an election, never a
    /// committed entry.
    ///
    /// Ignored on a leader, and for any node that is not this node's current leader (a dead
    /// follower changes nothing about elections; a pre-candidate or candidate has no leader).
    public mutating func leaderProcessGone(_ node: NodeID) {
        guard currentRole != .leader, currentLeader == node else { return }
        currentLeader = nil
        heardLeaderCommit = 0
        guard let delay = leaderGoneDelay(after: node) else { return }
        randomizedElectionTimeout = min(randomizedElectionTimeout, electionElapsed + delay)
    }

    /// How many ticks after hearing that `leader` died this voter campaigns: 1, 3, 5, … by its rank
    /// among the surviving voters, counted in id order from the one after `leader` (so leadership
    /// does not always land on the same node). Every follower hears the news at about the same
    /// moment; a random delay would make two of them stand in the same tick one time in three,
    /// grant each other's pre-vote, split the vote and wait out a full election timeout. Two ticks
    /// apart, the first one's pre-vote and vote round trips are over before the next one stands;
    /// if the first cannot win (its log is behind), the next one does two ticks later. Nil for a
    /// node that cannot campaign.
    func leaderGoneDelay(after leader: NodeID) -> Int? {
        guard isPromotable else { return nil }
        let survivors = membership.voters.subtracting([leader]).sorted()
        let order = survivors.filter { $0 > leader } + survivors.filter { $0 < leader }
        return order.firstIndex(of: id).map { 1 + 2 * $0 }
    }

    /// A follower has heard nothing from its leader for `leaderSilenceTicks`: the leader's host may
    /// have vanished (power lost, network cut), which closes no connection, so `leaderProcessGone`
    /// never comes. From now on it grants the pre-votes of others that hear no leader either
    /// (`ignoresVoteRequest`), and it campaigns itself after the same rank-ordered delay as for a
    /// dead leader. It keeps its leader until then: a leader that merely missed a few heartbeats
    /// (a slow link, a busy host) is still followed, and its next heartbeat restores the full
    /// timeout. A follower that alone stops hearing its leader cannot depose it: its pre-vote
    /// needs a majority, and a voter that heard the leader within `leaderSilenceTicks` ignores it.
    private mutating func leaderFellSilent() {
        guard currentRole == .follower, let leader = currentLeader, leader != id,
            let delay = leaderGoneDelay(after: leader)
        else { return }
        randomizedElectionTimeout = min(randomizedElectionTimeout, electionElapsed + delay)
    }

    /// The election timer was shortened by `leaderProcessGone` or `leaderFellSilent`: normal draws
    /// are never below `electionTicks`.
    var electionTimerIsShortened: Bool { randomizedElectionTimeout < configuration.electionTicks }

    mutating func tickElection() {
        electionElapsed += 1
        if electionElapsed == configuration.leaderSilenceTicks { leaderFellSilent() }
        if isPromotable && electionElapsed >= randomizedElectionTimeout {
            campaign(isLeadershipTransfer: false)
        }
    }

    mutating func tickLeader() {
        heartbeatElapsed += 1
        electionElapsed += 1
        for node in peers { progress[node]?.ticksSinceHeard += 1 }
        // Ongaro §6.2: a leader that has not heard from a majority within an election timeout steps
        // down, so that clients look for the real leader and a stale leader stops serving.
        if configuration.checkQuorum && !quorumRecentlyActive {
            becomeFollower(term: currentTerm, leader: nil)
            return
        }
        tickSnapshotStreams()
        if electionElapsed >= configuration.electionTicks {
            electionElapsed = 0
            // A transfer that did not finish within an election timeout is abandoned (Ongaro §3.10).
            transferTarget = nil
        }
        if heartbeatElapsed >= configuration.heartbeatTicks {
            heartbeatElapsed = 0
            broadcastHeartbeat()
        }
    }

    var quorumRecentlyActive: Bool {
        var active = 0
        for voter in membership.voters
        where voter == id || (progress[voter]?.ticksSinceHeard ?? .max) < configuration.electionTicks {
            active += 1
        }
        return active >= membership.quorum
    }

    mutating func campaign(isLeadershipTransfer: Bool) {
        guard currentRole != .leader, isPromotable else { return }
        // A lease promise holds this node back (a transfer's election was asked for by the leader,
        // which gave up its lease first).
        if holdsLeasePromise && !isLeadershipTransfer { return }
        if configuration.preVote && !isLeadershipTransfer {
            becomePreCandidate()
            requestVotes(term: currentTerm.next, isPreVote: true, isLeadershipTransfer: false)
        } else {
            becomeCandidate()
            requestVotes(term: currentTerm, isPreVote: false, isLeadershipTransfer: isLeadershipTransfer)
        }
    }

    private mutating func requestVotes(term: Term, isPreVote: Bool, isLeadershipTransfer: Bool) {
        // Our own vote first: a single-voter cluster wins at once.
        if tallyVote(from: id, granted: true) { return }
        let request = VoteRequest(
            lastIndex: log.lastIndex,
            lastTerm: log.lastTerm,
            isLeadershipTransfer: isLeadershipTransfer
        )
        for voter in membership.voters.sorted() where voter != id {
            send(isPreVote ? .preVote(request) : .vote(request), to: voter, term: term)
        }
    }

    /// Records a vote and acts on a decided election; returns true if the election was decided.
    private mutating func tallyVote(from voter: NodeID, granted: Bool) -> Bool {
        guard membership.voters.contains(voter), votes[voter] == nil else { return false }
        votes[voter] = granted
        let grants = votes.values.filter { $0 }.count
        let rejections = votes.count - grants
        if grants >= membership.quorum {
            if currentRole == .preCandidate {
                becomeCandidate()
                requestVotes(term: currentTerm, isPreVote: false, isLeadershipTransfer: false)
            } else {
                becomeLeader()
            }
            return true
        }
        if rejections > membership.voters.count - membership.quorum {
            becomeFollower(term: currentTerm, leader: nil)
            return true
        }
        return false
    }

    mutating func becomeFollower(term: Term, leader: NodeID?) {
        precondition(term >= currentTerm, "\(id) moving back from term \(currentTerm) to \(term)")
        if term > currentTerm {
            currentTerm = term
            vote = nil
        }
        currentRole = .follower
        currentLeader = leader
        resetRoleState()
    }

    private mutating func becomePreCandidate() {
        precondition(currentRole != .leader, "\(id) is leader of term \(currentTerm) and cannot pre-campaign")
        // The term and vote stay: a pre-candidate changes nothing that is persisted (Ongaro §9.6).
        currentRole = .preCandidate
        currentLeader = nil
        resetRoleState()
    }

    private mutating func becomeCandidate() {
        precondition(currentRole != .leader, "\(id) is leader of term \(currentTerm) and cannot campaign")
        currentTerm = currentTerm.next
        vote = id
        currentRole = .candidate
        currentLeader = nil
        resetRoleState()
    }

    private mutating func becomeLeader() {
        precondition(
            currentRole == .candidate,
            "\(id) becoming leader of term \(currentTerm) from \(currentRole) instead of candidate"
        )
        currentRole = .leader
        currentLeader = id
        resetRoleState()
        for node in peers { progress[node] = newProgress() }
        // §5.4.2 and §6.4: the leader cannot know what is committed until an entry of its own term is;
        // the no-op gets it there without waiting for a client.
        appendAsLeader(Entry(term: currentTerm, index: log.lastIndex + 1, payload: .noop))
    }

    func newProgress() -> Progress {
        Progress(
            next: log.lastIndex + 1,
            inflights: Inflights(capacity: configuration.maxInflightMessages, maxBytes: configuration.maxInflightBytes)
        )
    }

    private mutating func resetRoleState() {
        heardLeaderCommit = 0
        resetElectionTimer()
        heartbeatElapsed = 0
        votes = [:]
        progress = [:]
        transferTarget = nil
        uncommittedBytes = 0
        pendingReads = []
        readsAwaitingLeaderCommit = []
        readHeartbeatDue = false
        leaseRound = nil
        leaseExpiry = nil
        leaseForfeited = false
        if !departingNodes.isEmpty {
            departingNodes = []
            peers = Self.sortedPeers(of: membership, excluding: id)
        }
    }

    // MARK: Messages.

    mutating func handle(_ message: Message) {
        guard message.from != id else { return }
        if message.term > currentTerm {
            if case .preVote(let request) = message.kind, ignoresVoteRequest(request) { return }
            if case .vote(let request) = message.kind, ignoresVoteRequest(request) { return }
            switch message.kind {
            case .preVote:
                // Answering a pre-vote changes nothing here: the candidate's term is only hypothetical.
                break
            case .preVoteResponse(granted: true):
                // A granted pre-vote carries the term we would campaign in, not a newer leader's term.
                break
            case .append, .heartbeat, .installSnapshot:
                becomeFollower(term: message.term, leader: message.from)
            default:
                becomeFollower(term: message.term, leader: nil)
            }
        } else if message.term < currentTerm {
            switch message.kind {
            case .append, .heartbeat:
                // A deposed leader that cannot reach the majority never learns the new term from a vote
                // request (PreVote and the lease suppress those); tell it, so it steps down.
                if configuration.checkQuorum || configuration.preVote {
                    send(.appendResponse(AppendResponse(index: 0, rejected: true)), to: message.from)
                }
            case .preVote:
                send(.preVoteResponse(granted: false), to: message.from)
            default:
                break
            }
            return
        }

        switch message.kind {
        case .preVote(let request):
            answerVote(request, from: message.from, term: message.term, isPreVote: true)
        case .vote(let request):
            answerVote(request, from: message.from, term: message.term, isPreVote: false)
        case .preVoteResponse(let granted):
            if currentRole == .preCandidate { _ = tallyVote(from: message.from, granted: granted) }
        case .voteResponse(let granted):
            if currentRole == .candidate { _ = tallyVote(from: message.from, granted: granted) }
        case .append(let append):
            acceptLeader(message.from, commit: append.commit)
            handleAppend(append, from: message.from)
        case .heartbeat(let heartbeat):
            acceptLeader(message.from, commit: heartbeat.commit)
            handleHeartbeat(heartbeat, from: message.from)
        case .installSnapshot(let chunk):
            // A snapshot holds only committed entries: the leader's commit is at least its last index.
            acceptLeader(message.from, commit: chunk.metadata.index)
            handleSnapshotChunk(chunk, from: message.from)
        case .appendResponse(let response):
            if currentRole == .leader { handleAppendResponse(response, from: message.from) }
        case .heartbeatResponse(let round, let promised):
            if currentRole == .leader {
                handleHeartbeatResponse(readRound: round, promised: promised, from: message.from)
            }
        case .snapshotResponse(let response):
            if currentRole == .leader { handleSnapshotResponse(response, from: message.from) }
        case .timeoutNow:
            // Ongaro §3.10: the leader caught us up and asks us to start an election right away.
            campaign(isLeadershipTransfer: true)
        case .readIndex(let context):
            if currentRole == .leader { handleReadRequest(context: context, requester: message.from) }
        case .readIndexResponse(let state):
            if currentRole != .leader { readStates.append(state) }
        }
    }

    /// With CheckQuorum, a node that heard from its leader within the minimum election timeout
    /// ignores vote requests, so a partitioned node rejoining with a higher term cannot depose a
    /// healthy leader (Ongaro §4.2.3). A transfer's election is exempt: the leader asked for it.
    /// With `leaderSilenceTicks`, a follower defends its leader only that long: a candidate then
    /// wins only with a majority that has not heard the leader for that long, which a leader that
    /// reaches a majority (and heartbeats every `heartbeatTicks`) never lets happen. A node that
    /// keeps a lease promise (`LeasePromise`) ignores every request of a higher term but a
    /// transfer's (and `answerVote` refuses those of its own term).
    private func ignoresVoteRequest(_ request: VoteRequest) -> Bool {
        if holdsLeasePromise && !request.isLeadershipTransfer { return true }
        guard configuration.checkQuorum, !request.isLeadershipTransfer, currentLeader != nil else { return false }
        if currentRole == .follower, let silence = configuration.leaderSilenceTicks {
            return electionElapsed < silence
        }
        return electionElapsed < configuration.electionTicks
    }

    /// Same-term AppendEntries, heartbeat or snapshot chunk: its sender is the leader of this term.
    /// `commit` is the leader's commit index as the message states it (a lower bound of it).
    private mutating func acceptLeader(_ node: NodeID, commit leaderCommit: LogIndex) {
        if currentRole != .follower {
            becomeFollower(term: currentTerm, leader: node)
        }
        currentLeader = node
        heardLeaderCommit = max(heardLeaderCommit, leaderCommit)
        electionElapsed = 0
        // The leader reported gone is alive after all (or a new one took over): back to a full timeout.
        if electionTimerIsShortened { resetElectionTimer() }
    }

    private mutating func answerVote(_ request: VoteRequest, from candidate: NodeID, term: Term, isPreVote: Bool) {
        // A lease promise refuses every vote but a transfer's, whatever its term: a node can reach
        // a candidate's term without voting (a rejection from a newer term) while it keeps one.
        if holdsLeasePromise && !request.isLeadershipTransfer {
            send(isPreVote ? .preVoteResponse(granted: false) : .voteResponse(granted: false), to: candidate)
            return
        }
        // §5.2: one vote per term, first come first served; a pre-vote for a future term commits to nothing.
        let canVote =
            vote == candidate || (vote == nil && currentLeader == nil) || (isPreVote && term > currentTerm)
        // §5.4.1: only for a candidate whose log is at least as up to date as ours.
        if canVote && log.isUpToDate(lastIndex: request.lastIndex, lastTerm: request.lastTerm) {
            send(isPreVote ? .preVoteResponse(granted: true) : .voteResponse(granted: true), to: candidate, term: term)
            if !isPreVote {
                vote = candidate
                electionElapsed = 0
                // Give the candidate we voted for a full timeout to win, rather than challenge it.
                if electionTimerIsShortened { resetElectionTimer() }
            }
        } else {
            send(isPreVote ? .preVoteResponse(granted: false) : .voteResponse(granted: false), to: candidate)
        }
    }
}
