// When the client may use, open or must not yet reopen its one connection to a peer (pure: time is an argument).
import NIOCore

/// The lifecycle of a client's single connection to one peer, with capped exponential backoff.
///
/// A call that needs the connection asks `connectionNeeded(now:)`; the shell does what the action
/// says and reports back with `connectSucceeded`, `connectFailed` or `connectionLost`. While backing off
/// after a failed connect, calls fail fast instead of waiting out their deadlines on a dead peer.
struct ReconnectStateMachine: Sendable {
    enum State: Sendable, Equatable {
        /// No connection. `failures` consecutive connects failed; the next may start at `retryAt`.
        case disconnected(failures: Int, retryAt: NIODeadline?)
        /// Connect attempt `attempt` is in flight.
        case connecting(attempt: UInt64, failures: Int)
        /// Connection `attempt` is up.
        case connected(attempt: UInt64)
        case closed
    }

    enum Action: Equatable {
        case useConnection
        case joinConnectAttempt
        case startConnecting(attempt: UInt64)
        /// The peer failed recently; fail the call now. The next connect may start after `retryIn`.
        case failFast(retryIn: TimeAmount)
        case failClosed
    }

    let initialBackoff: TimeAmount
    let maxBackoff: TimeAmount
    private(set) var state = State.disconnected(failures: 0, retryAt: nil)
    private var nextAttempt: UInt64 = 1

    init(initialBackoff: TimeAmount, maxBackoff: TimeAmount) {
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
    }

    /// A connection is open and may be used without asking `connectionNeeded`.
    var isConnected: Bool {
        if case .connected = self.state { return true }
        return false
    }

    /// What a call that needs the connection does. `ignoringBackoff`: connect even before the
    /// backoff after a failed connect has passed (an explicit `HTTP2Client.connect`).
    mutating func connectionNeeded(now: NIODeadline, ignoringBackoff: Bool = false) -> Action {
        switch self.state {
        case .connected:
            return .useConnection
        case .connecting:
            return .joinConnectAttempt
        case .closed:
            return .failClosed
        case .disconnected(let failures, let retryAt):
            if let retryAt, now < retryAt, !ignoringBackoff {
                return .failFast(retryIn: retryAt - now)
            }
            let attempt = self.nextAttempt
            self.nextAttempt += 1
            self.state = .connecting(attempt: attempt, failures: failures)
            return .startConnecting(attempt: attempt)
        }
    }

    /// Returns false when the connection must be closed at once (the client closed meanwhile).
    mutating func connectSucceeded(attempt: UInt64) -> Bool {
        guard case .connecting(attempt, _) = self.state else { return false }
        self.state = .connected(attempt: attempt)
        return true
    }

    /// Records a failed connect and returns the backoff before the next attempt.
    @discardableResult
    mutating func connectFailed(attempt: UInt64, now: NIODeadline) -> TimeAmount {
        guard case .connecting(attempt, let failures) = self.state else { return .zero }
        let delay = self.backoff(afterFailures: failures + 1)
        self.state = .disconnected(failures: failures + 1, retryAt: now + delay)
        return delay
    }

    /// The connection closed or the peer sent GOAWAY: the next call reconnects at once.
    mutating func connectionLost(attempt: UInt64) {
        guard case .connected(attempt) = self.state else { return }
        self.state = .disconnected(failures: 0, retryAt: nil)
    }

    /// The peer is known to be back (it reached us): the next call connects at once, without
    /// waiting out the backoff. Changes nothing while connected or connecting.
    mutating func peerIsBack() {
        guard case .disconnected = self.state else { return }
        self.state = .disconnected(failures: 0, retryAt: nil)
    }

    mutating func close() {
        self.state = .closed
    }

    /// `initialBackoff * 2^(failures-1)`, capped at `maxBackoff`.
    func backoff(afterFailures failures: Int) -> TimeAmount {
        guard failures > 0 else { return .zero }
        var delay = self.initialBackoff
        for _ in 1..<failures {
            delay = delay * 2
            if delay >= self.maxBackoff { return self.maxBackoff }
        }
        return min(delay, self.maxBackoff)
    }
}
