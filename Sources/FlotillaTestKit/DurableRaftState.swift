// What a simulated node's disk holds for Raft, and how a restart reads it back.
public import ClusterModel
public import RaftCore

/// One write-ahead record, in the order the `Ready` contract writes them.
public enum RaftRecord: Hashable, Sendable {
    case snapshot(Snapshot)
    case entry(Entry)
    case hardState(HardState)
}

/// A node's log as its disk holds it: a snapshot, the entries after it, and the hard state.
///
/// Replaying records applies the same rules the real write-ahead log does: an entry at index
/// `i` replaces any stored entry at `i` and everything after it (a follower's conflicting
/// suffix), and a snapshot discards the entries it covers.
public struct DurableRaftState: Hashable, Sendable {
    /// The disk's records cannot form a log: an entry would leave a hole.
    public struct GapError: Error, CustomStringConvertible {
        public var entryIndex: LogIndex
        public var lastIndex: LogIndex
        public var description: String {
            "entry \(entryIndex) was written after entry \(lastIndex): the log would have a hole; "
                + "the shell must persist entries contiguously"
        }
    }

    public var hardState: HardState
    public var snapshot: Snapshot?
    /// Contiguous entries starting right after the snapshot (or at index 1).
    public private(set) var entries: [Entry] = []

    public init() {
        hardState = HardState(term: 0, vote: nil, commit: 0)
    }

    public init(replaying records: [RaftRecord]) throws(GapError) {
        self.init()
        for record in records { try apply(record) }
    }

    public var snapshotIndex: LogIndex { snapshot?.metadata.index ?? 0 }
    public var firstIndex: LogIndex { snapshotIndex + 1 }
    public var lastIndex: LogIndex { entries.last?.index ?? snapshotIndex }

    /// The entry at `index`, if the log holds it (not covered by the snapshot).
    public func entry(at index: LogIndex) -> Entry? {
        guard index >= firstIndex, index <= lastIndex else { return nil }
        return entries[Int(index - firstIndex)]
    }

    /// The term of the entry at `index` as far as this log knows (the snapshot's term at its index).
    public func term(at index: LogIndex) -> Term? {
        if index == 0 { return 0 }
        if index == snapshotIndex { return snapshot?.metadata.term }
        return entry(at: index)?.term
    }

    public mutating func apply(_ record: RaftRecord) throws(GapError) {
        switch record {
        case .hardState(let state):
            hardState = state
        case .entry(let entry):
            guard entry.index > snapshotIndex else { return }
            guard entry.index <= lastIndex + 1 else { throw GapError(entryIndex: entry.index, lastIndex: lastIndex) }
            entries.removeLast(Int(lastIndex + 1 - entry.index))
            entries.append(entry)
        case .snapshot(let incoming):
            let index = incoming.metadata.index
            guard index > snapshotIndex else { return }
            if term(at: index) == incoming.metadata.term {
                entries.removeFirst(Int(index - snapshotIndex))
            } else {
                entries.removeAll()
            }
            snapshot = incoming
        }
    }

    /// The shortest records that replay to this state (what compaction rewrites the disk to).
    public var records: [RaftRecord] {
        var records: [RaftRecord] = []
        records.reserveCapacity(entries.count + 2)
        if let snapshot { records.append(.snapshot(snapshot)) }
        records += entries.map { .entry($0) }
        records.append(.hardState(hardState))
        return records
    }
}
