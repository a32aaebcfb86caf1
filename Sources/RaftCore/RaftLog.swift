// The in-memory log: entries after the last snapshot, addressed by index without copying.
import ClusterModel

/// The entries after the latest snapshot, stored in an array offset by the snapshot's index.
///
/// Invariant: `entries[i].index == snapshotIndex + 1 + i`, and terms never decrease along the log.
struct RaftLog: Sendable {
    /// The last index covered by the snapshot (0 when there is none); entries start right after it.
    private(set) var snapshotIndex: LogIndex
    /// The term of the entry at `snapshotIndex` (0 when there is no snapshot).
    private(set) var snapshotTerm: Term
    private(set) var entries: [Entry]

    init(snapshotIndex: LogIndex = 0, snapshotTerm: Term = 0, entries: [Entry] = []) {
        self.snapshotIndex = snapshotIndex
        self.snapshotTerm = snapshotTerm
        self.entries = entries
    }

    var firstIndex: LogIndex { snapshotIndex + 1 }
    var lastIndex: LogIndex { snapshotIndex + UInt64(entries.count) }
    var lastTerm: Term { entries.last?.term ?? snapshotTerm }

    private func position(_ index: LogIndex) -> Int { Int(index.rawValue - snapshotIndex.rawValue - 1) }

    /// The term of the entry at `index`; nil when it was compacted away or does not exist yet.
    func term(at index: LogIndex) -> Term? {
        if index == snapshotIndex { return snapshotTerm }
        if index < snapshotIndex || index > lastIndex { return nil }
        return entries[position(index)].term
    }

    /// Precondition: `firstIndex <= index <= lastIndex`.
    func entry(at index: LogIndex) -> Entry {
        precondition(
            index > snapshotIndex && index <= lastIndex,
            "entry \(index) is outside the log (\(firstIndex)...\(lastIndex))"
        )
        return entries[position(index)]
    }

    func matches(index: LogIndex, term: Term) -> Bool { self.term(at: index) == term }

    /// §5.4.1: a candidate's log is at least as up to date as ours.
    func isUpToDate(lastIndex candidateIndex: LogIndex, lastTerm candidateTerm: Term) -> Bool {
        candidateTerm > lastTerm || (candidateTerm == lastTerm && candidateIndex >= lastIndex)
    }

    /// Entries from `start` through `end`, stopping before `maxBytes` is exceeded (but at least one).
    func entries(from start: LogIndex, through end: LogIndex, maxBytes: Int) -> [Entry] {
        guard start <= end else { return [] }
        precondition(
            start > snapshotIndex && end <= lastIndex, "entries \(start)...\(end) outside \(firstIndex)...\(lastIndex)")
        let lower = position(start)
        var upper = lower
        var bytes = 0
        let last = position(end)
        while upper <= last {
            bytes += entries[upper].byteSize
            if bytes > maxBytes && upper > lower { break }
            upper += 1
        }
        return Array(entries[lower..<upper])
    }

    /// Every entry from `start` on (for handing unstable entries to the shell).
    func entries(from start: LogIndex) -> ArraySlice<Entry> {
        guard start <= lastIndex else { return [] }
        return entries[position(max(start, firstIndex))...]
    }

    /// The largest index at or below `index` whose term is at most `term` (etcd's findConflictByTerm),
    /// with that term. Stops at the snapshot, whose term is the oldest we know.
    func lastIndex(atOrBelow index: LogIndex, withTermAtMost term: Term) -> (index: LogIndex, term: Term) {
        var candidate = min(index, lastIndex)
        while candidate > snapshotIndex {
            let candidateTerm = entries[position(candidate)].term
            if candidateTerm <= term { return (candidate, candidateTerm) }
            candidate = candidate.previous
        }
        return (candidate, candidate == snapshotIndex ? snapshotTerm : 0)
    }

    /// The first of `incoming` that is not already in the log with the same term, or nil if all are.
    func firstConflict(in incoming: [Entry]) -> Int? {
        for (offset, entry) in incoming.enumerated() where !matches(index: entry.index, term: entry.term) {
            // An entry at or below the snapshot is committed and therefore matches by the log
            // matching property; `matches` cannot see it, so skip it.
            if entry.index <= snapshotIndex { continue }
            return offset
        }
        return nil
    }

    mutating func append(_ entry: Entry) {
        precondition(entry.index == lastIndex + 1, "appending \(entry) after last index \(lastIndex)")
        precondition(entry.term >= lastTerm, "appending \(entry) after last term \(lastTerm)")
        entries.append(entry)
    }

    /// Deletes every entry at or after `index`.
    mutating func truncate(from index: LogIndex) {
        precondition(index > snapshotIndex, "truncating at \(index) would cut into the snapshot at \(snapshotIndex)")
        guard index <= lastIndex else { return }
        entries.removeSubrange(position(index)...)
    }

    /// Drops the entries through `index`, which a snapshot now covers.
    mutating func compact(through index: LogIndex) {
        precondition(
            index > snapshotIndex && index <= lastIndex, "compacting \(index) outside \(firstIndex)...\(lastIndex)")
        let term = entries[position(index)].term
        entries.removeFirst(position(index) + 1)
        snapshotIndex = index
        snapshotTerm = term
    }

    /// Replaces the whole log by a snapshot's position (a follower installing a leader's snapshot).
    mutating func restore(index: LogIndex, term: Term) {
        entries.removeAll()
        snapshotIndex = index
        snapshotTerm = term
    }
}

extension LogIndex {
    /// The index before this one. Precondition: not 0.
    var previous: LogIndex { self - UInt64(1) }
}
