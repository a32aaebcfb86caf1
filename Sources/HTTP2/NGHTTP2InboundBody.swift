// Where a stream's inbound DATA goes: collected, streamed to a reader, handed to a sink or dropped.
import CNghttp2
import NIOCore

extension NGHTTP2Connection {
    /// nghttp2 callback (inside mem_recv): a DATA frame's payload for `streamID`.
    func onDataChunk(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard let stream = self.lookup(streamID) else {
            // Data for a stream we already forgot: return the credit at once.
            self.consumeLater(streamID: streamID, data.count)
            return 0
        }
        stream.lastActivity = .now()
        switch stream.inbound {
        case .collecting(let limit):
            if stream.collectedBody.readableBytes + data.count > limit {
                stream.inbound = .discarding
                stream.collectedBody = ByteBuffer()
                self.consumeLater(streamID: streamID, data.count)
                self.inboundBodyTooLarge(stream, limit: limit)
            } else {
                if stream.collectedBody.capacity == 0 {
                    // Room for the whole body when its length was declared (up to 64 KiB): no
                    // growing as it arrives.
                    stream.collectedBody.reserveCapacity(min(max(stream.declaredBodyLength, data.count), 64 << 10))
                }
                stream.collectedBody.writeBytes(data)
                self.consumeLater(streamID: streamID, data.count)
            }
        case .streaming(let feed):
            stream.unconsumedBytes += data.count
            feed.continuation.yield(ByteBuffer(bytes: data))
        case .discarding:
            self.consumeLater(streamID: streamID, data.count)
        case .pacedSink(let paced):
            guard let loop = self.context?.eventLoop else { return 0 }
            // Credited when the sink says its bytes went on (a closed stream returns the rest).
            stream.unconsumedBytes += data.count
            let credit = RequestBodyCredit(
                connection: NIOLoopBound(self, eventLoop: loop), streamID: streamID, count: data.count)
            do {
                try paced.receive(self.slice(of: data) ?? ByteBuffer(bytes: data), credit: credit)
            } catch {
                stream.inbound = .discarding
                if !stream.responseStarted { self.submitResponse(stream, Router.errorResponse(error)) }
            }
        case .sink(let sink):
            do {
                try sink.receive(data)
            } catch {
                stream.inbound = .discarding
                if !stream.responseStarted { self.submitResponse(stream, Router.errorResponse(error)) }
            }
            self.consumeLater(streamID: streamID, data.count)
        }
        return 0
    }

    /// `data` as a slice of the buffer mem_recv is reading, when it lies in it (nghttp2 hands DATA
    /// payloads over in place): the bytes are not copied.
    func slice(of data: UnsafeRawBufferPointer) -> ByteBuffer? {
        guard let receiving, let start = data.baseAddress else { return nil }
        let offset = receiving.withUnsafeReadableBytes { bytes -> Int? in
            guard let base = bytes.baseAddress, start >= base, start + data.count <= base + bytes.count else {
                return nil
            }
            return start - base
        }
        return offset.flatMap { receiving.getSlice(at: receiving.readerIndex + $0, length: data.count) }
    }

    /// A paced sink's credit: inside a session call it waits until the call returns.
    func pacedSinkConsumed(streamID: Int32, _ count: Int) {
        if self.inSession {
            self.deferredWork.append { [weak self] in self?.inboundConsumed(streamID: streamID, count) }
        } else {
            self.inboundConsumed(streamID: streamID, count)
        }
    }

    func consumeLater(streamID: Int32, _ count: Int) {
        guard count > 0 else { return }
        self.pendingConsumption.append((streamID, count))
    }

    func inboundEnded(_ stream: NGHTTP2Stream) {
        stream.inboundEnded = true
        switch stream.inbound {
        case .collecting:
            let body = stream.collectedBody
            stream.collectedBody = ByteBuffer()
            switch self.role {
            case .server:
                if let pending = stream.pendingDispatch.take() {
                    pending.request.body = .buffer(body)
                    self.dispatch(stream, pending.route, pending.parameters, pending.request)
                }
            case .client:
                if let exchange = stream.exchange, !exchange.finished {
                    exchange.finished = true
                    stream.deadline?.cancel()
                    let response = HTTPResponse(
                        status: stream.status ?? 0, headers: stream.headers, body: .buffer(body))
                    self.deferredWork.append { exchange.promise.succeed(response) }
                }
            }
            stream.inbound = .discarding
        case .streaming(let feed):
            feed.continuation.finish()
            stream.inbound = .discarding
        case .sink(let sink):
            stream.inbound = .discarding
            if !stream.responseStarted {
                self.submitResponse(stream, sink.finish())
                self.scheduleFlush()
            }
        case .pacedSink(let paced):
            stream.inbound = .discarding
            guard !stream.responseStarted, let loop = self.context?.eventLoop else { return }
            let connection = NIOLoopBound(self, eventLoop: loop)
            let boundStream = NIOLoopBound(stream, eventLoop: loop)
            paced.finish(
                responder: HTTPResponder { response in
                    if loop.inEventLoop {
                        connection.value.pacedSinkResponded(stream: boundStream.value, response)
                    } else {
                        loop.execute { connection.value.pacedSinkResponded(stream: boundStream.value, response) }
                    }
                })
        case .discarding:
            break
        }
    }

