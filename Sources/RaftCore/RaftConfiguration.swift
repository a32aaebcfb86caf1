// The tunables of one Raft node, checked before a node is built from them.
public import ClusterModel

/// How one node times elections and sizes its traffic. Build a node only from a validated value.
public struct RaftConfiguration: Hashable, Sendable {
    /// This node's id; never zero.
    public var id: NodeID
    /// A follower that hears no leader for a random number of ticks in
    /// [electionTicks, 2 × electionTicks) starts an election (§5.2). Must exceed `heartbeatTicks`.
    public var electionTicks: Int
    /// A leader sends heartbeats every this many ticks.
    public var heartbeatTicks: Int
    /// Ask for pre-votes before raising the term, so a node that rejoins does not depose a healthy
    /// leader (Ongaro §9.6).
    public var preVote: Bool
    /// A leader that has not heard from a majority within an election timeout steps down, and a
    /// follower that heard from its leader within one ignores vote requests (Ongaro §6.2, §4.2.3).
    public var checkQuorum: Bool
    /// A follower that has heard nothing from its leader for this many ticks counts the leader
    /// silent: it stops defending it against pre-votes and votes (CheckQuorum's stickiness ends
    /// here rather than after `electionTicks`), and campaigns itself 1, 3, 5, … ticks later by its
    /// rank among the other voters, unless its election timer fires sooner. A leader that a
    /// majority still hears keeps it: their pre-votes go only to a candidate whose silence they
    /// share. Nil: followers wait for the election timeout. Must exceed `heartbeatTicks`, be below
    /// `electionTicks`, and needs `preVote` and `checkQuorum` (`defaultLeaderSilenceTicks` is a sound value).
    public var leaderSilenceTicks: Int?
    /// An AppendEntries message carries at most this many bytes of entries (at least one entry).
    public var maxEntriesBytesPerMessage: Int
    /// Per follower, at most this many AppendEntries messages are unacknowledged (pipelining).
    public var maxInflightMessages: Int
    /// Per follower, at most this many entry bytes are unacknowledged.
    public var maxInflightBytes: Int
    /// Snapshots travel in chunks of this many bytes.
    public var snapshotChunkBytes: Int
    /// A leader refuses new proposals while this many bytes of its log are uncommitted.
    public var maxUncommittedBytes: Int
    /// A learner is promoted only when its log is at most this many entries behind the leader's.
    public var maxPromotionLag: UInt64
    /// One `Ready` hands out at most this many bytes of committed entries (at least one entry), so a
    /// restart over a long log does not hand the application everything at once.
    public var maxCommittedBytesPerReady: Int
    /// Lease reads (`RaftNode.readIndex(context:now:)`); nil: every read takes a heartbeat round.
    public var readLease: ReadLease?

    public init(
        id: NodeID,
        electionTicks: Int = 10,
        heartbeatTicks: Int = 1,
        preVote: Bool = true,
        checkQuorum: Bool = true,
        maxEntriesBytesPerMessage: Int = 1 << 20,
        maxInflightMessages: Int = 256,
        maxInflightBytes: Int = 32 << 20,
        snapshotChunkBytes: Int = 1 << 20,
        maxUncommittedBytes: Int = 64 << 20,
        maxPromotionLag: UInt64 = 64,
        maxCommittedBytesPerReady: Int = 64 << 20,
        leaderSilenceTicks: Int? = nil,
        readLease: ReadLease? = nil
    ) {
        self.id = id
        self.electionTicks = electionTicks
        self.heartbeatTicks = heartbeatTicks
        self.preVote = preVote
        self.checkQuorum = checkQuorum
        self.maxEntriesBytesPerMessage = maxEntriesBytesPerMessage
        self.maxInflightMessages = maxInflightMessages
        self.maxInflightBytes = maxInflightBytes
        self.snapshotChunkBytes = snapshotChunkBytes
        self.maxUncommittedBytes = maxUncommittedBytes
        self.maxPromotionLag = maxPromotionLag
        self.maxCommittedBytesPerReady = maxCommittedBytesPerReady
        self.leaderSilenceTicks = leaderSilenceTicks
        self.readLease = readLease
    }

    /// Three heartbeat intervals, or a third of the election timeout if that is longer; nil when
    /// that is not below the election timeout (a silence that long is the election timeout).
    public static func defaultLeaderSilenceTicks(electionTicks: Int, heartbeatTicks: Int) -> Int? {
        let ticks = max(3 * heartbeatTicks, electionTicks / 3)
        return ticks < electionTicks ? ticks : nil
    }

