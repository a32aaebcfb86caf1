// The per-node memory balancer: one pass turns settings and demands into assignments (DESIGN.md §10).
import ClusterModel

/// Shares a node's usable memory between the VMs it runs, one pass at a time.
///
/// A value with no clock, no I/O and no randomness: time comes in as `now`, and all it remembers
/// between passes is when the previous one ran, to size the balloon step, and which VMs it left
/// giving back. docs/dynamic-memory.md
/// states its rules in plain words; each pass keeps all of them:
///
/// 1. A VM's target is its demand plus its buffer, rounded up to the granule, within
///    [minimum, maximum].
/// 2. The sum of assignments never exceeds `usable`: the host never pages for its guests.
/// 3. A running VM stays within [minimum, maximum]. A raised minimum is met at once (like a
///    reservation); a lowered maximum is applied at once (the guest may not keep more).
/// 4. A starting VM gets exactly its startup memory or nothing (`waiting`), before any running VM
///    grows; running VMs' memory above their minimums is reclaimed at once for it.
/// 5. When every target fits, a VM below its target gets it at once (hot-add), taking at once what
///    others hold above their targets if free memory is short; a VM above its target by more than
///    the hysteresis band gives back one balloon step per pass, down to its target; a VM within the
///    band that is not already giving back does not move.
/// 6. When the targets do not fit, every running VM keeps its minimum and the memory above the
///    minimums is shared by weighted max-min fairness on the need above the minimum, weight
///    priority + 1. VMs above their share give back by balloon steps (or at once, by policy).
/// 7. Growth that free memory cannot all cover goes by priority (higher first), then by the size
///    of the deficit (larger first), then by VM id; a VM after the first one left short does not
///    grow.
/// 8. Should even the running VMs' minimums not fit (the node's usable memory was lowered under
///    them), `usable` still wins: no VM starts, and each running VM keeps what it holds up to its
///    minimum, raised by priority as far as memory allows, or, if even that does not fit, a
///    share of `usable` in proportion to it.
///
/// The answer does not depend on the order of `requests`, only on their content.
///
/// ## The agent's duties (the shell that owns the balancer and the guests)
/// 1. Call `pass` every interval (default 100 ms) with a monotonic `now` and every VM the node
///    runs or is about to start.
/// 2. For a running VM, pass what it holds now as `assigned`; for a VM that is starting or
///    arriving, `nil` until an answer other than `waiting` lets it start.
/// 3. Apply the decreases (balloon) before the increases (hot-add), so the sum stays within
///    `usable` while the answer is being applied.
/// 4. Start a VM only on an answer other than `waiting`; it then holds exactly its startup memory.
public struct MemoryBalancer: Sendable {
    public let policy: BalancerPolicy
    /// When the previous pass ran; nil before the first. Never decreases.
    public private(set) var previousPass: Duration?
    /// The VMs the previous pass left giving back (ballooned down, still above their goal).
    private var givingBack: Set<VMID> = []

    public init(policy: BalancerPolicy = .init()) {
        if let problem = policy.problem { preconditionFailure("memory balancer policy \(policy): \(problem)") }
        self.policy = policy
    }

    /// One balancing pass at time `now` (time since any fixed origin), sharing `usable` bytes
    /// between the VMs of `requests`; the answers come in the order of `requests`.
    ///
    /// The balloon step is `balloonRate` × the time since the previous pass, at most
    /// `longestStep`; the first pass counts as `longestStep`.
    public mutating func pass(now: Duration, usable: UInt64, requests: [MemoryRequest]) -> [MemoryAssignment] {
        let elapsed: Duration
        if let previousPass {
            precondition(
                now >= previousPass, "memory balancer pass at \(now) is before the previous pass at \(previousPass)")
            elapsed = min(now - previousPass, policy.longestStep)
        } else {
            elapsed = policy.longestStep
        }
        previousPass = now
        var pass = BalancingPass(
            policy: policy, usable: usable, step: Self.balloonStep(rate: policy.balloonRate, for: elapsed),
            requests: requests, givingBack: givingBack)
        pass.run()
        givingBack = pass.stillGivingBack
        return pass.assignments
    }

    /// `rate` bytes per second for `elapsed`, rounded down to whole bytes (UInt64.max at most).
    static func balloonStep(rate: UInt64, for elapsed: Duration) -> UInt64 {
        let (seconds, attoseconds) = elapsed.components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        let (whole, overflow) = rate.multipliedReportingOverflow(by: UInt64(seconds))
        let fraction = UInt64(1_000_000_000_000_000_000).dividingFullWidth(
            rate.multipliedFullWidth(by: UInt64(attoseconds))
        ).quotient
        let (sum, overflowed) = whole.addingReportingOverflow(fraction)
        return overflow || overflowed ? .max : sum
    }
}
