// Learners, single-server membership changes (Ongaro §4.1) and leadership transfer (§3.10).
public import ClusterModel

extension RaftNode {
    /// Proposes one membership change; returns the index of its log entry.
    ///
    /// A change takes effect on every node as soon as its entry is appended, not when it commits
    /// (Ongaro §4.1): with single-server changes any majority of the old membership overlaps any
    /// majority of the new, so using the newest membership at once is safe, and it lets a removed
    /// leader stop counting itself immediately. The price is that a truncated change must be undone
    /// (`recomputeMembershipFromLog`). Refused until this leader has committed an entry of its own
    /// term (otherwise two leaders could each add a change to different old memberships) and while
    /// another change is uncommitted.
    @discardableResult
    public mutating func changeMembership(_ change: MembershipChange) throws(MembershipChangeError) -> LogIndex {
        guard currentRole == .leader else { throw MembershipChangeError.notLeader(leaderHint: currentLeader) }
        guard hasCommittedInTerm else { throw MembershipChangeError.leaderHasNotCommittedInItsTerm(term: currentTerm) }
        guard membershipIndex <= commit else { throw MembershipChangeError.changeInProgress(index: membershipIndex) }
        if let target = transferTarget { throw MembershipChangeError.leadershipTransferInProgress(target: target) }
        var next = membership
        switch change {
        case .addLearner(let node):
            guard node.rawValue != 0, !membership.contains(node) else {
                throw MembershipChangeError.alreadyMember(node)
            }
            next.learners.insert(node)
        case .promote(let node):
            guard membership.learners.contains(node) else { throw MembershipChangeError.notLearner(node) }
            let match = progress[node]?.match ?? 0
            guard log.lastIndex - match <= configuration.maxPromotionLag else {
                throw MembershipChangeError.learnerNotCaughtUp(node, match: match, leaderLastIndex: log.lastIndex)
            }
            next.learners.remove(node)
            next.voters.insert(node)
        case .remove(let node):
            guard membership.contains(node) else { throw MembershipChangeError.notMember(node) }
            if membership.voters == [node] { throw MembershipChangeError.wouldRemoveLastVoter(node) }
            next.voters.remove(node)
            next.learners.remove(node)
        }
        let entry = Entry(term: currentTerm, index: log.lastIndex + 1, payload: .membership(next))
        appendAsLeader(entry)
        return entry.index
    }

    /// Makes `newMembership` the one in force (called when its entry is appended).
    mutating func adoptMembership(_ newMembership: Membership, at index: LogIndex) {
        let removed = membership.members.subtracting(newMembership.members)
        membership = newMembership
        membershipIndex = index
        departingNodes = currentRole == .leader ? removed.subtracting([id]) : []
        peers = newMembership.members.union(departingNodes).subtracting([id]).sorted()
        guard currentRole == .leader else {
            if currentRole != .follower && !isPromotable { becomeFollower(term: currentTerm, leader: currentLeader) }
            return
        }
        for node in peers where progress[node] == nil {
            progress[node] = newProgress()
        }
        // A lease stands on the quorum of the membership that confirmed it; two changes in a row
        // could leave a quorum without any of those voters. The next read takes a round again.
        leaseExpiry = nil
        leaseRound = nil
        for node in progress.keys where !peers.contains(node) {
            progress[node] = nil
        }
        if let target = transferTarget, !newMembership.voters.contains(target) { transferTarget = nil }
        // Removing a voter can shrink the quorum so that waiting entries are now committed.
        maybeCommit()
    }

    /// Once the change that removed them commits, departing nodes get nothing more.
    mutating func releaseDepartingNodes() {
        guard !departingNodes.isEmpty, membershipIndex <= commit else { return }
        for node in departingNodes { progress[node] = nil }
        departingNodes = []
        peers = Self.sortedPeers(of: membership, excluding: id)
    }

    /// After a suffix with a membership entry was truncated: the newest membership left in the log.
    mutating func recomputeMembershipFromLog() {
        var index = log.lastIndex
        while index > log.snapshotIndex {
            if case .membership(let found) = log.entry(at: index).payload {
                adoptMembership(found, at: index)
                return
            }
            index = index.previous
        }
        adoptMembership(snapshotMembership, at: log.snapshotIndex)
    }

    /// The membership in force at `index` (at or after the snapshot).
    func membership(at index: LogIndex) -> Membership {
        if index >= membershipIndex { return membership }
        var position = index
        while position > log.snapshotIndex {
            if case .membership(let found) = log.entry(at: position).payload { return found }
            position = position.previous
        }
        return snapshotMembership
    }

    /// Hands leadership to `target` (Ongaro §3.10): proposals stop, the target is caught up, then it is
    /// told to start an election at once. Abandoned if it has not happened within an election timeout.
    public mutating func transferLeadership(to target: NodeID) throws(TransferError) {
        guard currentRole == .leader else { throw TransferError.notLeader(leaderHint: currentLeader) }
        guard target != id else { throw TransferError.alreadyLeader }
        guard membership.voters.contains(target) else { throw TransferError.notVoter(target) }
        if let current = transferTarget {
            if current == target { return }
            throw TransferError.transferInProgress(target: current)
        }
        transferTarget = target
        // The transfer gets one full election timeout to finish.
        electionElapsed = 0
        if progress[target]?.match == log.lastIndex {
            forfeitLease()
            send(.timeoutNow, to: target)
        }
    }
}