    /// Throws the first setting that cannot work, saying what to change.
    public func validate() throws(ConfigurationError) {
        if id.rawValue == 0 { throw ConfigurationError("id must not be 0 (0 means \"no node\"); use 1 or more") }
        if heartbeatTicks < 1 { throw ConfigurationError("heartbeatTicks is \(heartbeatTicks); it must be at least 1") }
        if electionTicks <= heartbeatTicks {
            throw ConfigurationError(
                "electionTicks (\(electionTicks)) must be greater than heartbeatTicks (\(heartbeatTicks)); "
                    + "use about 10 × heartbeatTicks"
            )
        }
        if let silence = leaderSilenceTicks {
            if silence <= heartbeatTicks || silence >= electionTicks {
                throw ConfigurationError(
                    "leaderSilenceTicks (\(silence)) must be above heartbeatTicks (\(heartbeatTicks)) and below "
                        + "electionTicks (\(electionTicks)); use about 3 × heartbeatTicks, or nil to wait for the "
                        + "election timeout"
                )
            }
            if !checkQuorum || !preVote {
                throw ConfigurationError(
                    "leaderSilenceTicks needs preVote and checkQuorum: without them a follower that merely stopped "
                        + "hearing its leader raises the term, or wins votes from voters that still hear the leader; "
                        + "turn both on or set leaderSilenceTicks to nil"
                )
            }
        }
        if let lease = readLease {
            if lease.promiseTicks < 2 || lease.promiseTicks >= electionTicks {
                throw ConfigurationError(
                    "readLease.promiseTicks (\(lease.promiseTicks)) must be at least 2 and below electionTicks "
                        + "(\(electionTicks)): a lease lasts less than promiseTicks - 1 ticks; use 2"
                )
            }
            if lease.duration <= .zero {
                throw ConfigurationError("readLease.duration is \(lease.duration); it must be positive")
            }
        }
        if maxEntriesBytesPerMessage < 1 {
            throw ConfigurationError("maxEntriesBytesPerMessage is \(maxEntriesBytesPerMessage); it must be positive")
        }
        if maxInflightMessages < 1 {
            throw ConfigurationError("maxInflightMessages is \(maxInflightMessages); it must be at least 1")
        }
        if maxInflightBytes < 1 {
            throw ConfigurationError("maxInflightBytes is \(maxInflightBytes); it must be positive")
        }
        if snapshotChunkBytes < 1 {
            throw ConfigurationError("snapshotChunkBytes is \(snapshotChunkBytes); it must be positive")
        }
        if maxCommittedBytesPerReady < 1 {
            throw ConfigurationError(
                "maxCommittedBytesPerReady is \(maxCommittedBytesPerReady); it must be positive"
            )
        }
        if maxUncommittedBytes < 1 {
            throw ConfigurationError("maxUncommittedBytes is \(maxUncommittedBytes); it must be positive")
        }
    }
}

/// A leader's read lease (docs/raft.md, "Lease reads"): a leader answers a read from its own
/// commit index, with no heartbeat round, while a lease that a quorum confirmed still runs.
///
/// The promise it rests on: a heartbeat that opens a lease round carries `leasePromise`; a voter
/// that takes one neither grants a vote or pre-vote (but a leadership transfer's, which the leader
/// itself asked for after giving up its lease) nor campaigns until `promiseTicks` of its own ticks
/// have passed — at least `promiseTicks - 1` tick intervals of real time, if its ticks never come
/// closer together than the interval (the shell's duty). A node that starts holds the same promise,
/// for anything it promised before it stopped. The lease runs for `duration` on the leader's clock
/// from the moment the round began, before its heartbeats left, so it ends before any voter that
/// confirmed it may vote for another leader, as long as `duration` is below `promiseTicks - 1` tick
/// intervals by more than the two clocks' rates can differ. Every node of a cluster needs the same
/// setting: a voter built without it makes no promise.
public struct ReadLease: Hashable, Sendable {
    /// How many of its ticks a voter keeps a lease promise; at least 2.
    public var promiseTicks: Int
    /// How long a confirmed lease lasts on the leader's clock, from the start of its round.
    public var duration: Duration

    public init(promiseTicks: Int, duration: Duration) {
        self.promiseTicks = promiseTicks
        self.duration = duration
    }

    /// A lease for ticks of `tick`: 2 ticks of promise, and 80 % of the one tick interval they
    /// guarantee, which stays safe while the clocks' rates differ by up to 11 %.
    public static func standard(tick: Duration) -> ReadLease {
        ReadLease(promiseTicks: 2, duration: tick * 0.8)
    }
}
