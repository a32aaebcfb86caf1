// Log replication: AppendEntries with the consistency check, fast back-off, pipelining, commit rule.
public import ClusterModel

extension RaftNode {
    /// Appends an entry of this leader's term and commits at once if this node is the only voter.
    mutating func appendAsLeader(_ entry: Entry) {
        precondition(
            currentRole == .leader && entry.term == currentTerm && entry.index == log.lastIndex + 1,
            "\(id) appending \(entry) as \(currentRole) of term \(currentTerm) at last index \(log.lastIndex)"
        )
        log.append(entry)
        uncommittedBytes += entry.byteSize
        if case .membership(let newMembership) = entry.payload {
            adoptMembership(newMembership, at: entry.index)
        }
        maybeCommit()
    }

    /// §5.3, §5.4.2: commit the highest index stored on a quorum of voters, but only by counting
    /// replicas of an entry of the current term (earlier entries then commit indirectly, Figure 8).
    /// The leader's own replica counts once its shell has reported it durable.
    @discardableResult
    mutating func maybeCommit() -> Bool {
        guard currentRole == .leader, !membership.voters.isEmpty else { return false }
        // On the stack: this runs for every proposal and acknowledgement.
        let quorumIndex = withUnsafeTemporaryAllocation(of: LogIndex.self, capacity: membership.voters.count) {
            matches in
            var count = 0
            for voter in membership.voters {
                matches.initializeElement(at: count, to: voter == id ? persistedIndex : progress[voter]?.match ?? 0)
                count += 1
            }
            var filled = UnsafeMutableBufferPointer(rebasing: matches[..<count])
            filled.sort(by: >)
            defer { filled.deinitialize() }
            return filled[membership.quorum - 1]
        }
        guard quorumIndex > commit, log.term(at: quorumIndex) == currentTerm else { return false }
        leaderCommit(to: quorumIndex)
        return true
    }

    private mutating func leaderCommit(to index: LogIndex) {
        let wasCommittedInTerm = hasCommittedInTerm
        var released = 0
        var position = commit + 1
        while position <= index {
            if log.entry(at: position).term == currentTerm { released += log.entry(at: position).byteSize }
            position = position + 1
        }
        uncommittedBytes = max(0, uncommittedBytes - released)
        commit(to: index)
        if !wasCommittedInTerm && hasCommittedInTerm { releaseReadsAwaitingLeaderCommit() }
        releaseDepartingNodes()
        // Ongaro §4.2.2: a leader removed from the cluster leads until the change commits, then steps down.
        if !membership.voters.contains(id) && membershipIndex <= commit {
            stepDownAfterRemoval()
        }
    }

    /// The leader has committed an entry of its own term, so its commit index is the cluster's.
    var hasCommittedInTerm: Bool { log.term(at: commit) == currentTerm }

    private mutating func stepDownAfterRemoval() {
        // Hand over to the most up-to-date voter at once rather than leaving the cluster to time out.
        let caughtUp = membership.voters.sorted().first { progress[$0]?.match == log.lastIndex }
        if let successor = caughtUp {
            forfeitLease()
            send(.timeoutNow, to: successor)
        }
        becomeFollower(term: currentTerm, leader: nil)
    }

    // MARK: Follower side.

