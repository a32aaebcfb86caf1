// A stream's outbound body: chunks buffered for nghttp2's data provider, with the producer's backpressure.
import CNghttp2
import NIOCore

extension NGHTTP2Connection {
    /// nghttp2 callback (inside mem_send): the next bytes of `streamID`'s body for a DATA frame.
    func readOutbound(
        streamID: Int32,
        into destination: UnsafeMutableRawBufferPointer,
        flags: UnsafeMutablePointer<UInt32>
    ) -> Int {
        guard let stream = self.lookup(streamID), stream.outbound != nil else {
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        // `stream.outbound!` mutates the body in place (it is a struct stored in the stream).
        let copied = stream.outbound!.read(into: destination)
        if stream.outbound!.bufferedBytes <= Self.outboundLowWatermark, let waiter = stream.outbound!.producerWaiting {
            stream.outbound!.producerWaiting = nil
            self.deferredWork.append { waiter.succeed() }
        }
        if stream.outbound!.bufferedBytes == 0 && stream.outbound!.finished {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return copied
        }
        if copied == 0 {
            stream.outbound!.deferred = true
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        return copied
    }

    /// Queues `chunk` on a stream's outbound body; the future completes when the producer may send more.
    func appendOutbound(streamID: Int32, _ chunk: ByteBuffer, on loop: any EventLoop) -> EventLoopFuture<Void> {
        guard let session, let stream = self.lookup(streamID), stream.outbound != nil else {
            return loop.makeFailedFuture(
                self.clientError(.streamReset, detail: "the stream closed while its body was being sent")
            )
        }
        stream.outbound!.append(chunk)
        if stream.outbound!.deferred {
            stream.outbound!.deferred = false
            session.resumeData(streamID: streamID)
        }
        self.scheduleFlush()
        if stream.outbound!.bufferedBytes >= Self.outboundHighWatermark {
            let promise = loop.makePromise(of: Void.self)
            stream.outbound!.producerWaiting = promise
            return promise.futureResult
        }
        return loop.makeSucceededVoidFuture()
    }

    /// Queues `chunk` on a pushed body (`startRequest(pushedBody:)`) and writes it now, unless a read
    /// or a session call is in progress (they flush when they end). Returns the bytes not yet handed
    /// to nghttp2 (the peer's flow-control window or the socket is full), or nil once the stream is gone.
    func pushOutbound(streamID: Int32, _ chunk: ByteBuffer) -> Int? {
        guard let session = self.lifecycle.liveSession, let stream = self.lookup(streamID), !stream.isClosed,
            stream.outbound != nil
        else { return nil }
        stream.outbound!.append(chunk)
        if stream.outbound!.deferred {
            stream.outbound!.deferred = false
            session.resumeData(streamID: streamID)
        }
        if !self.inReadBurst && !self.inSession && !self.flushing {
            self.flushNow()
        } else {
            self.scheduleFlush()
        }
        return stream.outbound?.bufferedBytes
    }

    /// Marks a stream's outbound body complete; nghttp2 sends END_STREAM after the last byte.
    func finishOutbound(streamID: Int32) {
        guard let session, let stream = self.lookup(streamID), stream.outbound != nil else { return }
        stream.outbound!.finished = true
        if stream.outbound!.deferred {
            stream.outbound!.deferred = false
            session.resumeData(streamID: streamID)
        }
        self.scheduleFlush()
    }

    /// The body producer failed: the peer must not take a truncated body for a complete one.
    func abortOutbound(streamID: Int32) {
        guard let stream = self.lookup(streamID) else { return }
        self.resetStream(stream, code: NGHTTP2_INTERNAL_ERROR.rawValue)
        self.scheduleFlush()
    }

    func resetStream(_ stream: NGHTTP2Stream, code: UInt32) {
        guard let session else { return }
        session.submitReset(streamID: stream.id, code: code)
    }

    /// Pulls `body` from a task, one chunk at a time, pausing while the stream's buffer is full.
    func startProducer(streamID: Int32, body: HTTPBodyStream) {
        guard let loop = self.context?.eventLoop else { return }
        let loopBound = NIOLoopBound(self, eventLoop: loop)
        Task {
            do {
                for try await chunk in body {
                    try await loop.flatSubmit { loopBound.value.appendOutbound(streamID: streamID, chunk, on: loop) }
                        .get()
                }
                loop.execute { loopBound.value.finishOutbound(streamID: streamID) }
            } catch {
                loop.execute { loopBound.value.abortOutbound(streamID: streamID) }
            }
        }
    }

    /// Builds the nghttp2 data provider for a stream that has a body to send.
    func attachBody(_ body: HTTPBody, to stream: NGHTTP2Stream) -> HTTPBodyStream? {
        switch body {
        case .buffer(let buffer):
            stream.outbound = OutboundBody(buffer: buffer, finished: true)
            return nil
        case .stream(let source):
            stream.outbound = OutboundBody(buffer: nil, finished: false)
            return source
        }
    }
}

/// A stream's outbound body: chunks waiting for nghttp2 to pull them into DATA frames.
///
/// A struct stored in its stream (mutated in place), so a response with a body costs no extra object.
struct OutboundBody {
    /// The chunk nghttp2 reads next; `later` holds the rest (allocated only for streamed bodies).
    private var current: ByteBuffer?
    private var later: CircularBuffer<ByteBuffer>?
    private(set) var bufferedBytes: Int
    var finished: Bool
    /// nghttp2 was told NGHTTP2_ERR_DEFERRED; `nghttp2_session_resume_data` must wake it.
    var deferred = false
    /// A paused producer, resumed when `bufferedBytes` falls to the low watermark.
    var producerWaiting: EventLoopPromise<Void>?

    init(buffer: ByteBuffer?, finished: Bool) {
        self.later = nil
        self.producerWaiting = nil
        self.current = buffer
        self.bufferedBytes = buffer?.readableBytes ?? 0
        self.finished = finished
    }

    mutating func append(_ chunk: ByteBuffer) {
        self.bufferedBytes += chunk.readableBytes
        if self.current == nil {
            self.current = chunk
        } else {
            if self.later == nil { self.later = CircularBuffer(initialCapacity: 4) }
            self.later!.append(chunk)
        }
    }

    /// Copies up to `destination.count` bytes out, in order; returns how many.
    mutating func read(into destination: UnsafeMutableRawBufferPointer) -> Int {
        var copied = 0
        while copied < destination.count, var chunk = self.current {
            self.current = nil
            let count = min(chunk.readableBytes, destination.count - copied)
            chunk.withUnsafeReadableBytes { bytes in
                UnsafeMutableRawBufferPointer(rebasing: destination[copied..<(copied + count)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<count]))
            }
            chunk.moveReaderIndex(forwardBy: count)
            copied += count
            if chunk.readableBytes > 0 {
                self.current = chunk
            } else if let next = self.later?.popFirst() {
                self.current = next
            }
        }
        self.bufferedBytes -= copied
        return copied
    }
}
