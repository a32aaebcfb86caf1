// The typed errors HTTP2Client throws; each says what failed, with which peer, and what to do.
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why a client call failed.
///
/// Compare `kind` to decide what to do: `connectionRefused` and `peerUnavailable` mean the peer is down
/// (the call failed fast, without waiting for its deadline), `goaway` means the peer is shutting down
/// and did not process the request (safe to retry elsewhere), `deadlineExceeded` means the call ran
/// out of time and may or may not have been processed.
public struct HTTP2ClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The category of failure; new kinds may be added later, so switch with a default.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case connectionRefused = "connection refused"
            case peerUnavailable = "peer unavailable"
            case deadlineExceeded = "deadline exceeded"
            case streamReset = "stream reset"
            case connectionClosed = "connection closed"
            case goaway = "peer going away"
            case bodyTooLarge = "body too large"
            case protocolError = "protocol error"
            case clientClosed = "client closed"
            case cancelled = "cancelled"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        public var description: String { self.base.rawValue }

        /// The TCP connect was refused or failed: nothing listens at the peer's address.
        public static let connectionRefused = Kind(.connectionRefused)
        /// The last connect failed moments ago and the client is backing off before trying again.
        public static let peerUnavailable = Kind(.peerUnavailable)
        /// The call's deadline passed before the exchange completed.
        public static let deadlineExceeded = Kind(.deadlineExceeded)
        /// The peer reset the stream (`errorCode` says why, as an HTTP/2 error code).
        public static let streamReset = Kind(.streamReset)
        /// The connection closed (peer died or closed it) before the exchange completed.
        public static let connectionClosed = Kind(.connectionClosed)
        /// The peer sent GOAWAY and did not process this request; retrying is safe.
        public static let goaway = Kind(.goaway)
        /// The response body exceeded `HTTP2Client.Configuration.maxResponseBodySize`.
        public static let bodyTooLarge = Kind(.bodyTooLarge)
        /// The peer violated HTTP/2 or sent a response nghttp2 could not accept.
        public static let protocolError = Kind(.protocolError)
        /// `HTTP2Client.close()` was called.
        public static let clientClosed = Kind(.clientClosed)
        /// The calling task was cancelled; the stream was reset with CANCEL.
        public static let cancelled = Kind(.cancelled)
    }

    public let kind: Kind
    /// The peer, as `host:port`.
    public let peer: String
    /// What happened, in words.
    public let detail: String
    /// The HTTP/2 error code of a `streamReset` (e.g. 8 = CANCEL), otherwise `nil`.
    public let errorCode: UInt32?
    /// The peer's host answered the TCP connect with a refusal (ECONNREFUSED): it is up but nothing
    /// listens on the port, so the peer's process is not running. A host that is gone (or cut off)
    /// times out or is unreachable instead, and this is false. Also true for a `peerUnavailable`
    /// call made while backing off after such a refusal.
    public let connectWasRefused: Bool
    /// The peer's host took the TCP connect and then reset it (ECONNRESET) before the connect was
    /// seen through: a listening socket that closed with the connect still in its queue, as when
    /// the peer's process is dying. Also true for a `peerUnavailable` call made while backing off
    /// after such a reset.
    public let connectWasReset: Bool

    init(
        _ kind: Kind, peer: String, detail: String, errorCode: UInt32? = nil, connectWasRefused: Bool = false,
        connectWasReset: Bool = false
    ) {
        self.kind = kind
        self.peer = peer
        self.detail = detail
        self.errorCode = errorCode
        self.connectWasRefused = connectWasRefused
        self.connectWasReset = connectWasReset
    }

    /// A failed TCP connect (`connectionRefused`), its cause (`error`, as NIO reports it) read
    /// into `connectWasRefused` and `connectWasReset`.
    static func connectFailed(peer: String, _ error: any Error) -> HTTP2ClientError {
        HTTP2ClientError(
            .connectionRefused, peer: peer, detail: "connect failed: \(error)",
            connectWasRefused: connectFailed(error, with: ECONNREFUSED),
            connectWasReset: connectFailed(error, with: ECONNRESET))
    }

    /// Whether a connect failed with `errno` on every address tried.
    private static func connectFailed(_ error: any Error, with errno: Int32) -> Bool {
        if let error = error as? IOError { return error.errnoCode == errno }
        if let error = error as? NIOConnectionError {
            return !error.connectionErrors.isEmpty
                && error.connectionErrors.allSatisfy { connectFailed($0.error, with: errno) }
        }
        return false
    }

    public var description: String {
        "HTTP2ClientError(\(self.kind), peer \(self.peer)): \(self.detail)"
    }

    /// Whether the peer certainly did not process the request, so sending it again is safe.
    public var requestWasNotProcessed: Bool {
        self.kind == .connectionRefused || self.kind == .peerUnavailable || self.kind == .goaway
            || (self.kind == .streamReset && self.errorCode == 7)  // REFUSED_STREAM
    }
}
