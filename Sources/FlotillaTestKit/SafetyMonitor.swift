// The Raft safety properties, checked incrementally after every step of a simulation.
public import ClusterModel
public import RaftCore

/// A safety property that a simulated cluster broke, in words a reader can act on.
public struct SafetyViolation: Error, Hashable, Sendable, CustomStringConvertible {
    /// Which property broke: "election safety", "log matching", ...
    public var invariant: String
    public var detail: String

    public var description: String { "\(invariant) violated: \(detail)" }
}

/// Remembers what the cluster has done so far and checks each new fact against it.
///
/// Every check is incremental (a new leader, a newly written entry, a newly committed or
/// applied index), so checking after every step stays cheap across long runs:
/// - election safety: at most one leader per term, across the whole run;
/// - log matching: an entry at a given index and term is always the same entry and always
///   follows the same term, so two logs that agree on an index and term agree on the prefix;
/// - leader completeness: a new leader's log holds every entry committed in an earlier term;
/// - state-machine safety: no two nodes commit or apply different entries at one index;
/// - no committed entry lost: no node overwrites one, and some node's disk still holds (or a
///   snapshot covers) each one.
public struct SafetyMonitor: Sendable {
    private struct IndexTerm: Hashable {
        var index: UInt64
        var term: UInt64
    }

    private struct WrittenEntry: Hashable {
        var entry: Entry
        var previousTerm: Term?
        var writer: NodeID
    }

    private var leaderOfTerm: [Term: NodeID] = [:]
    private var written: [IndexTerm: WrittenEntry] = [:]
    /// Committed entries by index - 1; nil where only a snapshot has covered the index so far.
    private var committedLog: [Entry?] = []
    /// For each committed index, the lowest term of a leader that counted it committed.
    private var committedInTerm: [Term?] = []
    private var applied: [Entry?] = []

    public init() {}

    /// The highest index known to be committed anywhere.
    public var committedIndex: LogIndex { LogIndex(UInt64(committedLog.count)) }
    public var leaderCount: Int { leaderOfTerm.count }

    /// The committed entry at `index`, if one node's log has shown it.
    public func committedEntry(at index: LogIndex) -> Entry? {
        guard index > 0, index <= committedIndex else { return nil }
        return committedLog[Int(index.rawValue - 1)]
    }

    /// A node is leader of `term`; `log` is what it holds.
    public mutating func observeLeader(_ node: NodeID, term: Term, log: DurableRaftState) throws(SafetyViolation) {
        if let existing = leaderOfTerm[term] {
            guard existing == node else {
                throw SafetyViolation(
                    invariant: "election safety", detail: "\(existing) and \(node) were both leader in term \(term)")
            }
            return
        }
        leaderOfTerm[term] = node
        for (offset, committed) in committedLog.enumerated() {
            guard let committed, let committedTerm = committedInTerm[offset], committedTerm < term else { continue }
            let index = LogIndex(UInt64(offset + 1))
            if index <= log.snapshotIndex { continue }
            guard log.entry(at: index) == committed else {
                let held = log.entry(at: index).map { "\($0)" } ?? "nothing"
                throw SafetyViolation(
                    invariant: "leader completeness",
                    detail:
                        "\(node) became leader of term \(term) but holds \(held) at index \(index), where "
                        + "\(committed) was committed in term \(committedTerm)")
            }
        }
    }

