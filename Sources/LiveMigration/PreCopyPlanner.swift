// The pre-copy planner: each round's measurements in, what the migration's source must do next out (DESIGN.md §9).
import ClusterModel

/// What the migration's source must do next.
public enum PreCopyAction: Hashable, Sendable {
    /// Send the pages dirtied since the previous round began (round 1: every page holding data),
    /// with the guest's dirtying throttled by `throttlePercent` (0: not throttled). The round
    /// begins at the `now` of the call that returned this.
    case copy(round: Int, throttlePercent: Int)
    /// Pause the guest and send the last dirty pages and the device state. `expectedDowntime` is
    /// what the dirty pages take at the measured bandwidth (the device state comes on top); it is
    /// at most the policy's downtime target.
    case pauseAndFinish(expectedDowntime: Duration)
    /// Give up: the VM keeps running on the source. `reason` says why in an operator's words: the
    /// rounds, the bytes still dirty, the dirtying and sending rates, and what to change.
    case abort(reason: String)
}

/// One finished round, for the migration's record.
public struct PreCopyRound: Hashable, Sendable {
    /// 1 for the round that sends every page holding data, then counting up by one.
    public var round: Int
    /// What the round's pages took on the wire.
    public var bytesSent: UInt64
    /// From the round's start to its end; never negative.
    public var duration: Duration
    /// Dirtied since the round began: what the next round, or the final copy, must send.
    public var dirtyBytes: UInt64
    /// The throttle the guest ran under during the round: 0, or the policy's initial throttle to its maximum.
    public var throttlePercent: Int

    public init(round: Int, bytesSent: UInt64, duration: Duration, dirtyBytes: UInt64, throttlePercent: Int) {
        self.round = round
        self.bytesSent = bytesSent
        self.duration = duration
        self.dirtyBytes = dirtyBytes
        self.throttlePercent = throttlePercent
    }
}

/// Decides, round by round, whether a pre-copy migration copies again, pauses the guest or gives up.
///
/// A value with no clock, no I/O and no randomness: time comes in as `now` (any monotonic clock,
/// from any origin), and the same calls always return the same actions. docs/live-migration.md
/// ("The pre-copy planner") states the rules in plain words:
///
/// 1. **Stop and copy** (QEMU's rule): after a round, when its dirty bytes would take at most
///    `downtimeTarget` to send at the measured bandwidth, or when nothing is dirty, pause. Without a
///    measured bandwidth (no round yet sent bytes over a measurable time) only a clean guest pauses.
/// 2. **Not converging**: after `maxRounds` rounds, or once `timeLimit` has passed since the start,
///    or when `stallRounds` rounds in a row left no fewer dirty bytes than the fewest seen so far.
///    Without auto-converge the migration is then aborted and the VM stays on the source.
/// 3. **Auto-converge**: the throttle is raised (`throttleInitial`, then `throttleStep` more each
///    time, at most `throttleMax`) after a round when two rounds in a row dirtied more than 50 % of
///    the bytes they sent (QEMU's trigger), or when the copy is not converging by rule 2 — so a guest
///    that dodges the trigger still meets a bound. A raise restarts both counts. The migration gives
///    up once `maxRounds` rounds have run at `throttleMax`, or at twice `timeLimit` since the start,
///    whichever comes first.
/// 4. **Bandwidth**: each round that sent bytes over a non-zero time gives a sample, bytes ÷ seconds;
///    the estimate is their exponentially weighted moving average with α 0.5 (the newest sample
///    weighs half). A round of 0 bytes or 0 time gives no sample: it says nothing about the link.
///
/// The throttle never decreases and stays 0 without auto-converge. Rule 1 is checked before the
/// others, so a round that ends past a limit still pauses when what is left fits the target.
///
/// ## The shell's duties (the migration's source)
/// 1. Call `start(now:)` once, then do what each action says.
/// 2. On `.copy`, send the pages the round names with the guest throttled as it says; when they are
///    sent, call `roundFinished` with the bytes put on the wire and the bytes dirtied since the
///    round began.
/// 3. If a round is still running at `deadline`, end it there and report it: what was sent, and as
///    dirty everything not yet sent plus what was dirtied meanwhile.
/// 4. On `.pauseAndFinish` or `.abort` stop calling; the migration's record keeps `rounds`.
///
/// Calls out of this order, or with a `now` earlier than the previous one, stop the process with a
/// message that prints the planner's state.
public struct PreCopyPlanner: Sendable {
    /// Where the migration stands.
    enum Phase: Hashable, Sendable {
        case notStarted
        /// Round `round` (1 or more) is running since `since`.
        case copying(round: Int, since: Duration)
        /// The planner answered `.pauseAndFinish` or `.abort`; it takes no more calls.
        case finished(PreCopyAction)
    }

