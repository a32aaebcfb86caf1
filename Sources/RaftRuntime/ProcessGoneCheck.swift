// Whether a peer whose connection closed still has a process: how the reconnects that ask are read.
import HTTP2

/// Reads the reconnects `HTTP2PeerTransport` makes after a peer's connection closed, one attempt at
/// a time, into a verdict on the peer's process (pure: the transport connects and waits).
///
/// A refused connect (ECONNREFUSED: the host is up, nothing listens) means the process is gone. A
/// connect that succeeds means it is there (restarted, or it merely closed the connection). A dying
/// process's sockets close one by one, so a connect can still be taken by its listening socket and
/// then reset, either before the connect is seen through (ECONNRESET) or in the HTTP/2 handshake
/// (the connection closes): that is asked again after `retryDelay`, up to `attempts` connects in
/// all. A connect that times out or fails otherwise (the host vanished, the network is cut, the
/// peer does not speak HTTP/2) is no sign either way: the election timeout finds that loss.
package struct ProcessGoneCheck: Sendable {
    package enum Verdict: Sendable, Equatable {
        /// It connected: the peer's process is there.
        case alive
        /// It was refused: the peer's process is gone.
        case gone
        /// Reset or closed before the connection was up: connect again after the delay.
        case tryAgain(after: Duration)
        /// Neither sign (or still reset after the last attempt): nothing to report.
        case noSign
    }

    /// Connects in all, the first included.
    package static let attempts = 3
    /// The wait before asking again: longer than the client's first backoff (50 ms), and long
    /// enough for a dying process to have closed its listening socket.
    package static let retryDelay = Duration.milliseconds(60)

    /// Connects read so far.
    package private(set) var attempt = 0

    package init() {}

    /// Reads the next connect's outcome: nil when it succeeded, otherwise what it threw.
    package mutating func read(_ failure: (any Error)?) -> Verdict {
        attempt += 1
        guard let failure else { return .alive }
        guard let error = failure as? HTTP2ClientError else { return .noSign }
        if error.connectWasRefused { return .gone }
        // Taken and reset (the connect or the handshake), or a race with the client's own state
        // (no connection or connect at hand), or failing fast in the backoff after a failed connect.
        let askAgain =
            error.connectWasReset || error.kind == .connectionClosed || error.kind == .peerUnavailable
        return askAgain && attempt < Self.attempts ? .tryAgain(after: Self.retryDelay) : .noSign
    }
}
