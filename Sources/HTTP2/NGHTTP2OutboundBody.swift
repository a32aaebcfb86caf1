// A stream's outbound body: chunks buffered for nghttp2's data provider, with the producer's backpressure.
import CNghttp2
import NIOCore

extension NGHTTP2Connection {
    /// nghttp2 callback (inside mem_send): the next bytes of `streamID`'s body for a DATA frame,
    /// at most `destination.count`. A small frame's bytes are copied into `destination` (nghttp2's
    /// frame buffer). A frame of `noCopyThreshold` or more leaves them where they are
    /// (NGHTTP2_DATA_FLAG_NO_COPY): nghttp2 calls `sendData` for it, which writes them into the
    /// outgoing buffer, so they are copied once on their way to the socket instead of twice.
    func readOutbound(
        streamID: Int32, into destination: UnsafeMutableRawBufferPointer, flags: UnsafeMutablePointer<UInt32>
    ) -> Int {
        guard let stream = self.lookup(streamID), stream.outbound != nil else {
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        // `stream.outbound!` mutates the body in place (it is a struct stored in the stream).
        stream.outbound!.computeIfEmpty()
        let count = min(destination.count, stream.outbound!.bufferedBytes)
        if count == stream.outbound!.bufferedBytes && stream.outbound!.finished {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
        } else if count == 0 {
            stream.outbound!.deferred = true
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        guard count < Self.noCopyThreshold else {
            flags.pointee |= NGHTTP2_DATA_FLAG_NO_COPY.rawValue
            return count
        }
        stream.outbound!.copy(count, into: destination)
        self.producerMayResume(stream)
        return count
    }

    /// Wakes a producer paused on `stream` once its buffer is down to the low watermark.
    private func producerMayResume(_ stream: NGHTTP2Stream) {
        if stream.outbound!.bufferedBytes <= Self.outboundLowWatermark, let waiter = stream.outbound!.producerWaiting {
            stream.outbound!.producerWaiting = nil
            self.deferredWork.append { waiter.succeed() }
        }
    }

    /// nghttp2 callback (inside mem_send): a DATA frame whose payload `readOutbound` left in the
    /// stream's body. Appends the frame (header, padding if any, the bytes) to `writeBuffer`; once
    /// that holds `maxWriteSize`, answers NGHTTP2_ERR_PAUSE so that mem_send returns and the
    /// buffer is written before more frames are made.
    func sendData(
        streamID: Int32, header: UnsafeRawBufferPointer, length: Int, padding: Int
    ) -> Int32 {
        guard let stream = self.lookup(streamID), stream.outbound != nil, self.writeBuffer != nil,
            stream.outbound!.bufferedBytes >= length
        else {
            return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
        }
        self.writeBuffer!.writeBytes(header)
        if padding > 0 { self.writeBuffer!.writeInteger(UInt8(padding - 1)) }
        if length >= Self.gatherThreshold {
            // The write so far, then the payload's own slices; what follows goes in a new buffer.
            self.gatheredBytes += self.writeBuffer!.readableBytes + length
            self.gathered.append(self.writeBuffer!)
            self.writeBuffer = ByteBufferAllocator().buffer(capacity: 1024)
            stream.outbound!.slice(length, to: &self.gathered)
        } else {
            stream.outbound!.move(length, to: &self.writeBuffer!)
        }
        if padding > 1 { self.writeBuffer!.writeRepeatingByte(0, count: padding - 1) }
        self.producerMayResume(stream)
        return self.writeBuffer!.readableBytes + self.gatheredBytes >= Self.maxWriteSize
            ? NGHTTP2_ERR_PAUSE.rawValue : 0
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

    /// Completes once a pushed body's queued bytes are down to the low watermark (at once when they
    /// are); fails when the stream goes away first.
    func outboundDrained(streamID: Int32, on loop: any EventLoop) -> EventLoopFuture<Void> {
        guard let stream = self.lookup(streamID), !stream.isClosed, stream.outbound != nil else {
            return loop.makeFailedFuture(
                self.clientError(.streamReset, detail: "the stream closed while its body was being sent"))
        }
        if stream.outbound!.bufferedBytes <= Self.outboundLowWatermark { return loop.makeSucceededVoidFuture() }
        if let waiting = stream.outbound!.producerWaiting { return waiting.futureResult }
        let promise = loop.makePromise(of: Void.self)
        stream.outbound!.producerWaiting = promise
        return promise.futureResult
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

    /// Builds the nghttp2 data provider for a stream that has a body to send; returns the body a
    /// producer task must pull, if any (a computed body is pulled by `readOutbound` instead).
    func attachBody(_ body: HTTPBody, to stream: NGHTTP2Stream) -> HTTPBodyStream? {
        switch body {
        case .buffer(let buffer):
            stream.outbound = OutboundBody(buffer: buffer, finished: true)
            return nil
        case .stream(let source):
            if let computing = source.computing {
                stream.outbound = OutboundBody(buffer: nil, finished: false, compute: computing())
                return nil
            }
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
    /// A computed body's chunk function (`HTTPBodyStream.init(computing:)`), until it returns nil.
    private var compute: (() -> ByteBuffer?)?

    init(buffer: ByteBuffer?, finished: Bool, compute: (() -> ByteBuffer?)? = nil) {
        self.later = nil
        self.producerWaiting = nil
        self.current = buffer
        self.bufferedBytes = buffer?.readableBytes ?? 0
        self.finished = finished
        self.compute = compute
    }

    /// A computed body with nothing buffered computes its next chunk; at its end it is finished.
    /// Only when empty: the chunk before is out of its buffer by then, so the chunk function can
    /// reuse that buffer's memory.
    mutating func computeIfEmpty() {
        while self.bufferedBytes == 0, let compute = self.compute {
            guard let chunk = compute() else {
                self.compute = nil
                self.finished = true
                return
            }
            self.append(chunk)
        }
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

    /// Hands the next `count` bytes (at most what is buffered) to `take` chunk by chunk, in order:
    /// each call gets a chunk, how many of its bytes to consume from its reader index (which `take`
    /// must do), and how many bytes the calls before it took.
    private mutating func consume(_ count: Int, _ take: (inout ByteBuffer, _ length: Int, _ offset: Int) -> Void) {
        var taken = 0
        while taken < count, var chunk = self.current {
            self.current = nil
            let length = min(chunk.readableBytes, count - taken)
            take(&chunk, length, taken)
            taken += length
            if chunk.readableBytes > 0 {
                self.current = chunk
            } else if let next = self.later?.popFirst() {
                self.current = next
            }
        }
        self.bufferedBytes -= taken
    }

    /// Copies the next `count` bytes (at most what is buffered) to the start of `destination`.
    mutating func copy(_ count: Int, into destination: UnsafeMutableRawBufferPointer) {
        consume(count) { chunk, length, offset in
            chunk.withUnsafeReadableBytes { bytes in
                UnsafeMutableRawBufferPointer(rebasing: destination[offset..<(offset + length)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<length]))
            }
            chunk.moveReaderIndex(forwardBy: length)
        }
    }

    /// Hands the next `count` bytes (at most what is buffered) to `out` as slices of the chunks
    /// that hold them, in order: no byte is copied.
    mutating func slice(_ count: Int, to out: inout [ByteBuffer]) {
        consume(count) { chunk, length, _ in out.append(chunk.readSlice(length: length)!) }
    }

    /// Moves the next `count` bytes (at most what is buffered) to the end of `out`, in order.
    mutating func move(_ count: Int, to out: inout ByteBuffer) {
        consume(count) { chunk, length, _ in
            chunk.withUnsafeReadableBytes { bytes in
                _ = out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[0..<length]))
            }
            chunk.moveReaderIndex(forwardBy: length)
        }
    }
}