    /// A paced sink's answer; the stream may have been reset or closed meanwhile.
    private func pacedSinkResponded(stream: NGHTTP2Stream, _ response: HTTPResponse) {
        guard !stream.isClosed, !stream.responseStarted else { return }
        self.submitResponse(stream, response)
        self.scheduleFlush()
    }

    /// Starts a streamed inbound body whose reader reports consumption back to this loop.
    func makeInboundStream(_ stream: NGHTTP2Stream) -> HTTPBodyStream {
        let (chunks, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        let loop = self.context!.eventLoop
        let loopBound = NIOLoopBound(self, eventLoop: loop)
        let id = stream.id
        stream.inbound = .streaming(InboundStreamFeed(continuation))
        continuation.onTermination = { termination in
            if case .cancelled = termination {
                loop.execute { loopBound.value.inboundReaderGone(streamID: id) }
            }
        }
        return HTTPBodyStream(
            InboundBodySequence(
                chunks: chunks,
                reportConsumed: { count in
                    loop.execute { loopBound.value.inboundConsumed(streamID: id, count) }
                },
                reportThreshold: Self.consumeReportThreshold
            )
        )
    }

    func inboundConsumed(streamID: Int32, _ count: Int) {
        // A stream that already closed returned its unconsumed bytes then; nothing more to do.
        guard let session, let stream = self.lookup(streamID) else { return }
        let credited = min(count, stream.unconsumedBytes)
        stream.unconsumedBytes -= credited
        session.consume(streamID: streamID, credited)
        self.scheduleFlush()
    }

    /// The reader dropped the body: return all credit and drop further DATA; a client also cancels.
    func inboundReaderGone(streamID: Int32) {
        guard let session, let stream = self.lookup(streamID) else { return }
        stream.inbound = .discarding
        if stream.unconsumedBytes > 0 {
            session.consume(streamID: streamID, stream.unconsumedBytes)
            stream.unconsumedBytes = 0
        }
        if case .client = self.role, !stream.inboundEnded {
            session.submitReset(streamID: streamID, code: NGHTTP2_CANCEL.rawValue)
        }
        self.scheduleFlush()
    }

    func inboundBodyTooLarge(_ stream: NGHTTP2Stream, limit: Int) {
        switch self.role {
        case .server:
            stream.pendingDispatch = nil
            if !stream.responseStarted {
                self.submitResponse(stream, HTTPResponse(error: .payloadTooLarge(limit: limit)))
            }
        case .client:
            let error = self.clientError(
                .bodyTooLarge,
                detail: "the response body exceeds the limit of \(limit) bytes (maxResponseBodySize)"
            )
            self.resetStream(stream, code: NGHTTP2_CANCEL.rawValue)
            self.deferredWork.append { stream.fail(error) }
        }
    }
}

/// Where a stream's inbound DATA goes.
enum InboundBody {
    /// Appended to the stream's `collectedBody` (and credited at once) until END_STREAM; over
    /// `limit` is an error.
    case collecting(limit: Int)
    /// Yielded to a reader; credited as the reader consumes.
    case streaming(InboundStreamFeed)
    /// Dropped and credited at once.
    case discarding
    /// Handed to a sink route's sink as it arrives, inline, and credited at once.
    case sink(any RequestBodySink)
    /// Handed to a paced sink as slices of the read, and credited when the sink gives the credit
    /// back (`PacedRequestBodySink`); which of the two a sink is, is decided once, when it opens.
    case pacedSink(any PacedRequestBodySink)
}

/// The continuation that feeds a streamed inbound body's reader, in a class of our own.
///
/// The continuation's type comes from the Concurrency library, whose types' layouts are not known
/// when our code is compiled: held directly in `InboundBody`, it made every copy, switch and
/// destroy of every stream's `inbound` go through runtime metadata (about 300 instructions per
/// request, callgrind), even for the requests that never stream a body.
final class InboundStreamFeed {
    let continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation

    init(_ continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation) {
        self.continuation = continuation
    }
}
