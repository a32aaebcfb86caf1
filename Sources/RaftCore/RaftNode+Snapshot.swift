// Snapshots: compaction at the applied index, and InstallSnapshot streamed in chunks (§7).
public import ClusterModel

extension RaftNode {
    /// Records that the application snapshotted its state at `index` and drops the log up to it.
    ///
    /// `index` must be the applied index (after `advance`, with no batch outstanding), so that the
    /// dedup table and membership recorded in the snapshot describe exactly the state in `data`.
    /// Returns the snapshot for the shell to persist; after that it may delete stored entries up to
    /// `index`. Followers that need those entries are sent this snapshot instead.
    @discardableResult
    public mutating func compact(snapshotAt index: LogIndex, data: [UInt8]) throws(CompactionError) -> Snapshot {
        guard index > log.snapshotIndex else {
            throw CompactionError.alreadyCompacted(requested: index, snapshotIndex: log.snapshotIndex)
        }
        guard index == applied, handedCommit == applied else {
            throw CompactionError.notAppliedIndex(requested: index, applied: applied)
        }
        let metadata = SnapshotMetadata(
            index: index,
            term: log.term(at: index) ?? 0,
            membership: membership(at: index),
            appliedRequests: appliedRequests
        )
        snapshotMembership = metadata.membership
        log.compact(through: index)
        let snapshot = Snapshot(metadata: metadata, data: data)
        latestSnapshot = snapshot
        return snapshot
    }

    /// What a snapshot of the application's state as applied now stands for, without compacting
    /// anything: for a copy taken out of the cluster (a backup), where `compact` would drop the log.
    ///
    /// Valid between batches (after `advance`, with no batch outstanding), when the state machine
    /// reflects exactly the entries up to `applied`; the dedup table and membership then match it.
    public func appliedSnapshotMetadata() throws(CompactionError) -> SnapshotMetadata {
        guard handedCommit == applied else {
            throw CompactionError.notAppliedIndex(requested: handedCommit, applied: applied)
        }
        return SnapshotMetadata(
            index: applied, term: log.term(at: applied) ?? 0, membership: membership(at: applied),
            appliedRequests: appliedRequests)
    }

    // MARK: Leader side.

    func snapshotStreamCanSend(_ stream: SnapshotStream) -> Bool {
        guard let snapshot = latestSnapshot else { return false }
        if stream.index != snapshot.metadata.index { return true }
        return !stream.lastChunkSent && stream.sentOffset - stream.acknowledgedOffset < snapshotWindowBytes
    }

    /// Unacknowledged snapshot bytes allowed per follower: the inflight limits, at least one chunk.
    private var snapshotWindowBytes: Int {
        let byMessages = configuration.maxInflightMessages.multipliedReportingOverflow(
            by: configuration.snapshotChunkBytes)
        let window = min(configuration.maxInflightBytes, byMessages.overflow ? Int.max : byMessages.partialValue)
        return max(configuration.snapshotChunkBytes, window)
    }

    mutating func sendSnapshotChunks(to node: NodeID, record: inout Progress) {
        guard case .snapshot(var stream) = record.mode, let snapshot = latestSnapshot else { return }
        if stream.index != snapshot.metadata.index {
            // A newer snapshot replaced the one being streamed: start over with it.
            stream = SnapshotStream(index: snapshot.metadata.index)
        }
        let total = snapshot.data.count
        while snapshotStreamCanSend(stream) {
            let end = min(stream.sentOffset + configuration.snapshotChunkBytes, total)
            let chunk = SnapshotChunk(
                metadata: snapshot.metadata,
                offset: stream.sentOffset,
                bytes: Array(snapshot.data[stream.sentOffset..<end]),
                totalBytes: total,
                isLast: end == total
            )
            send(.installSnapshot(chunk), to: node)
            stream.sentOffset = end
            stream.lastChunkSent = chunk.isLast
        }
        record.mode = .snapshot(stream)
    }

