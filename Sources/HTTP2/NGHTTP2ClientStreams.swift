// The client side of a connection: requests submitted for callers, their responses handed back.
import CNghttp2
import NIOCore

extension NGHTTP2Connection {
    /// Submits a request; the future succeeds with the response (body collected, or streamed when
    /// `streamResponse`), or fails with an `HTTP2ClientError`.
    ///
    /// With `flushAtOnce` the request is written before this returns (unless a read or a session
    /// call is in progress, which flush when they end) rather than in a task queued on the loop:
    /// a caller that goes on to block the loop (an fsync) must not hold its request back.
    ///
    /// With `pushedBody` the request's own body is ignored: the body is what the caller later
    /// passes to `pushOutbound`, and it has no end (a stream of messages, with no deadline).
    func startRequest(
        _ request: HTTPRequest,
        streamResponse: Bool,
        deadline: NIODeadline?,
        cancellation: CallCancellation,
        on loop: any EventLoop,
        flushAtOnce: Bool = false,
        pushedBody: Bool = false
    ) -> EventLoopFuture<HTTPResponse> {
        guard case .client(let client) = self.role, self.context != nil else {
            return loop.makeFailedFuture(self.clientError(.connectionClosed, detail: "the connection is closed"))
        }
        guard !cancellation.isCancelled else {
            return loop.makeFailedFuture(
                self.clientError(.cancelled, detail: "the call was cancelled before it was sent"))
        }
        guard let session = self.lifecycle.liveSession, !self.lifecycle.peerSentGoaway else {
            return loop.makeFailedFuture(
                self.clientError(
                    self.lifecycle.peerSentGoaway ? .goaway : .connectionClosed,
                    detail: "the connection is closing; the request was not sent"
                )
            )
        }
        let pseudo: [(String, String)] = [
            (":method", request.method.rawValue),
            (":scheme", "http"),
            (":authority", request.authority ?? client.peer),
            (":path", request.target.isEmpty ? "/" : request.target),
        ]
        let stream = NGHTTP2Stream(id: 0, now: .now())
        let producerSource: HTTPBodyStream?
        let hasBody: Bool
        switch request.body {
        case _ where pushedBody:
            hasBody = true
            producerSource = nil
            stream.outbound = OutboundBody(buffer: nil, finished: false)
        case .buffer(let buffer) where buffer.readableBytes == 0:
            hasBody = false
            producerSource = nil
        default:
            hasBody = true
            producerSource = self.attachBody(request.body, to: stream)
        }
        let id = session.submitRequest(
            pseudo: pseudo, headers: request.headers, body: pushedBody ? nil : request.body, hasBody: hasBody)
        guard id > 0 else {
            return loop.makeFailedFuture(
                self.clientError(
                    .connectionClosed,
                    detail: "nghttp2 refused the request: \(NGHTTP2Session.describe(error: id))"
                )
            )
        }
        stream.id = id
        cancellation.streamID = id
        stream.inbound = streamResponse ? .discarding : .collecting(limit: client.maxResponseBodySize)
        let exchange = ClientExchange(promise: loop.makePromise(), streamResponse: streamResponse)
        stream.exchange = exchange
        self.streams.insert(stream)
        let loopBound = NIOLoopBound(self, eventLoop: loop)
        if let deadline {
            stream.deadline = loop.scheduleTask(deadline: deadline) {
                loopBound.value.deadlinePassed(streamID: id)
            }
        }
        if let producerSource {
            self.startProducer(streamID: id, body: producerSource)
        }
        if flushAtOnce && !self.inReadBurst && !self.inSession && !self.flushing {
            self.flushNow()
        } else {
            self.scheduleFlush()
        }
        return exchange.promise.futureResult
    }

    func responseHeadersComplete(_ stream: NGHTTP2Stream) {
        guard let exchange = stream.exchange else { return }
        if stream.headerListTooLarge {
            let error = self.clientError(.protocolError, detail: "the response header list exceeds maxHeaderListSize")
            self.resetStream(stream, code: NGHTTP2_CANCEL.rawValue)
            self.deferredWork.append { stream.fail(error) }
            return
        }
        guard exchange.streamResponse else {
            if stream.inboundEnded {
                self.inboundEnded(stream)
            }
            return
        }
        let body = self.makeInboundStream(stream)
        if stream.inboundEnded, case .streaming(let feed) = stream.inbound {
            feed.continuation.finish()
        }
        exchange.finished = true
        let response = HTTPResponse(status: stream.status ?? 0, headers: stream.headers, body: .stream(body))
        self.deferredWork.append { exchange.promise.succeed(response) }
    }

    /// The calling task was cancelled: reset the stream so the peer stops working on it.
    func cancelRequest(_ cancellation: CallCancellation) {
        guard let streamID = cancellation.cancel(), let stream = self.lookup(streamID) else { return }
        let error = self.clientError(.cancelled, detail: "the calling task was cancelled")
        self.resetStream(stream, code: NGHTTP2_CANCEL.rawValue)
        stream.fail(error)
        self.scheduleFlush()
    }

    func deadlinePassed(streamID: Int32) {
        guard let stream = self.lookup(streamID) else { return }
        let error = self.clientError(
            .deadlineExceeded, detail: "the call's deadline passed before the exchange completed")
        self.resetStream(stream, code: NGHTTP2_CANCEL.rawValue)
        stream.fail(error)
        self.scheduleFlush()
    }
}

/// A client call waiting for its response.
final class ClientExchange {
    let promise: EventLoopPromise<HTTPResponse>
    let streamResponse: Bool
    /// The promise was completed (response delivered or error).
    var finished = false

    init(promise: EventLoopPromise<HTTPResponse>, streamResponse: Bool) {
        self.promise = promise
        self.streamResponse = streamResponse
    }
}
