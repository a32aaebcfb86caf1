// One HTTP/2 stream's state, server or client side, from its first HEADERS until nghttp2 closes it.
import NIOCore

/// State of one stream; owned by the connection's `streams` table and touched only on its event loop.
final class NGHTTP2Stream {
    var id: Int32
    // Inbound header block.
    var method: String?
    var path: String?
    var authority: String?
    /// Server: `path` split at `?` once the header block is complete.
    var requestPath = "/"
    var requestQuery: String?
    var status: Int?
    var headers = HTTPFields()
    /// Sum of (name + value + 32) over received fields; over the limit sets `headerListTooLarge`.
    var headerListSize = 0
    var headerListTooLarge = false
    var headersComplete = false
    // Inbound body.
    var inbound: InboundBody = .discarding
    /// END_STREAM received (or the stream timed out waiting for it).
    var inboundEnded = false
    /// Bytes handed to a streaming reader that nghttp2 has not yet been told were consumed.
    var unconsumedBytes = 0
    var lastActivity: NIODeadline
    var timedOut = false
    /// nghttp2 closed the stream (or the connection went away); answers for it are dropped.
    var isClosed = false
    // Server: the route waiting for a collected body, and whether a response was submitted.
    var pendingRoute: (route: Router.Route, parameters: RouteParameters)?
    var responseStarted = false
    // Outbound body, when there is one.
    var outbound: OutboundBody?
    // Client: the caller waiting for the response, and the deadline timer.
    var exchange: ClientExchange?
    var deadline: Scheduled<Void>?

    init(id: Int32, now: NIODeadline) {
        self.id = id
        self.lastActivity = now
    }

    /// Fails whatever waits on this stream: the client caller, or a streaming reader.
    func fail(_ error: HTTP2ClientError) {
        self.deadline?.cancel()
        if let exchange, !exchange.finished {
            exchange.finished = true
            exchange.promise.fail(error)
        }
        if case .streaming(let continuation) = self.inbound {
            continuation.finish(throwing: error)
            self.inbound = .discarding
        }
        if case .sink(let sink) = self.inbound, let paced = sink as? any PacedRequestBodySink {
            self.inbound = .discarding
            paced.abort()
        }
        if let waiter = self.outbound?.producerWaiting {
            self.outbound?.producerWaiting = nil
            waiter.fail(error)
        }
    }
}