    mutating func handleAppend(_ append: AppendEntries, from leader: NodeID) {
        if append.previousIndex < commit {
            // Everything up to our commit index matches the leader already (Log Matching); say so.
            send(.appendResponse(AppendResponse(index: commit)), to: leader)
            return
        }
        guard log.matches(index: append.previousIndex, term: append.previousTerm) else {
            // §5.3 consistency check failed. Hint at the last entry that may match so the leader skips a
            // whole term of mismatches per round trip.
            let hint = log.lastIndex(atOrBelow: append.previousIndex, withTermAtMost: append.previousTerm)
            let response = AppendResponse(
                index: append.previousIndex,
                rejected: true,
                hintIndex: hint.index,
                hintTerm: hint.term
            )
            send(.appendResponse(response), to: leader)
            return
        }
        if let conflict = log.firstConflict(in: append.entries) {
            let firstNew = append.entries[conflict].index
            precondition(
                firstNew > commit,
                "\(id) told to overwrite committed entry \(firstNew) (commit \(commit)) by \(leader) in term \(currentTerm)"
            )
            if firstNew <= log.lastIndex {
                log.truncate(from: firstNew)
                unstableFrom = min(unstableFrom, firstNew)
                persistedIndex = min(persistedIndex, firstNew.previous)
                logGeneration += 1
                if membershipIndex >= firstNew { recomputeMembershipFromLog() }
            }
            for entry in append.entries[conflict...] {
                log.append(entry)
                if case .membership(let newMembership) = entry.payload {
                    adoptMembership(newMembership, at: entry.index)
                }
            }
        }
        let lastNew = append.previousIndex + UInt64(append.entries.count)
        commit(to: min(append.commit, lastNew))
        send(.appendResponse(AppendResponse(index: lastNew)), to: leader)
    }

    mutating func handleHeartbeat(_ heartbeat: Heartbeat, from leader: NodeID) {
        // The promise holds from now, before the answer that confirms the lease leaves.
        let promised = heartbeat.lease.map { promise(lease: $0) } ?? false
        // The leader caps the commit it sends at our known match, so we hold those entries.
        commit(to: min(heartbeat.commit, log.lastIndex))
        send(.heartbeatResponse(readRound: heartbeat.readRound, promised: promised), to: leader)
    }

    // MARK: Leader side.

    mutating func handleAppendResponse(_ response: AppendResponse, from follower: NodeID) {
        // A follower cannot hold more of this term's log than the leader; such an answer is not trusted.
        guard response.rejected || response.index <= log.lastIndex else { return }
        // Taken out while it changes (no copy of its inflight window); every path puts it back.
        guard var record = progress.removeValue(forKey: follower) else { return }
        record.ticksSinceHeard = 0
        if response.rejected {
            if case .snapshot = record.mode {
                progress[follower] = record
                return
            }
            var probeFrom = response.hintIndex
            if response.hintTerm > 0 {
                probeFrom = log.lastIndex(atOrBelow: response.hintIndex, withTermAtMost: response.hintTerm).index
            }
            if record.backOff(rejected: response.index, matchHint: probeFrom) {
                if case .replicate = record.mode { record.becomeProbe() }
            }
            progress[follower] = record
            return
        }
        if record.acknowledge(through: response.index) {
            switch record.mode {
            case .probe:
                record.becomeReplicate()
            case .snapshot:
                if record.match + 1 >= log.firstIndex {
                    record.becomeProbe()
                    record.becomeReplicate()
                }
            case .replicate:
                record.inflights.free(through: response.index)
            }
            progress[follower] = record
            maybeCommit()
            if follower == transferTarget && record.match == log.lastIndex {
                forfeitLease()
                send(.timeoutNow, to: follower)
            }
        } else {
            progress[follower] = record
        }
    }

    mutating func handleHeartbeatResponse(readRound round: UInt64, promised: Bool, from follower: NodeID) {
        guard var record = progress[follower] else { return }
        record.ticksSinceHeard = 0
        // A heartbeat got through: allow the next probe, in case the last one was lost.
        record.probeSent = false
        if round > record.readRound { record.readRound = round }
        if promised && round > record.promisedRound { record.promisedRound = round }
        if case .replicate = record.mode, record.match < log.lastIndex, record.match == record.matchAtLastHeartbeat {
            record.gapCheckDue = true
        }
        record.matchAtLastHeartbeat = record.match
        progress[follower] = record
        if round > 0 { confirmReads() }
    }

    mutating func broadcastHeartbeat() {
        readHeartbeatDue = false
        for node in peers {
            guard let record = progress[node] else { continue }
            let heartbeat = Heartbeat(
                commit: min(record.match, commit), readRound: readRound,
                lease: leaseRound == nil ? nil : configuration.readLease)
            send(.heartbeat(heartbeat), to: node)
        }
    }

