// The messages Raft nodes exchange. The shell carries them; it never looks inside.
public import ClusterModel

/// One message from one node to another, stamped with the sender's term.
public struct Message: Hashable, Sendable, CustomStringConvertible {
    public var from: NodeID
    public var to: NodeID
    /// The sender's term; for a pre-vote request, the term the sender would campaign in.
    public var term: Term
    public var kind: MessageKind

    public init(from: NodeID, to: NodeID, term: Term, kind: MessageKind) {
        self.from = from
        self.to = to
        self.term = term
        self.kind = kind
    }

    public var description: String { "\(from)->\(to) term=\(term) \(kind)" }
}

/// What a message asks or answers.
public enum MessageKind: Hashable, Sendable, CustomStringConvertible {
    /// "Would you vote for me?" — asked before disturbing anyone's term (Ongaro §9.6).
    case preVote(VoteRequest)
    case preVoteResponse(granted: Bool)
    /// RequestVote (§5.2).
    case vote(VoteRequest)
    case voteResponse(granted: Bool)
    /// AppendEntries (§5.3); with no entries it only moves the follower's commit index.
    case append(AppendEntries)
    case appendResponse(AppendResponse)
    /// Leader liveness; also confirms leadership for ReadIndex rounds (§6.4).
    case heartbeat(Heartbeat)
    /// `promised`: the follower took the heartbeat's lease promise (`Heartbeat.lease`).
    case heartbeatResponse(readRound: UInt64, promised: Bool = false)
    /// One chunk of an InstallSnapshot stream (§7).
    case installSnapshot(SnapshotChunk)
    case snapshotResponse(SnapshotChunkResponse)
    /// "Start an election now" — the last step of a leadership transfer (Ongaro §3.10).
    case timeoutNow
    /// A follower forwarding a read request to the leader (§6.4).
    case readIndex(context: [UInt8])
    /// The leader's answer: the read may be served once the follower has applied `index`.
    case readIndexResponse(ReadState)

    public var description: String {
        switch self {
        case .preVote(let request): "PreVote \(request)"
        case .preVoteResponse(let granted): granted ? "PreVoteResponse granted" : "PreVoteResponse rejected"
        case .vote(let request): "Vote \(request)"
        case .voteResponse(let granted): granted ? "VoteResponse granted" : "VoteResponse rejected"
        case .append(let append): "Append \(append)"
        case .appendResponse(let response): "AppendResponse \(response)"
        case .heartbeat(let heartbeat):
            "Heartbeat commit=\(heartbeat.commit) read=\(heartbeat.readRound)"
                + (heartbeat.lease.map { " lease=\($0)" } ?? "")
        case .heartbeatResponse(let round, let promised):
            "HeartbeatResponse read=\(round)" + (promised ? " promised" : "")
        case .installSnapshot(let chunk): "InstallSnapshot \(chunk)"
        case .snapshotResponse(let response): "SnapshotResponse \(response)"
        case .timeoutNow: "TimeoutNow"
        case .readIndex(let context): "ReadIndex ctx=\(String(decoding: context, as: UTF8.self))"
        case .readIndexResponse(let state): "ReadIndexResponse \(state)"
        }
    }
}

/// A candidate's (or pre-candidate's) claim: how up to date its log is (§5.4.1).
public struct VoteRequest: Hashable, Sendable, CustomStringConvertible {
    public var lastIndex: LogIndex
    public var lastTerm: Term
    /// Set when the election was started by TimeoutNow: voters then ignore their leader lease.
    public var isLeadershipTransfer: Bool

    public init(lastIndex: LogIndex, lastTerm: Term, isLeadershipTransfer: Bool = false) {
        self.lastIndex = lastIndex
        self.lastTerm = lastTerm
        self.isLeadershipTransfer = isLeadershipTransfer
    }

    public var description: String {
        "last=\(lastTerm)/\(lastIndex)" + (isLeadershipTransfer ? " transfer" : "")
    }
}

/// AppendEntries arguments (§5.3, Figure 2).
public struct AppendEntries: Hashable, Sendable, CustomStringConvertible {
    /// The entry just before `entries`; the follower must hold it with the same term (log matching).
    public var previousIndex: LogIndex
    public var previousTerm: Term
    public var entries: [Entry]
    /// The leader's commit index (the follower commits up to min(commit, last new entry)).
    public var commit: LogIndex

