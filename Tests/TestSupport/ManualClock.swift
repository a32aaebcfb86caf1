// A clock that moves only when the test advances it: timers fire at the test's command.
import Synchronization
public import Testing

/// A `Clock` whose time stands still until `advance(by:)`; sleepers whose deadline has come
/// are woken then, in deadline order.
///
/// Tests that used to sleep and then check that nothing happened use it instead: a loop on this
/// clock runs its timed pass only when the test advances time, and `sleepers` tells when every
/// loop has gone back to waiting.
public final class ManualClock: Clock, Sendable {
    public struct Instant: InstantProtocol {
        /// Time since the clock was made.
        public var offset: Duration

        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private struct Sleeper {
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [UInt64: Sleeper] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    public var now: Instant { state.withLock { $0.now } }
    public var minimumResolution: Duration { .zero }

    /// How many tasks are waiting on this clock now.
    public var sleepers: Int { state.withLock { $0.sleepers.count } }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Outcome { case due, cancelled, waiting }
                // Checked under the lock that `onCancel` takes too: a cancellation either finds the
                // sleeper registered, or is seen here before it would be.
                let outcome = state.withLock { state -> Outcome in
                    if Task.isCancelled { return .cancelled }
                    if deadline <= state.now { return .due }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    return .waiting
                }
                switch outcome {
                case .due: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .waiting: break
                }
            }
        } onCancel: {
            let sleeper = state.withLock { $0.sleepers.removeValue(forKey: id) }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    public func advance(by duration: Duration) {
        precondition(duration >= .zero, "a clock does not go back (asked to advance by \(duration))")
        let due = state.withLock { state in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.value.deadline <= now }.sorted {
                $0.value.deadline < $1.value.deadline
            }
            for (id, _) in due { state.sleepers.removeValue(forKey: id) }
            return due.map(\.value.continuation)
        }
        for continuation in due { continuation.resume() }
    }
}

extension ManualClock {
    /// Moves time on by `step` whenever a task waits on this clock, until `done` holds.
    ///
    /// A step is taken only while some task sleeps on the clock, that is once the work the
    /// previous step woke has finished: when this returns, nothing it woke is still running.
    public func advance(
        by step: Duration, until what: String, sourceLocation: SourceLocation = #_sourceLocation,
        _ done: () async throws -> Bool
    ) async throws {
        try await eventually(what, sourceLocation: sourceLocation) {
            if try await done() { return true }
            if sleepers > 0 { advance(by: step) }
            return false
        }
    }
}
