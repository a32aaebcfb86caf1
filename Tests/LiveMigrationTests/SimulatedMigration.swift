// The shell's side of a pre-copy, simulated: a guest that dirties its memory and a link that sends it, round by round.
import ClusterModel
import LiveMigration

let mib: UInt64 = 1 << 20
let gib: UInt64 = 1 << 30

/// A guest migrated over a link, doing what the planner says until it pauses or gives up.
///
/// A round sends what the previous one left dirty (round 1: `dataBytes`) at `linkRate`; meanwhile
/// the guest dirties `dirtyRate` × (1 − throttle) bytes per second, never more than its memory.
/// A round still running at the planner's deadline is cut there (the shell's duty 3).
struct SimulatedMigration {
    /// What round 1 sends: the pages holding data.
    let dataBytes: UInt64
    /// The most that can be dirty at once: the guest's memory.
    let memoryBytes: UInt64
    /// Bytes per second the guest dirties when it is not throttled.
    let dirtyRate: Double
    /// Bytes per second the link sends.
    let linkRate: Double
    var planner: PreCopyPlanner
    var now = Duration.zero
    /// Every action the planner returned, `start`'s first.
    private(set) var actions: [PreCopyAction] = []
    /// What the next round must send.
    private var pending: UInt64 = 0
    /// Draws each round's noise when set: rates within ±`noise`, and now and then a round that sends
    /// nothing or takes no measurable time.
    var random: SeededGenerator?
    var noise = 0.0

    init(
        dataBytes: UInt64, memoryBytes: UInt64? = nil, dirtyRate: Double, linkRate: Double,
        policy: PreCopyPolicy = .init()
    ) {
        self.dataBytes = dataBytes
        self.memoryBytes = memoryBytes ?? dataBytes
        self.dirtyRate = dirtyRate
        self.linkRate = linkRate
        self.planner = PreCopyPlanner(policy: policy)
    }

    /// Starts the migration and runs rounds until the planner pauses or aborts, or `calls` rounds
    /// have run; returns the last action.
    @discardableResult
    mutating func run(calls: Int = 1000) -> PreCopyAction {
        var action = start()
        for _ in 0..<calls {
            guard case .copy(_, let throttle) = action else { break }
            action = runRound(throttle: throttle)
        }
        return action
    }

    /// Starts the migration: what the planner says first.
    mutating func start() -> PreCopyAction {
        pending = dataBytes
        let action = planner.start(now: now)
        actions.append(action)
        return action
    }

    /// Runs the round the planner asked for, with the guest throttled by `throttle` percent, and
    /// reports it: what the planner says next.
    mutating func runRound(throttle: Int) -> PreCopyAction {
        var linkRate = linkRate
        var dirtyRate = dirtyRate * Double(100 - throttle) / 100
        var stalledLink = false
        var instant = false
        if var random {
            linkRate *= Double.random(in: (1 - noise)...(1 + noise), using: &random)
            dirtyRate *= Double.random(in: (1 - noise)...(1 + noise), using: &random)
            stalledLink = Int.random(in: 0..<20, using: &random) == 0
            instant = Int.random(in: 0..<20, using: &random) == 0
            self.random = random
        }
        var duration: Duration
        var sent: UInt64
        if instant {
            (duration, sent) = (.zero, pending)
        } else if stalledLink {
            (duration, sent) = (.milliseconds(100), 0)
        } else {
            duration = .nanoseconds(Int64((Double(pending) / linkRate * 1e9).rounded()))
            sent = pending
        }
        if let deadline = planner.deadline, now + duration > deadline {
            duration = deadline - now
            sent = min(sent, UInt64(linkRate * duration.seconds))
        }
        let dirtied = UInt64((dirtyRate * duration.seconds).rounded())
        let dirty = min(memoryBytes, pending - sent + dirtied)
        now += duration
        pending = dirty
        let action = planner.roundFinished(now: now, bytesSent: sent, dirtyBytes: dirty)
        actions.append(action)
        return action
    }

    /// The throttle of every round, in order.
    var throttles: [Int] { planner.rounds.map(\.throttlePercent) }
}

extension PreCopyAction {
    /// The expected downtime of a pause; nil for any other answer.
    var expectedDowntime: Duration? {
        guard case .pauseAndFinish(let downtime) = self else { return nil }
        return downtime
    }

    /// The reason of an abort; nil for any other answer.
    var abortReason: String? {
        guard case .abort(let reason) = self else { return nil }
        return reason
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