    mutating func handleSnapshotResponse(_ response: SnapshotChunkResponse, from follower: NodeID) {
        guard var record = progress[follower] else { return }
        record.ticksSinceHeard = 0
        guard case .snapshot(var stream) = record.mode, stream.index == response.index else {
            progress[follower] = record
            return
        }
        if response.nextOffset > stream.acknowledgedOffset {
            stream.acknowledgedOffset = min(response.nextOffset, stream.sentOffset)
            stream.ticksWithoutProgress = 0
        }
        if response.resend && response.nextOffset < stream.sentOffset && stream.resentFrom != response.nextOffset {
            // A chunk was lost or the follower restarted: resend from what it holds.
            stream.sentOffset = response.nextOffset
            stream.acknowledgedOffset = response.nextOffset
            stream.lastChunkSent = false
            stream.resentFrom = response.nextOffset
        }
        record.mode = .snapshot(stream)
        progress[follower] = record
    }

    /// A stream whose follower confirmed nothing for an election timeout resends from the last
    /// confirmed offset (the answer, or the chunk, was lost).
    mutating func tickSnapshotStreams() {
        for node in peers {
            guard var record = progress[node], case .snapshot(var stream) = record.mode else { continue }
            stream.ticksWithoutProgress += 1
            if stream.ticksWithoutProgress >= configuration.electionTicks {
                stream.ticksWithoutProgress = 0
                stream.sentOffset = stream.acknowledgedOffset
                stream.lastChunkSent = false
                stream.resentFrom = stream.acknowledgedOffset
            }
            record.mode = .snapshot(stream)
            progress[node] = record
        }
    }

    // MARK: Follower side.

    mutating func handleSnapshotChunk(_ chunk: SnapshotChunk, from leader: NodeID) {
        let metadata = chunk.metadata
        if metadata.index <= commit {
            // We already hold everything it covers (an answer was lost, or entries got here first).
            incomingSnapshot = nil
            send(.appendResponse(AppendResponse(index: commit)), to: leader)
            return
        }
        if chunk.offset == 0 {
            incomingSnapshot = Snapshot(metadata: metadata, data: [])
            // Reserve for the announced size, but never trust a peer with an unbounded allocation.
            incomingSnapshot?.data.reserveCapacity(min(chunk.totalBytes, 64 << 20))
        }
        let isSameSnapshot =
            incomingSnapshot.map { $0.metadata.index == metadata.index && $0.metadata.term == metadata.term } ?? false
        let held = isSameSnapshot ? incomingSnapshot?.data.count ?? 0 : 0
        guard isSameSnapshot, held == chunk.offset, held + chunk.bytes.count <= chunk.totalBytes else {
            if !isSameSnapshot { incomingSnapshot = nil }
            send(
                .snapshotResponse(SnapshotChunkResponse(index: metadata.index, nextOffset: held, resend: true)),
                to: leader)
            return
        }
        incomingSnapshot?.data.append(contentsOf: chunk.bytes)
        let received = held + chunk.bytes.count
        guard chunk.isLast else {
            send(.snapshotResponse(SnapshotChunkResponse(index: metadata.index, nextOffset: received)), to: leader)
            return
        }
        guard received == chunk.totalBytes, let snapshot = incomingSnapshot else {
            incomingSnapshot = nil
            send(
                .snapshotResponse(SnapshotChunkResponse(index: metadata.index, nextOffset: 0, resend: true)), to: leader
            )
            return
        }
        incomingSnapshot = nil
        install(snapshot)
        // Only what the snapshot covers is known to match the leader: entries this log kept after it
        // (the snapshot's last entry was already here) may be from a deposed leader, so claiming
        // them would let the leader count a replica that is not there.
        send(.appendResponse(AppendResponse(index: commit)), to: leader)
    }

    /// Replaces the log and state by a leader's snapshot, unless the log already holds its last entry.
    private mutating func install(_ snapshot: Snapshot) {
        let metadata = snapshot.metadata
        if log.matches(index: metadata.index, term: metadata.term) {
            // §7: the log already has the snapshot's last entry; keep the entries after it.
            commit(to: metadata.index)
            return
        }
        log.restore(index: metadata.index, term: metadata.term)
        commit = metadata.index
        membership = metadata.membership
        snapshotMembership = metadata.membership
        membershipIndex = metadata.index
        peers = Self.sortedPeers(of: membership, excluding: id)
        appliedRequests = metadata.appliedRequests
        latestSnapshot = snapshot
        snapshotToHandOver = snapshot
        unstableFrom = metadata.index + 1
        // The log now starts after the snapshot: nothing of it is durable until the shell says so.
        persistedIndex = min(persistedIndex, metadata.index)
        logGeneration += 1
        handedCommit = metadata.index
    }
}