    /// Why a copy does not converge; the abort reason names it.
    enum NotConverging: Hashable, Sendable {
        case roundLimit
        case timeLimit
        case noNewLow
        /// Auto-converge only: `maxRounds` rounds at the highest throttle.
        case throttledRoundLimit
        /// Auto-converge only: twice `timeLimit` since the start.
        case doubledTimeLimit
    }

    /// QEMU's `throttle-trigger-threshold`: a round that dirties more than this percent of what it sent is busy.
    static let busyPercent: UInt64 = 50
    /// QEMU's count: this many busy rounds in a row raise the throttle.
    static let busyRoundsToRaise = 2

    public let policy: PreCopyPolicy
    private(set) var phase = Phase.notStarted
    /// When `start` was called; nil before. No later `now` is earlier.
    private(set) var startedAt: Duration?
    /// Every finished round, in order; `rounds[i].round == i + 1`.
    public private(set) var rounds: [PreCopyRound] = []
    /// The link's bandwidth in bytes per second (EWMA, α 0.5); nil until a round sent bytes over a
    /// non-zero time. When set, finite and more than 0.
    public private(set) var bandwidth: Double?
    /// The throttle for the running round: 0, or `policy.throttleInitial` to `policy.throttleMax`.
    /// Never decreases; always 0 without auto-converge.
    public private(set) var throttlePercent = 0
    /// The fewest dirty bytes any round left; nil before round 1 ends. Never increases.
    private var fewestDirtyBytes: UInt64?
    /// Rounds in a row that left no fewer dirty bytes than `fewestDirtyBytes`; 0 after a throttle raise.
    private var roundsWithoutNewLow = 0
    /// Rounds in a row that dirtied more than `busyPercent` of what they sent; 0 after a throttle raise.
    private var busyRoundsInARow = 0
    /// Rounds finished at `policy.throttleMax`.
    private var roundsAtHighestThrottle = 0

    public init(policy: PreCopyPolicy = .init()) {
        if let problem = policy.problem { preconditionFailure("pre-copy policy \(policy): \(problem)") }
        self.policy = policy
    }

    /// While a round runs, the time by which it must end (the shell's duty 3): `timeLimit` after the
    /// start, or twice that with auto-converge; nil when no round runs.
    public var deadline: Duration? {
        guard case .copying = phase, let startedAt else { return nil }
        return startedAt + (policy.autoConverge ? policy.timeLimit * 2 : policy.timeLimit)
    }

    /// The migration begins at `now`: returns `.copy(round: 1, throttlePercent: 0)`.
    public mutating func start(now: Duration) -> PreCopyAction {
        guard case .notStarted = phase else { preconditionFailure("pre-copy started again at \(now): \(self)") }
        startedAt = now
        phase = .copying(round: 1, since: now)
        return .copy(round: 1, throttlePercent: 0)
    }

