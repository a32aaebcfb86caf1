// A guest's workload as a pure model: which pages it touches as time passes.

/// How a guest uses its memory.
public struct WorkloadProfile: Hashable, Sendable {
    /// Page accesses per second, reads and writes together.
    public var pagesPerSecond: Int
    /// The pages the guest touches: `0..<workingSetPages`, chosen uniformly.
    public var workingSetPages: Int
    /// The share of accesses that write (0 reads only, 1 writes only).
    public var writeFraction: Double

    public init(pagesPerSecond: Int, workingSetPages: Int, writeFraction: Double) {
        self.pagesPerSecond = pagesPerSecond
        self.workingSetPages = workingSetPages
        self.writeFraction = writeFraction
    }

    /// What a guest runs unless told otherwise: a 16 MiB working set, 2000 pages/s, 30 % writes.
    public static let standard = WorkloadProfile(pagesPerSecond: 2000, workingSetPages: 4096, writeFraction: 0.3)

    /// Why the profile cannot run on an image of `pageCount` pages, or nil when it can.
    public func problem(pageCount: Int) -> String? {
        guard (0...10_000_000).contains(pagesPerSecond) else {
            return "a workload's rate must be 0–10000000 pages/s, got \(pagesPerSecond)"
        }
        guard workingSetPages >= 1, workingSetPages <= pageCount else {
            return "a working set of \(workingSetPages) pages does not fit a memory of \(pageCount) pages"
        }
        guard (0...1).contains(writeFraction) else {
            return "a write fraction must be between 0 and 1, got \(writeFraction)"
        }
        return nil
    }
}

/// One page access the workload makes.
public struct PageAccess: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        case read
        /// Writes the 8-byte `value` (little-endian, never zero) at `offset`, a multiple of 8.
        case write(offset: Int, value: UInt64)
    }

    public var page: Int
    public var kind: Kind
}

/// Touches its working set at the profile's rate as time advances.
///
/// Pure: time arrives as `advance(to:)` arguments (time since the guest started) and randomness
/// as a generator the caller passes in, so a seeded run repeats exactly. The rate is kept
/// exactly over many small steps: the fraction of an access left over from one step carries to
/// the next.
public struct Workload: Hashable, Sendable {
    public let profile: WorkloadProfile
    /// How far `advance` has got.
    public private(set) var elapsed: Duration = .zero
    /// Accesses owed but not yet made, in access-nanoseconds (rate × time); below one access.
    private var credit: UInt64 = 0

    /// A guest that was not scheduled for longer than this does not catch up beyond it: a real
    /// guest whose vCPUs did not run made no accesses either.
    public static let maxCatchUp: Duration = .seconds(1)

    public init(profile: WorkloadProfile) {
        self.profile = profile
    }

    /// The accesses made from the last `advance` to `now` (time since the guest started). A
    /// `now` earlier than the last one makes none.
    public mutating func advance(to now: Duration, using generator: inout some RandomNumberGenerator) -> [PageAccess] {
        guard now > elapsed else { return [] }
        let step = min(now - elapsed, Self.maxCatchUp)
        elapsed = now
        let nanoseconds =
            UInt64(step.components.seconds) * 1_000_000_000 + UInt64(step.components.attoseconds / 1_000_000_000)
        credit += nanoseconds * UInt64(profile.pagesPerSecond)
        let count = Int(credit / 1_000_000_000)
        credit %= 1_000_000_000
        // The threshold below which a draw is a write: writeFraction of the generator's range.
        let writeThreshold = profile.writeFraction >= 1 ? 0 : UInt64(profile.writeFraction * 0x1p64)
        var accesses: [PageAccess] = []
        accesses.reserveCapacity(count)
        for _ in 0..<count {
            let page = Int.random(in: 0..<profile.workingSetPages, using: &generator)
            if profile.writeFraction >= 1 || generator.next() < writeThreshold {
                let offset = Int.random(in: 0..<(GuestMemory.pageSize / 8), using: &generator) * 8
                accesses.append(PageAccess(page: page, kind: .write(offset: offset, value: generator.next() | 1)))
            } else {
                accesses.append(PageAccess(page: page, kind: .read))
            }
        }
        return accesses
    }
}

extension GuestMemory {
    /// Makes the accesses' writes; returns how many writes there were.
    @discardableResult
    public mutating func apply(_ accesses: [PageAccess]) -> Int {
        var writes = 0
        for access in accesses {
            guard case .write(let offset, let value) = access.kind else { continue }
            withUnsafeBytes(of: value.littleEndian) { write(page: access.page, offset: offset, bytes: $0) }
            writes += 1
        }
        return writes
    }
}

/// A small seedable generator (SplitMix64) for workloads: the same seed draws the same accesses.
public struct WorkloadGenerator: RandomNumberGenerator, Hashable, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { self.state = (seed &* 0xD1B5_4A32_D192_ED03) ^ 0x8CB9_2BA7_2F3D_8DD7 }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