    public init(previousIndex: LogIndex, previousTerm: Term, entries: [Entry], commit: LogIndex) {
        self.previousIndex = previousIndex
        self.previousTerm = previousTerm
        self.entries = entries
        self.commit = commit
    }

    public var description: String {
        let list = entries.map { "[\($0)]" }.joined(separator: " ")
        return "prev=\(previousTerm)/\(previousIndex) commit=\(commit)" + (entries.isEmpty ? "" : " entries=\(list)")
    }
}

/// The answer to AppendEntries, with a hint for fast back-off when rejected.
public struct AppendResponse: Hashable, Sendable, CustomStringConvertible {
    /// When accepted: the follower's log matches the leader's up to `index`.
    /// When rejected: the `previousIndex` that did not match.
    public var index: LogIndex
    public var rejected: Bool
    /// When rejected: the follower's last index at or below `previousIndex` whose term is at most the
    /// leader's `previousTerm`, and that entry's term. The leader skips every index above it whose
    /// term is greater than `hintTerm` — one round trip per term instead of one per entry.
    public var hintIndex: LogIndex
    public var hintTerm: Term

    public init(index: LogIndex, rejected: Bool = false, hintIndex: LogIndex = 0, hintTerm: Term = 0) {
        self.index = index
        self.rejected = rejected
        self.hintIndex = hintIndex
        self.hintTerm = hintTerm
    }

    public var description: String {
        rejected ? "rejected index=\(index) hint=\(hintTerm)/\(hintIndex)" : "index=\(index)"
    }
}

/// A leader's heartbeat.
public struct Heartbeat: Hashable, Sendable {
    /// The leader's commit index, capped at what the follower is known to hold.
    public var commit: LogIndex
    /// The newest ReadIndex round the leader wants confirmed; the follower echoes it.
    public var readRound: UInt64
    /// Set while a lease round is unconfirmed: the lease the leader takes if it is confirmed. The
    /// follower promises (`RaftNode.leasePromiseTicks`) not to vote for another leader, nor to
    /// campaign, for long enough that the lease has run out first, and says so in its answer
    /// (docs/raft.md, "Lease reads").
    public var lease: Duration?

    public init(commit: LogIndex, readRound: UInt64, lease: Duration? = nil) {
        self.commit = commit
        self.readRound = readRound
        self.lease = lease
    }
}

/// One piece of a snapshot on its way to a follower that fell behind the leader's log.
public struct SnapshotChunk: Hashable, Sendable, CustomStringConvertible {
    public var metadata: SnapshotMetadata
    /// Where `bytes` start in the snapshot's data.
    public var offset: Int
    public var bytes: [UInt8]
    /// The size of the whole snapshot's data.
    public var totalBytes: Int
    /// Set on the last chunk: the follower installs the snapshot once it holds every byte.
    public var isLast: Bool

    public init(metadata: SnapshotMetadata, offset: Int, bytes: [UInt8], totalBytes: Int, isLast: Bool) {
        self.metadata = metadata
        self.offset = offset
        self.bytes = bytes
        self.totalBytes = totalBytes
        self.isLast = isLast
    }

    public var description: String {
        "index=\(metadata.index) term=\(metadata.term) offset=\(offset) bytes=\(bytes.count)/\(totalBytes)"
            + (isLast ? " last" : "")
    }
}

/// A follower's answer to a snapshot chunk: how much of the snapshot it holds.
public struct SnapshotChunkResponse: Hashable, Sendable, CustomStringConvertible {
    /// The snapshot being assembled.
    public var index: LogIndex
    /// The offset of the next byte the follower expects.
    public var nextOffset: Int
    /// The chunk did not continue what the follower holds (a chunk was lost, or the follower
    /// restarted): the leader resends from `nextOffset`.
    public var resend: Bool

    public init(index: LogIndex, nextOffset: Int, resend: Bool = false) {
        self.index = index
        self.nextOffset = nextOffset
        self.resend = resend
    }

    public var description: String { "index=\(index) next-offset=\(nextOffset)" + (resend ? " resend" : "") }
}

/// A read that is linearizable once the local state machine has applied `index` (§6.4).
public struct ReadState: Hashable, Sendable, CustomStringConvertible {
    public var index: LogIndex
    /// The caller's token, handed back unchanged so it can find its waiting read.
    public var context: [UInt8]

    public init(index: LogIndex, context: [UInt8]) {
        self.index = index
        self.context = context
    }

    public var description: String { "index=\(index) ctx=\(String(decoding: context, as: UTF8.self))" }
}
