// One HTTP/2 stream's state, server or client side, from its first HEADERS until nghttp2 closes it.
import NIOCore

/// State of one stream; owned by the connection's `streams` table and touched only on its event loop.
///
/// The properties changed through calls on every request are `@exclusivity(unchecked)`, for the
/// reason given on `NGHTTP2Connection`'s.
final class NGHTTP2Stream {
    var id: Int32
    // Inbound header block. On the server these are moved into the request (and left nil or
    // empty) when the block is complete: the stream keeps no second reference to them.
    @exclusivity(unchecked) var method: String?
    /// Server: the method is HEAD (its response carries no body); known once the block is complete.
    var isHead = false
    /// Server: the `:path` up to its first `?`; `query` is what follows it (nil without a `?`).
    @exclusivity(unchecked) var path: String?
    @exclusivity(unchecked) var query: String?
    @exclusivity(unchecked) var authority: String?
    var status: Int?
    @exclusivity(unchecked) var headers = HTTPFields()
    /// Sum of (name + value + 32) over received fields; over the limit sets `headerListTooLarge`.
    var headerListSize = 0
    var headerListTooLarge = false
    var headersComplete = false
    // Inbound body.
    @exclusivity(unchecked) var inbound: InboundBody = .discarding
    /// The body so far while `inbound` is `.collecting`: held here, not in the enum's payload, so
    /// each DATA frame is appended in place (a payload bound out of a switch was a second reference,
    /// and every append copied the buffer first).
    @exclusivity(unchecked) var collectedBody = ByteBuffer()
    /// The request's `content-length` (0 when it gave none): room made for the body at its first
    /// DATA frame, not before (a stream that never sends its body holds no buffer).
    var declaredBodyLength = 0
    /// END_STREAM received (or the stream timed out waiting for it).
    var inboundEnded = false
    /// Bytes handed to a streaming reader that nghttp2 has not yet been told were consumed.
    var unconsumedBytes = 0
    var lastActivity: NIODeadline
    var timedOut = false
    /// nghttp2 closed the stream (or the connection went away); answers for it are dropped.
    var isClosed = false
    // Server: the request waiting for its collected body, and whether a response was submitted.
    @exclusivity(unchecked) var pendingDispatch: PendingDispatch?
    var responseStarted = false
    // Outbound body, when there is one.
    @exclusivity(unchecked) var outbound: OutboundBody?
    // Client: the caller waiting for the response, and the deadline timer.
    var exchange: ClientExchange?
    var deadline: Scheduled<Void>?

    init(id: Int32, now: NIODeadline) {
        self.id = id
        self.lastActivity = now
    }

    /// The received header fields, leaving none here (moved, not copied, into a request).
    func takeHeaders() -> HTTPFields {
        var taken = HTTPFields()
        swap(&taken, &self.headers)
        return taken
    }

    /// Fails whatever waits on this stream: the client caller, or a streaming reader.
    func fail(_ error: HTTP2ClientError) {
        self.deadline?.cancel()
        if let exchange, !exchange.finished {
            exchange.finished = true
            exchange.promise.fail(error)
        }
        if case .streaming(let feed) = self.inbound {
            feed.continuation.finish(throwing: error)
            self.inbound = .discarding
        }
        if case .pacedSink(let paced) = self.inbound {
            self.inbound = .discarding
            paced.abort()
        }
        if let waiter = self.outbound?.producerWaiting {
            self.outbound?.producerWaiting = nil
            waiter.fail(error)
        }
    }
}

/// A request whose route is known, waiting for the rest of its body to be collected.
///
/// A class: most streams have none, and destroying an empty optional reference costs less than
/// destroying an empty optional of this size.
final class PendingDispatch {
    let route: Router.Route
    let parameters: RouteParameters
    /// The request as its header block made it; its body is set when the body is complete.
    var request: HTTPRequest

    init(route: Router.Route, parameters: RouteParameters, request: HTTPRequest) {
        self.route = route
        self.parameters = parameters
        self.request = request
    }
}

/// A connection's open streams by id, kept in id order.
///
/// Each side opens its streams in increasing id order (RFC 9113 §5.1.1), so a new stream is
/// appended and a lookup is a binary search over the few hundred at most that are open: a
/// dictionary spent about 200 instructions hashing (SipHash) on each insert, lookup and removal.
struct StreamTable {
    /// The open streams, ids ascending.
    private(set) var all: [NGHTTP2Stream] = []

    var isEmpty: Bool { self.all.isEmpty }

    /// Where `id` is, or where it would be inserted.
    private func position(of id: Int32) -> (found: Bool, index: Int) {
        var low = 0
        var high = self.all.count
        while low < high {
            let middle = (low + high) / 2
            let middleID = self.all[middle].id
            if middleID < id {
                low = middle + 1
            } else if middleID > id {
                high = middle
            } else {
                return (true, middle)
            }
        }
        return (false, low)
    }

    subscript(id: Int32) -> NGHTTP2Stream? {
        let (found, index) = self.position(of: id)
        return found ? self.all[index] : nil
    }

    /// Adds `stream` (or replaces the one with its id).
    mutating func insert(_ stream: NGHTTP2Stream) {
        if let last = self.all.last, last.id >= stream.id {
            let (found, index) = self.position(of: stream.id)
            if found {
                self.all[index] = stream
            } else {
                self.all.insert(stream, at: index)
            }
        } else {
            self.all.append(stream)
        }
    }

    /// Removes and returns the stream with this id, if there is one.
    mutating func remove(_ id: Int32) -> NGHTTP2Stream? {
        let (found, index) = self.position(of: id)
        return found ? self.all.remove(at: index) : nil
    }

    /// Removes every stream and returns them.
    mutating func removeAll() -> [NGHTTP2Stream] {
        defer { self.all = [] }
        return self.all
    }
}
