// Wakes the node's followers of the applied state (agent, volumes) when it changes, not only on a timer.
import Synchronization

/// Tells the loops that act on this node's applied state that it changed.
///
/// The agent and the volume coordinator used to look at the state only every 200 ms, so a VM failed
/// over to this node waited up to that long before it started. Now the state machine signals every
/// applied command that can change what a node runs or coordinates, and each loop wakes at once; the
/// timer stays as a backstop (and for what changes without a command, such as a guest that died).
/// Signals coalesce: a loop busy with one pass sees at most one more wake-up, however many came.
public final class StateChanges: Sendable {
    private let subscribers = Mutex<[AsyncStream<Void>.Continuation]>([])

    public init() {}

    /// Wakes every subscriber once (if it is not already due to wake).
    public func signal() {
        for subscriber in subscribers.withLock({ $0 }) { subscriber.yield() }
    }

    /// Runs `pass` now, then again after every signal and at least every `interval`, until the task is cancelled.
    public func follow(every interval: Duration, _ pass: @Sendable () async -> Void) async {
        let (wakes, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        subscribers.withLock { $0.append(continuation) }
        let timer = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                continuation.yield()
            }
        }
        defer {
            timer.cancel()
            continuation.finish()
        }
        await pass()
        for await _ in wakes {
            if Task.isCancelled { return }
            await pass()
        }
    }
}
