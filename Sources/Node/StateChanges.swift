// Wakes the node's followers of the applied state (agent, volumes) when it changes, not only on a timer.
public import ClusterModel
import Synchronization

/// Tells the loops that act on this node's applied state that it changed.
///
/// The agent and the volume coordinator used to look at the state only every 200 ms, so a VM failed
/// over to this node waited up to that long before it started. Now the state machine signals every
/// applied command that can change what a node runs or coordinates, and each loop wakes at once; the
/// timer stays as a backstop (and for what changes without a command, such as a guest that died).
/// Signals coalesce: a loop busy with one pass sees at most one more wake-up, however many came.
public final class StateChanges: Sendable {
    private let subscribers = Mutex<[Wakeup]>([])
    /// Signals since this was made: what the state machine reported (for tests and metrics).
    private let signals = Atomic<Int>(0)
    /// What the backstop timers sleep by.
    private let clock: NodeClock

    public init(clock: NodeClock = NodeClock(ContinuousClock())) { self.clock = clock }

    /// Wakes every subscriber once (if it is not already due to wake).
    public func signal() {
        signals.add(1, ordering: .relaxed)
        for subscriber in subscribers.withLock({ $0 }) { subscriber.signal() }
    }

    /// How many times `signal()` was called.
    package var signalCount: Int { signals.load(ordering: .relaxed) }

    /// Subscribers due to wake (at most one wake-up each, however many signals came).
    package var pendingWakeups: Int { subscribers.withLock { $0.filter(\.isPending).count } }

    /// Runs `pass` now, then again after every signal and at least every `interval`, until the task is cancelled.
    public func follow(every interval: Duration, _ pass: @Sendable () async -> Void) async {
        let wakeup = Wakeup()
        subscribers.withLock { $0.append(wakeup) }
        let clock = clock
        let timer = Task {
            while !Task.isCancelled {
                try? await clock.sleep(for: interval)
                wakeup.signal()
            }
        }
        defer {
            timer.cancel()
            subscribers.withLock { $0.removeAll { $0 === wakeup } }
        }
        await pass()
        while await wakeup.wait() {
            if Task.isCancelled { return }
            await pass()
        }
    }
}

/// One follower's wake-up: at most one pending, so signals that come during a pass coalesce.
private final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Bool, Never>?
    }

    private let state = Mutex(State())

    var isPending: Bool { state.withLock { $0.pending } }

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: true)
    }

    /// Returns true once signalled (at once if a signal is pending), false if the task is cancelled.
    func wait() async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let resume = state.withLock { state -> Bool? in
                    if Task.isCancelled { return false }
                    if state.pending {
                        state.pending = false
                        return true
                    }
                    state.waiter = continuation
                    return nil
                }
                if let resume { continuation.resume(returning: resume) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: false)
        }
    }
}
