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
    /// The real length of one of this node's ticks, the shell's ticker interval: it keeps the
    /// lease promises a leader asks for in that many ticks (`LeasePromise`), and holds the longest
    /// one it could have given from its start. Nil: it promises nothing (its answers say so).
    public var tickInterval: Duration?
    /// The lease this node takes as leader (`RaftNode.readIndex(context:now:)`, `LeasePromise`);
    /// nil: every read takes a heartbeat round.
    public var readLease: Duration?

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
        tickInterval: Duration? = nil,
        readLease: Duration? = nil
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
        self.tickInterval = tickInterval
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
        if let tick = tickInterval, tick <= .zero {
            throw ConfigurationError("tickInterval is \(tick); it must be positive, or nil to keep no lease promises")
        }
        if let lease = readLease {
            if lease <= .zero { throw ConfigurationError("readLease is \(lease); it must be positive") }
            if let tick = tickInterval, LeasePromise.promiseTicks(for: lease, tick: tick) == nil {
                throw ConfigurationError(
                    "readLease (\(lease)) needs a promise longer than \(LeasePromise.maxPromise): voters would refuse "
                        + "it; use LeasePromise.standardLease(tick:) with ticks of 250 ms at most"
                )
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

/// The arithmetic of lease reads (docs/raft.md, "Lease reads").
///
/// A leader that takes a lease of length `d` asks its voters, in the heartbeats of the round, to
/// promise not to vote for another leader (but in a leadership transfer's election, which the leader
/// itself asks for after giving up its lease) nor to campaign for `d` and more. A voter keeps such
/// a promise for `promiseTicks(for: d, tick:)` of its own ticks, which measure at least
/// `clockRateAllowance × d` of time on its clock, whatever the phase of its ticker (the shell's
/// duty: two ticks at least a tick interval apart). So the promise outlasts the lease while the
/// leader's and the voter's clocks run at rates within 11 % of each other. No promise is longer
/// than `maxPromise`, and a node holds one that long from the moment it starts (`startTicks`), for
/// whatever it promised before it stopped — with whatever tick length it had then.
public enum LeasePromise {
    /// The longest promise a voter makes: it refuses (answers without a promise) a lease that
    /// needs more, and holds this long from its start.
    public static let maxPromise: Duration = .milliseconds(250)
    /// How much longer than the lease a promise lasts on the voter's clock: 1.25, so the two
    /// clocks may run at rates 11 % apart ((1 + 0.11) / (1 − 0.11) < 1.25).
    public static let clockRateAllowance = 1.25

    /// The ticks of length `tick` a voter keeps its promise for a lease of `lease`: enough whole
    /// intervals for `clockRateAllowance × lease`, plus one for the ticker's phase (its first tick
    /// may come at once). Nil when that span exceeds `maxPromise` (the voter promises nothing).
    public static func promiseTicks(for lease: Duration, tick: Duration) -> Int? {
        guard tick > .zero, lease > .zero else { return nil }
        let span = lease * clockRateAllowance
        guard span <= maxPromise else { return nil }
        return ticks(covering: span, tick: tick)
    }

    /// The ticks of length `tick` a node holds a promise from its start: `maxPromise`'s.
    public static func startTicks(tick: Duration) -> Int { ticks(covering: maxPromise, tick: tick) }

    private static func ticks(covering span: Duration, tick: Duration) -> Int {
        Int((span / tick).rounded(.up)) + 1
    }

    /// The lease a leader with ticks of `tick` takes: 80 % of one tick, which its voters keep
    /// for two ticks when theirs are as long. Voters refuse it beyond a tick of 250 ms.
    public static func standardLease(tick: Duration) -> Duration {
        tick * 0.8
    }
}