    /// The round the planner asked for is finished at `now`: it put `bytesSent` on the wire, and
    /// `dirtyBytes` were dirtied since it began (what the next round or the final copy must send).
    public mutating func roundFinished(now: Duration, bytesSent: UInt64, dirtyBytes: UInt64) -> PreCopyAction {
        guard case .copying(let round, let since) = phase, let startedAt else {
            preconditionFailure("pre-copy round finished at \(now) but no round runs: \(self)")
        }
        precondition(now >= since, "pre-copy round \(round) finished at \(now), before it began: \(self)")
        let finished = PreCopyRound(
            round: round, bytesSent: bytesSent, duration: now - since, dirtyBytes: dirtyBytes,
            throttlePercent: throttlePercent)
        rounds.append(finished)
        measure(finished)
        let action = decide(after: finished, elapsed: now - startedAt)
        if case .copy(let next, _) = action {
            phase = .copying(round: next, since: now)
        } else {
            phase = .finished(action)
        }
        return action
    }

    /// Folds a round into the bandwidth estimate; a round of 0 bytes or 0 time says nothing about the link.
    private mutating func measure(_ finished: PreCopyRound) {
        guard finished.bytesSent > 0, finished.duration > .zero else { return }
        let sample = Double(finished.bytesSent) / finished.duration.seconds
        bandwidth = bandwidth.map { 0.5 * sample + 0.5 * $0 } ?? sample
    }

    private mutating func decide(after finished: PreCopyRound, elapsed: Duration) -> PreCopyAction {
        if let downtime = expectedDowntime(of: finished.dirtyBytes), downtime <= policy.downtimeTarget {
            return .pauseAndFinish(expectedDowntime: downtime)
        }
        countProgress(of: finished)
        let notConverging = self.notConverging(after: finished.round, elapsed: elapsed)
        guard policy.autoConverge else {
            if let notConverging { return .abort(reason: reason(notConverging, after: finished)) }
            return .copy(round: finished.round + 1, throttlePercent: 0)
        }
        if elapsed >= policy.timeLimit * 2 { return .abort(reason: reason(.doubledTimeLimit, after: finished)) }
        if roundsAtHighestThrottle >= policy.maxRounds {
            return .abort(reason: reason(.throttledRoundLimit, after: finished))
        }
        if (busyRoundsInARow >= Self.busyRoundsToRaise || notConverging != nil) && throttlePercent < policy.throttleMax
        {
            throttlePercent =
                throttlePercent == 0
                ? policy.throttleInitial : min(throttlePercent + policy.throttleStep, policy.throttleMax)
            busyRoundsInARow = 0
            roundsWithoutNewLow = 0
        }
        return .copy(round: finished.round + 1, throttlePercent: throttlePercent)
    }

    /// What sending `dirtyBytes` takes at the measured bandwidth: 0 for none; nil when it cannot be
    /// told (no bandwidth yet) or is far beyond any target.
    private func expectedDowntime(of dirtyBytes: UInt64) -> Duration? {
        guard dirtyBytes > 0 else { return .zero }
        guard let bandwidth else { return nil }
        let seconds = Double(dirtyBytes) / bandwidth
        // Twice the target bounds the conversion (a slow link could otherwise overflow Duration)
        // and still leaves the comparison with the target to Duration.
        guard seconds <= 2 * policy.downtimeTarget.seconds else { return nil }
        return .seconds(seconds)
    }

    private mutating func countProgress(of finished: PreCopyRound) {
        if let fewest = fewestDirtyBytes, finished.dirtyBytes >= fewest {
            roundsWithoutNewLow += 1
        } else {
            fewestDirtyBytes = finished.dirtyBytes
            roundsWithoutNewLow = 0
        }
        // QEMU's threshold, sent × 50 / 100, without overflow. A round that sent nothing but left
        // dirty bytes is as busy as a round can be.
        let sent = finished.bytesSent
        let busy = finished.dirtyBytes > sent / 100 * Self.busyPercent + sent % 100 * Self.busyPercent / 100
        busyRoundsInARow = busy ? busyRoundsInARow + 1 : 0
        if policy.autoConverge && finished.throttlePercent == policy.throttleMax { roundsAtHighestThrottle += 1 }
    }