    /// A node wrote `entry` to its log; `log` is its log after the write.
    ///
    /// `replaced` is what the node's log held at that index before (a stale leader may write
    /// over an index committed elsewhere, but no node may replace a committed entry it holds).
    public mutating func observeWrite(
        _ entry: Entry, replacing replaced: Entry? = nil, by node: NodeID, log: DurableRaftState
    ) throws(SafetyViolation) {
        if let replaced, replaced != entry, committedEntry(at: entry.index) == replaced {
            throw SafetyViolation(
                invariant: "no committed entry lost",
                detail: "\(node) overwrote committed entry \(replaced) with \(entry)")
        }
        let previousTerm = entry.index > 1 ? log.term(at: entry.index - 1) : Term(0)
        let key = IndexTerm(index: entry.index.rawValue, term: entry.term.rawValue)
        guard let earlier = written[key] else {
            written[key] = WrittenEntry(entry: entry, previousTerm: previousTerm, writer: node)
            return
        }
        if earlier.entry != entry {
            throw SafetyViolation(
                invariant: "log matching",
                detail: "\(earlier.writer) holds \(earlier.entry) but \(node) holds \(entry) at the same index and term"
            )
        }
        if let previousTerm, let earlierTerm = earlier.previousTerm, previousTerm != earlierTerm {
            throw SafetyViolation(
                invariant: "log matching",
                detail:
                    "entry \(entry.index) of term \(entry.term) follows term \(earlierTerm) in \(earlier.writer)'s "
                    + "log but term \(previousTerm) in \(node)'s")
        }
    }

    /// A node counts everything up to `commit` committed; `isLeader` when it decided that itself.
    public mutating func observeCommit(
        _ commit: LogIndex, by node: NodeID, term: Term, isLeader: Bool, log: DurableRaftState
    ) throws(SafetyViolation) {
        guard commit > 0 else { return }
        if commit > committedIndex {
            let added = Int(commit.rawValue) - committedLog.count
            committedLog += repeatElement(nil, count: added)
            committedInTerm += repeatElement(nil, count: added)
        }
        // Walk down from the commit index to the first entry already known committed; below it
        // the logs agree by log matching, which is checked on every write. A leader walks on
        // until it reaches entries some leader of its term or earlier already counted.
        var index = commit
        while index > log.snapshotIndex, let entry = log.entry(at: index) {
            let slot = Int(index.rawValue - 1)
            if let known = committedLog[slot] {
                guard known == entry else {
                    throw SafetyViolation(
                        invariant: "state-machine safety",
                        detail: "\(node) counts \(entry) committed at index \(index), but \(known) was committed there")
                }
                if !isLeader { break }
            } else {
                committedLog[slot] = entry
            }
            if isLeader {
                if let earlier = committedInTerm[slot], earlier <= term { break }
                committedInTerm[slot] = term
            }
            index = index - 1
        }
    }

    /// A node applied `entry` to its state machine.
    public mutating func observeApply(_ entry: Entry, by node: NodeID) throws(SafetyViolation) {
        let slot = Int(entry.index.rawValue - 1)
        if slot >= applied.count { applied += repeatElement(nil, count: slot + 1 - applied.count) }
        if let earlier = applied[slot], earlier != entry {
            throw SafetyViolation(
                invariant: "state-machine safety",
                detail: "\(node) applied \(entry) at index \(entry.index), but another node applied \(earlier) there")
        }
        applied[slot] = entry
        if let committed = committedEntry(at: entry.index), committed != entry {
            throw SafetyViolation(
                invariant: "state-machine safety",
                detail: "\(node) applied \(entry) at index \(entry.index), but \(committed) was committed there")
        }
    }

    /// Checks that the durable state of the nodes (running or crashed) still holds every
    /// committed entry, and that each node's disk holds the entries up to its own durable commit.
    public func checkNothingCommittedLost(durable: [NodeID: DurableRaftState]) throws(SafetyViolation) {
        for (node, state) in durable.sorted(by: { $0.key < $1.key }) where state.hardState.commit > state.lastIndex {
            throw SafetyViolation(
                invariant: "no committed entry lost",
                detail:
                    "\(node)'s disk records commit \(state.hardState.commit) but holds entries only up to "
                    + "\(state.lastIndex)")
        }
        let states = Array(durable.values)
        for (offset, committed) in committedLog.enumerated() {
            guard let committed else { continue }
            let index = committed.index
            let held = states.contains { state in
                index <= state.snapshotIndex || state.entry(at: index) == committed
            }
            guard held else {
                throw SafetyViolation(
                    invariant: "no committed entry lost",
                    detail: "no node's disk holds committed entry \(committed) (index \(offset + 1)) any more")
            }
        }
    }
}
