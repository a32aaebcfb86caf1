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
        maxCommittedBytesPerReady: Int = 64 << 20
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
