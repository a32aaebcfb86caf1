// A sink route's sink that passes its bytes on to something slower than the network, paced by it.
public import NIOCore

/// A `RequestBodySink` whose bytes go on to something that may be slower than the network (a
/// socket another process reads, a disk). Over HTTP/2 the connection returns the peer's
/// flow-control credit for each piece only when the sink gives it back (`RequestBodyCredit`), so
/// at most one stream window waits in the sink; it answers once its work is done, not when the
/// body ends; and it learns when the stream closes before its end. Called only on the
/// connection's event loop. (Over HTTP/1.1 the body is collected first and `receive(_:)` and
/// `finish()` are called, as for any sink.)
public protocol PacedRequestBodySink: RequestBodySink {
    /// Takes the next bytes (a slice of what the connection read: not copied). Give `credit`
    /// back, once, when they have gone on. Throwing ends the request with the error as its answer.
    func receive(_ bytes: ByteBuffer, credit: RequestBodyCredit) throws
    /// The body ended: answer through `responder` once everything has gone on.
    func finish(responder: HTTPResponder)
    /// The stream closed before the body's end (the peer reset it, or the connection went away).
    func abort()
}

/// Flow-control credit for bytes a `PacedRequestBodySink` took: `give()` lets the peer send as
/// many more. From the connection's event loop (e.g. a write's completion on a channel of that
/// loop) it costs no hop; from elsewhere it hops there.
public struct RequestBodyCredit: Sendable {
    let connection: NIOLoopBound<NGHTTP2Connection>
    let streamID: Int32
    /// How many bytes this credit is for.
    public let count: Int

    public func give() {
        let (connection, streamID, count) = (self.connection, self.streamID, self.count)
        if connection.eventLoop.inEventLoop {
            connection.value.pacedSinkConsumed(streamID: streamID, count)
        } else {
            connection.eventLoop.execute { connection.value.pacedSinkConsumed(streamID: streamID, count) }
        }
    }
}
