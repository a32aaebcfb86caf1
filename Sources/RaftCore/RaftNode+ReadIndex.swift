// Linearizable reads without writing to the log: ReadIndex (§6.4).
import ClusterModel

extension RaftNode {
    /// Asks for a linearizable read point; the answer arrives as a `ReadState` in a later `Ready`.
    ///
    /// On the leader: once it has committed an entry of its term, the read index is its commit index,
    /// released when a quorum confirms in a heartbeat round that it is still leader. On a follower: the
    /// request goes to the leader. If leadership changes meanwhile, no answer comes; the shell times
    /// the read out and retries.
    public mutating func readIndex(context: [UInt8]) throws(ProposalError) {
        if currentRole == .leader {
            handleReadRequest(context: context, requester: id)
        } else if let leader = currentLeader {
            send(.readIndex(context: context), to: leader)
        } else {
            throw ProposalError.notLeader(leaderHint: nil)
        }
    }

    mutating func handleReadRequest(context: [UInt8], requester: NodeID) {
        guard hasCommittedInTerm else {
            // §6.4 step 1: until its no-op commits, the leader does not know the latest commit index.
            readsAwaitingLeaderCommit.append((context, requester))
            return
        }
        if membership.voters == [id] {
            answerRead(ReadState(index: commit, context: context), requester: requester)
            return
        }
        readRound += 1
        pendingReads.append(PendingRead(round: readRound, index: commit, context: context, requester: requester))
        readHeartbeatDue = true
    }

    mutating func releaseReadsAwaitingLeaderCommit() {
        let waiting = readsAwaitingLeaderCommit
        readsAwaitingLeaderCommit = []
        for read in waiting { handleReadRequest(context: read.context, requester: read.requester) }
    }

    /// Releases every pending read whose round a quorum of voters (counting this leader) has echoed.
    mutating func confirmReads() {
        guard let oldest = pendingReads.first else { return }
        var rounds: [UInt64] = []
        for voter in membership.voters {
            rounds.append(voter == id ? readRound : progress[voter]?.readRound ?? 0)
        }
        rounds.sort(by: >)
        let confirmed = rounds[membership.quorum - 1]
        guard confirmed >= oldest.round else { return }
        let released = pendingReads.prefix { $0.round <= confirmed }
        pendingReads.removeFirst(released.count)
        for read in released {
            answerRead(ReadState(index: read.index, context: read.context), requester: read.requester)
        }
    }

    private mutating func answerRead(_ state: ReadState, requester: NodeID) {
        if requester == id {
            readStates.append(state)
        } else {
            send(.readIndexResponse(state), to: requester)
        }
    }
}