    /// Whether `sendLeaderTraffic()` would send anything (kept in step with it, for `hasReady`).
    var leaderHasTraffic: Bool {
        if readHeartbeatDue { return true }
        for node in peers {
            guard let record = progress[node] else { continue }
            if case .snapshot(let stream) = record.mode {
                if snapshotStreamCanSend(stream) { return true }
                continue
            }
            if record.gapCheckDue { return true }
            if record.isPaused { continue }
            if log.term(at: record.next.previous) == nil { return true }
            if record.next <= log.lastIndex || commit > record.sentCommit { return true }
            if case .probe = record.mode, record.match + 1 < record.next { return true }
        }
        return false
    }

    /// Sends what each follower can take now: entries (batched up to the message size, pipelined up
    /// to the inflight window), commit updates, snapshot chunks, and heartbeats for pending reads.
    /// Deferring this to `ready()` batches every proposal made since the previous `Ready`.
    mutating func sendLeaderTraffic() {
        if readHeartbeatDue { broadcastHeartbeat() }
        for node in peers {
            sendEntries(to: node)
        }
    }

    private mutating func sendEntries(to node: NodeID) {
        // The record leaves the dictionary while it changes, so that its inflight window is uniquely
        // referenced and not copied on every message.
        guard var record = progress.removeValue(forKey: node) else { return }
        defer { progress[node] = record }
        while true {
            if case .snapshot = record.mode {
                sendSnapshotChunks(to: node, record: &record)
                return
            }
            if record.gapCheckDue, case .replicate = record.mode {
                record.gapCheckDue = false
                if let term = log.term(at: record.next.previous) {
                    let check = AppendEntries(
                        previousIndex: record.next.previous,
                        previousTerm: term,
                        entries: [],
                        commit: commit
                    )
                    send(.append(check), to: node)
                    record.sentCommit = commit
                } else {
                    // The entries in flight were compacted meanwhile: probe, which finds the snapshot.
                    record.becomeProbe()
                }
                continue
            }
            if record.isPaused { return }
            let previousIndex = record.next.previous
            guard let previousTerm = log.term(at: previousIndex) else {
                // The entries the follower needs are compacted: stream the snapshot instead (§7).
                guard let snapshot = latestSnapshot else {
                    preconditionFailure("\(id) compacted its log to \(log.snapshotIndex) without keeping the snapshot")
                }
                record.becomeSnapshot(index: snapshot.metadata.index)
                continue
            }
            let entries: [Entry]
            if record.next <= log.lastIndex {
                entries = log.entries(
                    from: record.next,
                    through: log.lastIndex,
                    maxBytes: configuration.maxEntriesBytesPerMessage
                )
            } else {
                let probing: Bool
                if case .probe = record.mode { probing = record.match + 1 < record.next } else { probing = false }
                guard commit > record.sentCommit || probing else { return }
                entries = []
            }
            let bytes = entries.reduce(0) { $0 + $1.byteSize }
            let append = AppendEntries(
                previousIndex: previousIndex,
                previousTerm: previousTerm,
                entries: entries,
                commit: commit
            )
            send(.append(append), to: node)
            record.sentCommit = commit
            record.sent(lastIndex: previousIndex + UInt64(entries.count), entryCount: entries.count, bytes: bytes)
            if case .probe = record.mode { return }
            if entries.isEmpty { return }
        }
    }
}

extension RaftNode {
    /// Tells the leader that messages to `node` were lost (its connection failed), so that it stops
    /// pipelining to it and probes instead of waiting for a heartbeat round to reveal the gap. A
    /// snapshot stream to it resumes from the last acknowledged offset. Does nothing on other roles.
    public mutating func reportUnreachable(_ node: NodeID) {
        guard currentRole == .leader, var record = progress.removeValue(forKey: node) else { return }
        switch record.mode {
        case .replicate:
            record.becomeProbe()
        case .probe:
            record.probeSent = false
        case .snapshot(var stream):
            stream.sentOffset = stream.acknowledgedOffset
            stream.lastChunkSent = false
            stream.resentFrom = stream.acknowledgedOffset
            record.mode = .snapshot(stream)
        }
        progress[node] = record
    }
}
