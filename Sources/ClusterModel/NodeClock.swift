// The monotonic clock a node's shells measure and sleep by; a test drives its own instead.

/// A monotonic clock for the shell components: the time since the clock was made, and a sleep
/// until such a time.
///
/// A running node makes one from `ContinuousClock`; a test makes one from a clock it advances
/// itself (`ManualClock` in the TestSupport target), so timers fire when the test says and a test
/// waits for conditions rather than for time. Pure modules never hold one: they take `now:`.
public struct NodeClock: Sendable {
    private let reading: @Sendable () -> Duration
    private let sleeping: @Sendable (Duration) async throws -> Void

    /// Starts counting at `clock`'s present instant.
    public init<C: Clock>(_ clock: C) where C.Duration == Duration {
        let origin = clock.now
        reading = { origin.duration(to: clock.now) }
        sleeping = { deadline in try await clock.sleep(until: origin.advanced(by: deadline), tolerance: nil) }
    }

    /// The time since this clock was made.
    public var now: Duration { reading() }

    /// Returns once `now` has reached `deadline`; throws `CancellationError` if the task is cancelled first.
    public func sleep(until deadline: Duration) async throws { try await sleeping(deadline) }

    public func sleep(for duration: Duration) async throws { try await sleeping(now + duration) }
}
