// The leader's view of one follower: where its log matches, what is in flight, how to send next.
import ClusterModel

/// A bounded window of unacknowledged AppendEntries to one follower (count and bytes).
///
/// Invariant: the recorded last indexes increase from oldest to newest; `bytes` is their sum.
struct Inflights: Sendable {
    let capacity: Int
    let maxBytes: Int
    private var lastIndexes: [LogIndex] = []
    private var sizes: [Int] = []
    /// The oldest record is at `start`; records before it were freed (compacted lazily).
    private var start = 0
    private(set) var bytes = 0

    init(capacity: Int, maxBytes: Int) {
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    var count: Int { lastIndexes.count - start }
    var isFull: Bool { count >= capacity || bytes >= maxBytes }

    mutating func add(lastIndex: LogIndex, bytes size: Int) {
        precondition(!isFull, "adding to a full inflight window (\(count) messages, \(bytes) bytes)")
        precondition(
            count == 0 || lastIndexes[lastIndexes.count - 1] < lastIndex,
            "inflight last index \(lastIndex) does not increase"
        )
        lastIndexes.append(lastIndex)
        sizes.append(size)
        bytes += size
    }

    /// Frees every message whose entries are all at or below `index` (acknowledged).
    mutating func free(through index: LogIndex) {
        while start < lastIndexes.count && lastIndexes[start] <= index {
            bytes -= sizes[start]
            start += 1
        }
        if start == lastIndexes.count {
            lastIndexes.removeAll(keepingCapacity: true)
            sizes.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 64 && start * 2 > lastIndexes.count {
            lastIndexes.removeFirst(start)
            sizes.removeFirst(start)
            start = 0
        }
    }

    mutating func reset() {
        lastIndexes.removeAll(keepingCapacity: true)
        sizes.removeAll(keepingCapacity: true)
        start = 0
        bytes = 0
    }
}

/// A snapshot being streamed to one follower.
///
/// Invariant: `acknowledgedOffset <= sentOffset <= total size of the snapshot`.
struct SnapshotStream: Hashable, Sendable {
    var index: LogIndex
    /// Bytes sent so far (the next chunk starts here).
    var sentOffset: Int = 0
    /// Bytes the follower confirmed holding.
    var acknowledgedOffset: Int = 0
    /// The chunk marked last has been sent (for an empty snapshot, the only chunk).
    var lastChunkSent = false
    /// The offset of the latest resend, so that the gap reports of chunks already in flight after a
    /// loss do not each trigger another resend.
    var resentFrom: Int?
    /// Ticks since the follower last confirmed progress; a stalled stream resends from the acknowledged offset.
    var ticksWithoutProgress: Int = 0
}

/// How the leader sends to one follower.
enum ReplicationMode: Hashable, Sendable {
    /// Where the logs match is unknown: one AppendEntries at a time (`probeSent` pauses the rest).
    case probe
    /// The logs match up to `match`: AppendEntries are pipelined, bounded by the inflight window.
    case replicate
    /// The entries the follower needs were compacted: a snapshot is streamed instead.
    case snapshot(SnapshotStream)
}

/// The leader's record of one follower (Figure 2's nextIndex/matchIndex, plus flow control).
struct Progress: Sendable {
    /// The highest index known to be replicated on the follower.
    /// Invariant: `match < next`; `match` never decreases within a term.
    var match: LogIndex
    /// The next index to send.
    var next: LogIndex
    var mode: ReplicationMode = .probe
    /// In probe mode: an AppendEntries is outstanding, so send no other until an answer or heartbeat.
    var probeSent = false
    var inflights: Inflights
    /// Leader ticks since the follower last answered anything (CheckQuorum counts followers heard
    /// from within an election timeout).
    var ticksSinceHeard = 0
    /// The highest ReadIndex round the follower confirmed this term.
    var readRound: UInt64 = 0
    /// The highest such round whose heartbeat the follower answered with a lease promise.
    var promisedRound: UInt64 = 0
    /// The highest commit index this follower has been told.
    var sentCommit: LogIndex = 0
    /// `match` when the previous heartbeat answer arrived: a follower whose match did not move over a
    /// heartbeat interval while it lags may have lost an AppendEntries.
    var matchAtLastHeartbeat: LogIndex = 0
    /// Send an empty AppendEntries at `next - 1`: if the follower lacks that entry it rejects, and the
    /// leader falls back to probing instead of waiting forever for a lost message.
    var gapCheckDue = false

    init(next: LogIndex, inflights: Inflights) {
        self.match = 0
        self.next = next
        self.inflights = inflights
    }

    /// Sending is allowed now (not paused by a probe, a full window or a snapshot stream).
    var isPaused: Bool {
        switch mode {
        case .probe: probeSent
        case .replicate: inflights.isFull
        case .snapshot: true
        }
    }

    mutating func becomeProbe() {
        gapCheckDue = false
        // After a snapshot the follower holds at least the snapshot's index.
        if case .snapshot(let stream) = mode {
            next = max(match + 1, stream.index + 1)
        } else {
            next = match + 1
        }
        mode = .probe
        probeSent = false
        inflights.reset()
    }

    mutating func becomeReplicate() {
        gapCheckDue = false
        mode = .replicate
        next = match + 1
        probeSent = false
        inflights.reset()
    }

    mutating func becomeSnapshot(index: LogIndex) {
        mode = .snapshot(SnapshotStream(index: index))
        probeSent = false
        inflights.reset()
    }

    /// Records an acknowledgement up to `index`; returns false if it told nothing new.
    mutating func acknowledge(through index: LogIndex) -> Bool {
        var updated = false
        if index > match {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index + 1)
        return updated
    }

    /// Handles a rejection of the AppendEntries at `rejected`, moving `next` back using the follower's
    /// hint. Returns false when the rejection is stale (an answer to an older message).
    mutating func backOff(rejected: LogIndex, matchHint: LogIndex) -> Bool {
        if case .replicate = mode {
            // In replicate mode next-1 is far ahead; only a rejection above match is news.
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        // In probe mode only the answer to the outstanding probe (at next-1) counts.
        if next.previous != rejected { return false }
        next = max(min(rejected, matchHint + 1), match + 1)
        probeSent = false
        return true
    }

    /// Records that entries up to `lastIndex` (totalling `bytes`) were sent.
    mutating func sent(lastIndex: LogIndex, entryCount: Int, bytes: Int) {
        switch mode {
        case .replicate:
            if entryCount > 0 {
                next = lastIndex + 1
                inflights.add(lastIndex: lastIndex, bytes: bytes)
            }
        case .probe:
            probeSent = true
        case .snapshot:
            preconditionFailure("sending entries to a follower that is receiving a snapshot")
        }
    }

    var status: FollowerStatus {
        let statusMode: FollowerStatus.Mode =
            switch mode {
            case .probe: .probe
            case .replicate: .replicate
            case .snapshot(let stream): .snapshot(index: stream.index)
            }
        return FollowerStatus(
            match: match,
            next: next,
            mode: statusMode,
            inflightMessages: inflights.count,
            inflightBytes: inflights.bytes,
            ticksSinceHeard: ticksSinceHeard
        )
    }
}