    /// Rule 2: why the copy is not converging after round `round`, or nil while it may still.
    private func notConverging(after round: Int, elapsed: Duration) -> NotConverging? {
        if round >= policy.maxRounds { return .roundLimit }
        if elapsed >= policy.timeLimit { return .timeLimit }
        if roundsWithoutNewLow >= policy.stallRounds { return .noNewLow }
        return nil
    }

    /// The abort reason: what happened, what is left, the two rates, and what the operator can change.
    private func reason(_ cause: NotConverging, after finished: PreCopyRound) -> String {
        let rounds = Self.rounds(finished.round)
        let throttled =
            throttlePercent == 0 ? "the guest not yet throttled" : "the guest throttled by \(throttlePercent) %"
        let what: String
        let advice: String
        switch cause {
        case .roundLimit:
            what = "in \(rounds)"
            advice = "set auto-converge on the VM or lower its dirty rate"
        case .timeLimit:
            what = "within the time limit of \(policy.timeLimit.spoken) (\(rounds))"
            advice = "set auto-converge on the VM, lower its dirty rate or raise the time limit"
        case .noNewLow:
            what = "in \(rounds): the dirty bytes stopped shrinking for \(Self.rounds(policy.stallRounds))"
            advice = "set auto-converge on the VM or lower its dirty rate"
        case .throttledRoundLimit:
            let last = roundsAtHighestThrottle == 1 ? "the last" : "the last \(roundsAtHighestThrottle)"
            what = "in \(rounds), \(last) with \(throttled)"
            advice = "lower the VM's dirty rate or migrate it over a faster link"
        case .doubledTimeLimit:
            what = "within twice the time limit, \((policy.timeLimit * 2).spoken) (\(rounds), \(throttled))"
            advice = "lower the VM's dirty rate, migrate it over a faster link or raise the time limit"
        }
        let dirtying =
            finished.duration > .zero
            ? "the guest dirties \(Self.rate(Double(finished.dirtyBytes) / finished.duration.seconds))"
            : "the guest's dirtying rate is not measured"
        let sending = bandwidth.map { "the link sends \(Self.rate($0))" } ?? "the link's bandwidth is not measured"
        return
            "did not converge \(what): \(ByteCount(finished.dirtyBytes)) still dirty; \(dirtying), \(sending); \(advice)"
    }

    /// `1 round`, `10 rounds`.
    private static func rounds(_ count: Int) -> String { count == 1 ? "1 round" : "\(count) rounds" }

    /// `300 MiB/s`: bytes per second in the units of `ByteCount`, rounded down.
    private static func rate(_ bytesPerSecond: Double) -> String {
        let bytes = bytesPerSecond.isFinite && bytesPerSecond < 0x1p64 ? UInt64(max(bytesPerSecond, 0)) : .max
        return "\(ByteCount(bytes))/s"
    }
}

extension PreCopyPlanner: CustomStringConvertible {
    /// The planner's state, for precondition messages and logs.
    public var description: String {
        let phase: String
        switch self.phase {
        case .notStarted: phase = "not started"
        case .copying(let round, let since): phase = "copying round \(round) since \(since)"
        case .finished(let action): phase = "finished with \(action)"
        }
        let started = startedAt.map { "\($0)" } ?? "-"
        let measured = bandwidth.map { Self.rate($0) } ?? "not measured"
        let history = rounds.map {
            "\($0.round): \($0.bytesSent) bytes in \($0.duration), \($0.dirtyBytes) dirty, throttle \($0.throttlePercent) %"
        }
        return
            "pre-copy planner \(phase), started at \(started), bandwidth \(measured), throttle \(throttlePercent) %, rounds [\(history.joined(separator: "; "))]"
    }
}

extension Duration {
    /// Whole and fractional seconds.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// `60 s`, `1.5 s`, `250 ms`: for messages.
    fileprivate var spoken: String {
        let milliseconds = components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
        if milliseconds < 1000 { return "\(milliseconds) ms" }
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(Double(milliseconds) / 1000) s"
    }
}
