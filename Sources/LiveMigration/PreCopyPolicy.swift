// How a pre-copy migration decides when to pause, when to give up and how hard to throttle (DESIGN.md §9).

/// The knobs of one pre-copy migration; the cluster's settings and the VM's policy fill them.
///
/// The defaults follow the systems in `notes/migration-and-memory-anchors.md` §1: a 50 ms downtime
/// target (the field median of Google's fleet; QEMU's default is 300 ms), Hyper-V 2008 R2's 10
/// passes, and QEMU's auto-converge steps (20 %, then 10 % more each time, at most 99 %).
public struct PreCopyPolicy: Hashable, Sendable {
    /// Pause the guest once its remaining dirty bytes would take at most this long to send at the
    /// measured bandwidth (QEMU's `downtime-limit`). More than 0, at most 2,000 s (QEMU's limit).
    public var downtimeTarget: Duration
    /// Rounds before the copy counts as not converging (Hyper-V 2008 R2 gave up after 10 passes). At least 1.
    public var maxRounds: Int
    /// Time from the start before the copy counts as not converging; with `autoConverge` the
    /// migration gives up at twice this. More than 0, at most 365 days.
    public var timeLimit: Duration
    /// Rounds in a row whose dirty bytes are no lower than the lowest seen so far before the copy
    /// counts as not converging (it stalled: the guest dirties as fast as the link sends). At least 1.
    public var stallRounds: Int
    /// Without it a copy that does not converge is aborted and the VM stays on the source, as
    /// Hyper-V does; with it the guest's dirtying is throttled until the copy converges (QEMU's
    /// auto-converge).
    public var autoConverge: Bool
    /// The first throttle, in percent of the guest's dirtying taken away. 1–99 (QEMU's `cpu-throttle-initial`).
    public var throttleInitial: Int
    /// How much each later raise adds, in percent. 1–99 (QEMU's `cpu-throttle-increment`).
    public var throttleStep: Int
    /// The highest throttle, in percent. `throttleInitial`–99 (QEMU's `max-cpu-throttle`).
    public var throttleMax: Int

    public init(
        downtimeTarget: Duration = .milliseconds(50), maxRounds: Int = 10, timeLimit: Duration = .seconds(60),
        stallRounds: Int = 3, autoConverge: Bool = false, throttleInitial: Int = 20, throttleStep: Int = 10,
        throttleMax: Int = 99
    ) {
        self.downtimeTarget = downtimeTarget
        self.maxRounds = maxRounds
        self.timeLimit = timeLimit
        self.stallRounds = stallRounds
        self.autoConverge = autoConverge
        self.throttleInitial = throttleInitial
        self.throttleStep = throttleStep
        self.throttleMax = throttleMax
    }

    /// Why the policy cannot be used, with what to fix; nil when it can.
    public var problem: String? {
        guard downtimeTarget > .zero, downtimeTarget <= .seconds(2000) else {
            return "downtime target must be more than 0 and at most 2000 s, got \(downtimeTarget)"
        }
        guard maxRounds >= 1 else { return "the round limit must be at least 1, got \(maxRounds)" }
        guard timeLimit > .zero, timeLimit <= .seconds(365 * 24 * 3600) else {
            return "the time limit must be more than 0 and at most 365 days, got \(timeLimit)"
        }
        guard stallRounds >= 1 else { return "stall rounds must be at least 1, got \(stallRounds)" }
        guard (1...99).contains(throttleInitial) else {
            return "the initial throttle must be 1–99 %, got \(throttleInitial) % (the default is 20)"
        }
        guard (1...99).contains(throttleStep) else {
            return "the throttle step must be 1–99 %, got \(throttleStep) % (the default is 10)"
        }
        guard (throttleInitial...99).contains(throttleMax) else {
            return
                "the highest throttle must be from the initial throttle (\(throttleInitial) %) to 99 %, got \(throttleMax) %"
        }
        return nil
    }
}
