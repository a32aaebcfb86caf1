// What a running guest does to its memory as time passes, from its workload (pure: time and randomness are arguments).
public import ClusterModel

/// A guest's activity: it commits memory up to its workload's demand, frees what it no longer
/// demands, and dirties pages at the workload's rate among those it holds.
///
/// The guest holds the first `heldPages` pages of its memory, as a guest OS fills memory from the
/// bottom: committing more writes the next pages, freeing zeroes the last ones (as free page
/// reporting returns them). It never holds more than its assignment: what it demands beyond that it
/// pages inside the guest (`pagedBytes`), and a balloon that cuts its memory cuts what it holds.
///
/// Pure: `advance(to:)` takes the time since the guest started and the generator the writes are
/// drawn from, so a seeded run repeats exactly. The dirtying rate holds over any step size: the
/// fraction of a write left over from one step carries to the next.
public struct GuestActivity: Hashable, Sendable {
    public var workload: Workload
    /// How far `advance` has got: the time since the guest started.
    public private(set) var elapsed: Duration
    /// Pages `0..<heldPages` hold the guest's data. Invariant: at most the memory's `pageCount`.
    public private(set) var heldPages = 0
    /// Writes owed but not yet made, in write-nanoseconds (rate × time); below one write.
    private var credit: UInt64 = 0
    /// The share of the dirtying rate taken away (a migration's auto-converge), percent 0–99.
    public var throttlePercent = 0 {
        willSet { precondition((0...99).contains(newValue), "a throttle of \(newValue) %; it is 0–99") }
    }

    /// A guest that was not scheduled for longer than this does not catch up beyond it: a real
    /// guest whose vCPUs did not run wrote nothing either.
    public static let maxCatchUp: Duration = .seconds(1)

    /// `elapsed` is where the guest's time starts: zero for a guest that boots, the source's time
    /// for one that continues after a migration.
    public init(workload: Workload, elapsed: Duration = .zero) {
        self.workload = workload
        self.elapsed = elapsed
    }

    /// A guest continuing on another node after a migration: where its time was and what it held.
    public init(migrated workload: Workload, elapsed: Duration, heldPages: Int) {
        self.workload = workload
        self.elapsed = elapsed
        self.heldPages = heldPages
    }

    /// The demand now.
    public var demand: UInt64 { workload.demand(at: elapsed) }

    /// What the guest demands beyond what it is assigned: it pages that much inside itself.
    public func pagedBytes(assigned: UInt64) -> UInt64 { demand > assigned ? demand - assigned : 0 }

    /// Runs the guest from the last `advance` to `now`: commits or frees memory to match the demand
    /// at `now` (within `memory`'s pages) and makes the writes the dirtying rate owes. Returns how
    /// many pages were written (committed, freed or dirtied). A `now` earlier than the last one does nothing.
    public mutating func advance(
        to now: Duration, memory: inout GuestMemory, using generator: inout some RandomNumberGenerator
    ) -> Int {
        guard now > elapsed else { return 0 }
        let step = min(now - elapsed, Self.maxCatchUp)
        elapsed = now
        var written = hold(pages: GuestMemory.pages(in: demand), in: &memory, using: &generator)
        let nanoseconds =
            UInt64(step.components.seconds) * 1_000_000_000 + UInt64(step.components.attoseconds / 1_000_000_000)
        credit += nanoseconds * (workload.dirtyPagesPerSecond * UInt64(100 - throttlePercent) / 100)
        let writes = Int(credit / 1_000_000_000)
        credit %= 1_000_000_000
        guard heldPages > 0 else { return written }
        for _ in 0..<writes {
            memory.write(page: Int.random(in: 0..<heldPages, using: &generator), word: generator.next() | 1)
        }
        written += writes
        return written
    }

    /// The memory was resized (hot-add or balloon): the guest holds no page it no longer has.
    public mutating func memoryResized(_ memory: GuestMemory) {
        heldPages = min(heldPages, memory.pageCount)
    }

    /// Holds the first `wanted` pages (no more than the memory has): writes the ones it gains,
    /// zeroes the ones it gives up. Returns how many pages changed.
    private mutating func hold(
        pages wanted: Int, in memory: inout GuestMemory, using generator: inout some RandomNumberGenerator
    ) -> Int {
        let target = min(wanted, memory.pageCount)
        defer { heldPages = target }
        if target > heldPages {
            for page in heldPages..<target { memory.write(page: page, word: generator.next() | 1) }
            return target - heldPages
        }
        for page in target..<heldPages { memory.write(page: page, word: 0) }
        return heldPages - target
    }
}
