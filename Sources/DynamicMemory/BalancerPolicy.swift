// How fast and in what steps the balancer moves memory: the knobs of DESIGN.md §10's balancing pass.
import ClusterModel

/// How fast and in what steps the balancer moves memory between a node's VMs.
public struct BalancerPolicy: Hashable, Sendable {
    /// How memory above a VM's goal comes back when another VM needs it because memory is short.
    public enum ContentionReclaim: String, Hashable, Sendable {
        /// By balloon steps (`balloonRate`), as a guest really frees pages; the VM that needs the
        /// memory grows as it comes free, higher priority first.
        case ballooned
        /// At once: every VM is at its fair share after each pass.
        case atOnce
    }

    /// How fast memory is given back voluntarily (balloon), bytes per second of time between
    /// passes. Also bounds reclaim under contention when `contentionReclaim` is `.ballooned`.
    public var balloonRate: UInt64
    /// Assignments above their target by less than max(`hysteresisFloor`, this percent of the
    /// target) are left alone while every target fits, so they do not oscillate. 0–100.
    public var hysteresisPercent: Int
    public var hysteresisFloor: UInt64
    /// Assignments move in whole multiples of this (hot-add granularity). 1 byte to 1 TiB.
    ///
    /// A balloon step smaller than one granule returns nothing, so `balloonRate` × the pass
    /// interval should be at least one granule (51 MiB for the defaults at 100 ms).
    public var granule: UInt64
    /// The longest time between passes that counts toward one balloon step: a late pass does not
    /// return more at once than a guest frees in this time. The first pass counts as this long.
    public var longestStep: Duration
    public var contentionReclaim: ContentionReclaim

    public init(
        balloonRate: UInt64 = 512 << 20, hysteresisPercent: Int = 5, hysteresisFloor: UInt64 = 16 << 20,
        granule: UInt64 = 1 << 20, longestStep: Duration = .seconds(1),
        contentionReclaim: ContentionReclaim = .ballooned
    ) {
        self.balloonRate = balloonRate
        self.hysteresisPercent = hysteresisPercent
        self.hysteresisFloor = hysteresisFloor
        self.granule = granule
        self.longestStep = longestStep
        self.contentionReclaim = contentionReclaim
    }

    /// Why the policy cannot be used, or nil when it can.
    public var problem: String? {
        guard (1...(1 << 40)).contains(granule) else { return "granule must be 1 byte to 1 TiB, got \(granule) bytes" }
        guard (0...100).contains(hysteresisPercent) else {
            return "hysteresis must be 0–100 %, got \(hysteresisPercent) %"
        }
        guard hysteresisFloor <= MemorySettings.largestBytes else {
            return "hysteresis floor must be at most 1 PiB, got \(hysteresisFloor) bytes"
        }
        guard longestStep >= .zero else { return "longest step must not be negative, got \(longestStep)" }
        return nil
    }
}
