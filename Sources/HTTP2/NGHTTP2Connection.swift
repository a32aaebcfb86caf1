// The channel handler that owns one nghttp2 session: inbound bytes go to mem_recv, mem_send output goes out.
import CNghttp2
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the server side of a session needs: the routes and the limits.
struct ServerSessionSettings: Sendable {
    var router: Router
    var maxConcurrentStreams: Int
    var maxHeaderListSize: Int
    var maxRequestBodySize: Int
    var requestTimeout: TimeAmount
    var connectionSetupTimeout: TimeAmount
    var initialStreamWindowSize: Int
    var connectionWindowSize: Int
    var runsHandlersOnEventLoop: Bool
    /// SETTINGS_MAX_FRAME_SIZE: the largest frame the client may send.
    var maxFrameSize: Int = 16 << 10
}

/// What the client side of a session needs.
struct ClientSessionSettings: Sendable {
    var peer: String
    var maxResponseBodySize: Int
    var maxHeaderListSize: Int
    var initialStreamWindowSize: Int
    var connectionWindowSize: Int
    /// PING the peer every `interval`; close the connection when an answer takes longer than `timeout`.
    var keepalive: (interval: TimeAmount, timeout: TimeAmount)?
    /// Called on the event loop when the connection becomes unusable for new requests (GOAWAY received
    /// or the channel closed), before any in-flight call learns of it, so a retry opens a new connection.
    var onUnusable: @Sendable () -> Void
    /// Called on the event loop for each answer to one of our keepalive PINGs.
    var onPingAnswered: @Sendable () -> Void = {}
}

/// One HTTP/2 connection, server or client side, driven by libnghttp2.
///
/// Duties, in order, for every event on the event loop:
/// 1. Feed inbound bytes to `nghttp2_session_mem_recv`. Callbacks only record what happened (submit_*
///    is allowed in them); work that could re-enter the session (flushing, completing promises) is
///    queued in `deferredWork` and run after `mem_recv` returns.
/// 2. On read-complete (or when a handler's response arrives) drain `nghttp2_session_mem_send` into one
///    buffer and write it, but only while the channel is writable: that is the outbound backpressure.
/// 3. Inbound DATA is returned to the peer as flow-control credit (`nghttp2_session_consume`) only once
///    the body's reader took it, or at once when the body is collected or discarded.
/// 4. When nghttp2 wants neither to read nor to write (GOAWAY exchanged, streams done), close.
/// 5. Leave every decision about the connection's life (start the session, read, PING, GOAWAY,
///    close) to `lifecycle` and do what its actions say.
///
/// The session's C calls are in `NGHTTP2Session`; the server's and the client's streams, and the
/// inbound and outbound bodies, are extensions in files of their own.
final class NGHTTP2Connection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Role {
        case server(ServerSessionSettings)
        case client(ClientSessionSettings)
    }

    /// How many outbound body bytes a stream may hold before its producer is paused.
    static let outboundHighWatermark = 1 << 20
    /// The level below which a paused producer resumes.
    static let outboundLowWatermark = 256 << 10
    /// The most mem_send output gathered into one write.
    static let maxWriteSize = 256 << 10
    /// DATA frames from this size on leave their payload in the body until `sendData` writes it out;
    /// smaller ones are copied into nghttp2's frame buffer (one callback less per frame).
    static let noCopyThreshold = 4 << 10
    /// DATA frames from this size on are written as their body's own buffers (a gathered write,
    /// `gathered`) instead of being copied into the write buffer: a bulk stream (a migration's)
    /// is copied once on its way through, into the socket.
    static let gatherThreshold = 32 << 10
    /// Inbound body bytes a reader takes before consumption is reported back to the event loop.
    static let consumeReportThreshold = 64 << 10

    let role: Role
    let isServer: Bool
    let maxHeaderListSize: Int
    /// Server only: the collect limit for request bodies.
    let maxRequestBodySize: Int
    /// Server only: the routes (empty for a client).
    let router: Router
    // The properties marked `@exclusivity(unchecked)` are changed on every request through calls
    // (a dictionary insert, an append), where Swift checks at run time that no other access to
    // them overlaps: about 100 instructions each, some 20 per request (callgrind,
    // scripts/callgrind-http2.sh). They are touched only on the connection's event loop, and only
    // by the short, non-nesting accesses in this handler and its extensions.
    /// Idle, open, quiescing, closing, closed: the connection's life, and the session while it has one.
    @exclusivity(unchecked) var lifecycle = NGHTTP2ConnectionStateMachine()
    var context: ChannelHandlerContext?
    /// Every open stream, from its first HEADERS until nghttp2 closes it. Stream ids are never reused.
    @exclusivity(unchecked) var streams = StreamTable()
    /// The stream `lookup` found last; cleared whenever a stream leaves `streams`.
    @exclusivity(unchecked) var lastStream: NGHTTP2Stream?
    /// Work that must run after the current mem_recv/mem_send call returns (see duty 1).
    @exclusivity(unchecked) var deferredWork: [() -> Void] = []
    /// Received DATA bytes to report consumed once the current session call returns (before
    /// `deferredWork`): a pair per DATA frame, where a closure per frame cost an allocation.
    @exclusivity(unchecked) var pendingConsumption: [(streamID: Int32, count: Int)] = []
    // Where the event loop is in this connection's calls (not its lifecycle: see the state machine).
    /// True while inside mem_recv or mem_send: the session must not be re-entered.
    var inSession = false
    /// True between channelRead and channelReadComplete: flushes wait for read-complete.
    var inReadBurst = false
    /// A flush is queued for later in this event-loop tick.
    var flushScheduled = false
    /// True while `flushNow` runs: work it runs (deferred promise completions) must not flush again
    /// inside it, or newer frames would be written before the ones it is about to write.
    var flushing = false
    /// The capacity to allocate for the next write: about the size of the last one.
    var writeSizeHint = 16 << 10
    /// The last buffer written, reused for the next write when the socket no longer holds it.
    @exclusivity(unchecked) var spareWriteBuffer: ByteBuffer?
    /// The write being gathered during `flushNow` (nil otherwise): what mem_send returns, and the
    /// DATA frames `sendData` appends.
    @exclusivity(unchecked) var writeBuffer: ByteBuffer?
    /// Buffers of the write being gathered that go out before `writeBuffer`, in order: the write
    /// buffer as it stood before a large DATA frame's payload, then that payload's own slices.
    @exclusivity(unchecked) var gathered: [ByteBuffer] = []
    /// The bytes in `gathered`.
    @exclusivity(unchecked) var gatheredBytes = 0
    /// Server: the request-timeout sweep; client: the keepalive PINGs.
    var timeoutSweep: RepeatedTask?
    /// The bytes `mem_recv` is reading (nil otherwise): DATA for a paced sink is sliced out of
    /// them rather than copied.
    var receiving: ByteBuffer?
    /// Async handler calls dispatched inside `mem_recv`, run once it returns.
    @exclusivity(unchecked) var pendingCalls: [PendingCall?] = []
    /// How many calls the last `runPendingCalls` took: the capacity reserved for the next burst's.
    var lastPendingCallCount = 0
    /// The last `:authority` received, and its bytes (see `authority(_:)`).
    var lastAuthority = ""
    var lastAuthorityBytes: [UInt8] = []
    /// Where handler tasks start: this connection's event loop, or `nil` for the global executor.
    var handlerExecutor: EventLoopTaskExecutor?

    init(role: Role) {
        self.role = role
        // Copied out of `role` once: binding the enum payload on every callback would retain the router.
        switch role {
        case .server(let server):
            self.isServer = true
            self.maxHeaderListSize = server.maxHeaderListSize
            self.maxRequestBodySize = server.maxRequestBodySize
            self.router = server.router
        case .client(let client):
            self.isServer = false
            self.maxHeaderListSize = client.maxHeaderListSize
            self.maxRequestBodySize = 0
            self.router = Router()
        }
    }

    deinit {
        // Only when the handler never left a pipeline: handlerRemoved deletes the session otherwise.
        self.lifecycle.session?.delete()
    }

    /// The session, from its start until the handler is removed (also while closing).
    var session: NGHTTP2Session? { self.lifecycle.session }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if case .server(let server) = self.role, server.runsHandlersOnEventLoop {
            self.handlerExecutor = EventLoopTaskExecutor(eventLoop: context.eventLoop)
        }
        // A protocol sniffer adds this handler after the first bytes arrived: already active.
        if context.channel.isActive {
            self.channelBecameActive(context: context)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.channelBecameActive(context: context)
        context.fireChannelActive()
    }

    private func channelBecameActive(context: ChannelHandlerContext) {
        switch self.lifecycle.channelActive() {
        case .startSession:
            self.startSession(context: context)
        case .none:
            break
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.failEverything(reason: .connectionClosed)
        self.timeoutSweep?.cancel()
        self.timeoutSweep = nil
        switch self.lifecycle.handlerRemoved() {
        case .deleteSession(let session):
            session.delete()
        case .none:
            break
        }
        self.context = nil
    }

    /// Client: succeeds once the peer's SETTINGS arrived (the connection is ready for requests).
    func peerSettingsReceived(on loop: any EventLoop) -> EventLoopFuture<Void> {
        if case .server = self.role { return loop.makeSucceededVoidFuture() }
        switch self.lifecycle.peerSettingsWait {
        case .ready:
            return loop.makeSucceededVoidFuture()
        case .wait(let ready):
            return ready
        case .failed:
            return loop.makeFailedFuture(
                self.clientError(.connectionClosed, detail: "the connection closed during the HTTP/2 handshake")
            )
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .client(let client) = self.role {
            client.onUnusable()
        }
        self.failEverything(reason: .connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A socket error ends the connection; streams learn it as a closed connection.
        if case .client(let client) = self.role {
            client.onUnusable()
        }
        self.failEverything(reason: .connectionClosed)
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            self.initiateGracefulShutdown()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        // No session reads before it starts or once the connection is closing: the bytes are dropped.
        guard case .receive(let session) = self.lifecycle.channelRead() else { return }
        self.inReadBurst = true
        self.inSession = true
        self.receiving = buffer
        let result = session.receive(buffer)
        self.receiving = nil
        self.inSession = false
        self.runDeferredWork()
        self.runPendingCalls()
        if result < 0 {
            // Fatal for the connection (bad preface, flooding, callback failure): nghttp2 may have
            // queued a GOAWAY; send it and close. Other connections are unaffected.
            self.flushNow()
            self.closeConnection()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.inReadBurst = false
        self.flushNow()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.flushNow()
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Session lifecycle

    private func startSession(context: ChannelHandlerContext) {
        let userData = Unmanaged.passUnretained(self).toOpaque()
        let made: NGHTTP2Session?
        switch self.role {
        case .server(let server): made = NGHTTP2Session(server: server, userData: userData)
        case .client(let client): made = NGHTTP2Session(client: client, userData: userData)
        }
        guard let session = made else {
            self.lifecycle.sessionFailed()
            context.close(promise: nil)
            return
        }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        switch self.role {
        case .server(let server):
            self.lifecycle.sessionStarted(session, handshake: .awaitingFirstBytes(since: .now()))
            let shortest = min(server.requestTimeout, server.connectionSetupTimeout)
            let interval = TimeAmount.nanoseconds(max(shortest.nanoseconds / 4, 10_000_000))
            self.timeoutSweep = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                loopBound.value.sweepRequestTimeouts()
            }
        case .client(let client):
            self.lifecycle.sessionStarted(
                session, handshake: .awaitingPeerSettings(ready: context.eventLoop.makePromise()))
            if let keepalive = client.keepalive {
                self.timeoutSweep = context.eventLoop.scheduleRepeatedTask(
                    initialDelay: keepalive.interval, delay: keepalive.interval
                ) { _ in
                    loopBound.value.keepaliveTick(timeout: keepalive.timeout)
                }
            }
        }
        self.flushNow()
    }

    /// Client: PINGs the peer, or closes the connection when the last PING went unanswered for
    /// `timeout`. A peer whose host vanished or whose network was cut sends nothing, not even a
    /// reset, and TCP would keep the connection for many minutes; calls and push streams on it then
    /// fail here instead, and the next call reconnects.
    private func keepaliveTick(timeout: TimeAmount) {
        let now = NIODeadline.now()
        switch self.lifecycle.keepaliveTimerFired(now: now, timeout: timeout) {
        case .sendPing(let session):
            guard session.submitPing() else { return }
            self.lifecycle.pingSent(at: now)
            self.scheduleFlush()
        case .closeChannel:
            self.context?.close(promise: nil)
        case .none:
            break
        }
    }

    /// Sends GOAWAY (last processed stream) so the peer opens no new streams; in-flight streams finish,
    /// then nghttp2 wants neither read nor write and the connection closes. A sink's request has no
    /// end of its own, so it is answered now, 204, and its sink dropped (a frame it had only begun
    /// to receive is lost with it: the sender sees the stream end and sends again elsewhere).
    func initiateGracefulShutdown() {
        guard case .sendGoaway(let session) = self.lifecycle.quiesceRequested() else { return }
        session.submitGoaway()
        if self.isServer {
            for stream in self.streams.all where !stream.responseStarted {
                switch stream.inbound {
                case .sink, .pacedSink: break
                default: continue
                }
                stream.inbound = .discarding
                self.submitResponse(stream, HTTPResponse(status: 204))
            }
        }
        self.scheduleFlush()
    }

    func closeConnection() {
        guard let context else { return }
        switch self.lifecycle.closeRequested() {
        case .closeChannel:
            context.close(promise: nil)
        case .none:
            break
        }
    }

    /// Fails every stream still open (connection closed or dead) and forgets them.
    func failEverything(reason: HTTP2ClientError.Kind) {
        switch self.lifecycle.channelClosed() {
        case .failWait(let ready):
            ready.fail(self.clientError(reason, detail: "the connection closed during the HTTP/2 handshake"))
        case .none:
            break
        }
        let open = self.streams.removeAll()
        self.lastStream = nil
        for stream in open {
            stream.isClosed = true
            stream.fail(self.clientError(reason, detail: "the connection closed before the exchange completed"))
        }
        self.pendingConsumption.removeAll()
        let work = self.deferredWork
        self.deferredWork = []
        for item in work { item() }
    }

    // MARK: Writing

    /// Flushes now, or at read-complete if a read burst is in progress, or after the session call returns.
    func scheduleFlush() {
        if self.inReadBurst || self.inSession { return }
        guard !self.flushScheduled, let context else { return }
        self.flushScheduled = true
        // Coalesce: responses that complete in the same event-loop tick share one write.
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            self.flushNow()
        }
    }

    /// Drains mem_send into writes of up to `maxWriteSize` while the channel is writable.
    func flushNow() {
        guard let session, let context, !self.inSession, !self.flushing else { return }
        self.flushing = true
        defer { self.flushing = false }
        while context.channel.isWritable {
            // Reuse the last write's buffer: once the socket took it, it is ours alone again and
            // clear() keeps its memory (large buffers freed and reallocated each time page-fault).
            // If the write is still pending, clear() gets fresh storage instead (copy-on-write).
            if var spare = self.spareWriteBuffer {
                self.spareWriteBuffer = nil
                spare.clear()
                self.writeBuffer = spare
            } else {
                self.writeBuffer = context.channel.allocator.buffer(capacity: self.writeSizeHint)
            }
            self.inSession = true
            let failure = session.send(into: self, limit: Self.maxWriteSize)
            self.inSession = false
            let out = self.writeBuffer!
            self.writeBuffer = nil
            self.runDeferredWork()
            let written = out.readableBytes + self.gatheredBytes
            if !self.gathered.isEmpty {
                // Large DATA payloads go out as they are, in one writev with what surrounds them.
                for piece in self.gathered { context.write(self.wrapOutboundOut(piece), promise: nil) }
                // The first gathered buffer is the one the write began in (reusable like `out`).
                self.spareWriteBuffer = self.gathered[0]
                self.gathered.removeAll(keepingCapacity: true)
                self.gatheredBytes = 0
                if out.readableBytes > 0 { context.write(self.wrapOutboundOut(out), promise: nil) }
                context.flush()
            } else if out.readableBytes > 0 {
                self.writeSizeHint = min(
                    max(out.readableBytes + out.readableBytes / 4, 16 << 10),
                    Self.maxWriteSize + (32 << 10)
                )
                // Flushed at once: the socket usually takes it whole, which frees the buffer for reuse.
                context.writeAndFlush(self.wrapOutboundOut(out), promise: nil)
                self.spareWriteBuffer = out
            }
            if failure != 0 {
                self.closeConnection()
                return
            }
            if written < Self.maxWriteSize { break }
        }
        if session.isFinished {
            self.closeConnection()
        }
    }

    func runDeferredWork() {
        if !self.pendingConsumption.isEmpty {
            if let session = self.session {
                for (streamID, count) in self.pendingConsumption { session.consume(streamID: streamID, count) }
            }
            self.pendingConsumption.removeAll(keepingCapacity: true)
        }
        while !self.deferredWork.isEmpty {
            let work = self.deferredWork
            self.deferredWork = []
            for item in work { item() }
        }
    }

    /// The open stream with this id. Callbacks for one stream come in runs (HEADERS, each field,
    /// END_HEADERS, DATA...), so the last stream found is remembered to skip the search.
    @inline(__always)
    func lookup(_ id: Int32) -> NGHTTP2Stream? {
        if let last = self.lastStream, last.id == id { return last }
        let found = self.streams[id]
        self.lastStream = found
        return found
    }

    /// Removes a stream from the table (and from the lookup cache).
    func forget(_ id: Int32) -> NGHTTP2Stream? {
        if self.lastStream?.id == id { self.lastStream = nil }
        return self.streams.remove(id)
    }

    // MARK: nghttp2 callbacks (called inside mem_recv / mem_send)

    func onBeginHeaders(_ frame: nghttp2_frame) -> Int32 {
        let id = frame.hd.stream_id
        if self.isServer {
            guard frame.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
            // `inbound` starts as .discarding; requestHeadersComplete decides where a body goes.
            let stream = NGHTTP2Stream(id: id, now: .now())
            self.streams.insert(stream)
            self.lastStream = stream
        } else {
            // A new header block (final response after 1xx, or trailers) starts; 1xx fields are dropped.
            if let stream = self.lookup(id), !stream.headersComplete {
                stream.headers = HTTPFields()
                stream.status = nil
            }
        }
        return 0
    }

    func onHeader(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Int32 {
        guard let stream = self.lookup(streamID), !stream.headersComplete else { return 0 }
        let limit = self.maxHeaderListSize
        // RFC 9113 §6.5.2: the size of a field is name + value + 32.
        stream.headerListSize += name.count + value.count + 32
        if stream.headerListSize > limit {
            stream.headerListTooLarge = true
            return 0
        }
        if name.first == UInt8(ascii: ":") {
            switch name.count {
            case 7 where name[1] == UInt8(ascii: "m"):  // :method
                stream.method = knownMethod(value) ?? String(decoding: value, as: UTF8.self)
                stream.isHead = bytes(value, are: "HEAD")
            case 5 where name[1] == UInt8(ascii: "p"):  // :path, split at its first `?` (see `splitTarget`)
                if let mark = value.firstIndex(of: UInt8(ascii: "?")) {
                    stream.path = String(decoding: UnsafeBufferPointer(rebasing: value[..<mark]), as: UTF8.self)
                    stream.query = String(
                        decoding: UnsafeBufferPointer(rebasing: value[(mark + 1)...]), as: UTF8.self)
                } else {
                    stream.path = String(decoding: value, as: UTF8.self)
                    stream.query = nil
                }
            case 10 where name[1] == UInt8(ascii: "a"):  // :authority
                stream.authority = self.authority(value)
            case 7 where name[1] == UInt8(ascii: "s") && name[2] == UInt8(ascii: "t"):  // :status
                stream.status = Int(String(decoding: value, as: UTF8.self))
            default: break  // :scheme, :protocol (nghttp2 has already validated the set)
            }
        } else {
            stream.headers.appendReceived(name: name, value: value)
        }
        return 0
    }

    /// The `:authority` in `value` as a String: the last one made when the bytes are the same
    /// (a client sends the same authority on every request of a connection), else a new one.
    private func authority(_ value: UnsafeBufferPointer<UInt8>) -> String {
        if value.count == self.lastAuthorityBytes.count,
            self.lastAuthorityBytes.withUnsafeBufferPointer({
                value.isEmpty || memcmp($0.baseAddress!, value.baseAddress!, value.count) == 0
            })
        {
            return self.lastAuthority
        }
        self.lastAuthority = String(decoding: value, as: UTF8.self)
        self.lastAuthorityBytes = Array(value)
        return self.lastAuthority
    }

    func onFrameRecv(_ frame: nghttp2_frame) -> Int32 {
        let id = frame.hd.stream_id
        let endStream = frame.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch UInt32(frame.hd.type) {
        case NGHTTP2_HEADERS.rawValue:
            guard let stream = self.lookup(id) else { return 0 }
            if !stream.headersComplete {
                if self.isServer {
                    stream.headersComplete = true
                    stream.inboundEnded = endStream
                    self.requestHeadersComplete(stream)
                    return 0
                } else {
                    if let status = stream.status, status >= 100, status < 200 {
                        return 0
                    }
                    stream.headersComplete = true
                    stream.inboundEnded = endStream
                    self.responseHeadersComplete(stream)
                    return 0
                }
            }
            if endStream {
                self.inboundEnded(stream)
            }
        case NGHTTP2_DATA.rawValue:
            if endStream, let stream = self.lookup(id) {
                self.inboundEnded(stream)
            }
        case NGHTTP2_SETTINGS.rawValue:
            guard frame.hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 else { break }
            switch self.lifecycle.peerSettingsReceived() {
            case .succeedWait(let ready):
                self.deferredWork.append { ready.succeed() }
            case .none:
                break
            }
        case NGHTTP2_PING.rawValue:
            // nghttp2 answers a peer's PING itself; an answer to ours means the peer is there.
            if frame.hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0 {
                self.lifecycle.pingAnswered()
                if case .client(let client) = self.role { client.onPingAnswered() }
            }
        case NGHTTP2_GOAWAY.rawValue:
            self.lifecycle.goawayReceived()
            if case .client(let client) = self.role {
                let onUnusable = client.onUnusable
                self.deferredWork.append { onUnusable() }
            }
        default:
            break
        }
        return 0
    }

    func onStreamClose(streamID: Int32, errorCode: UInt32) -> Int32 {
        guard let stream = self.forget(streamID) else { return 0 }
        stream.isClosed = true
        stream.deadline?.cancel()
        if stream.unconsumedBytes > 0 {
            // Buffered for a reader that has not taken it yet: the connection window must not leak.
            self.consumeLater(streamID: streamID, stream.unconsumedBytes)
            stream.unconsumedBytes = 0
        }
        let waiter = stream.outbound?.producerWaiting
        let streaming: Bool
        switch stream.inbound {
        case .streaming, .pacedSink: streaming = true  // a paced sink is told of the early end
        default: streaming = false
        }
        guard waiter != nil || streaming || (stream.exchange.map { !$0.finished } ?? false) else {
            return 0  // nobody is waiting on this stream: the common, successful case
        }
        stream.outbound?.producerWaiting = nil
        let error: HTTP2ClientError
        if errorCode == NGHTTP2_REFUSED_STREAM.rawValue && self.lifecycle.peerSentGoaway {
            error = self.clientError(.goaway, detail: "the peer sent GOAWAY and did not process the request")
        } else if errorCode != NGHTTP2_NO_ERROR.rawValue {
            error = self.clientError(
                .streamReset,
                detail: "the stream was reset with HTTP/2 error code \(errorCode)",
                errorCode: errorCode
            )
        } else {
            error = self.clientError(.streamReset, detail: "the stream closed before the exchange completed")
        }
        self.deferredWork.append {
            stream.fail(error)
            waiter?.fail(error)
        }
        return 0
    }

    func onFrameSend(_ frame: nghttp2_frame) -> Int32 {
        // Asking nghttp2 whether the request side is still open is cheaper than finding our stream.
        guard self.isServer,
            frame.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0,
            let session,
            session.peerIsStillSending(streamID: frame.hd.stream_id),
            let stream = self.lookup(frame.hd.stream_id), !stream.inboundEnded
        else { return 0 }
        // The response is complete while the request body is still arriving (an early error answer):
        // RFC 9113 §8.1 says to reset with NO_ERROR so the client stops sending.
        session.submitReset(streamID: stream.id, code: NGHTTP2_NO_ERROR.rawValue)
        return 0
    }

    func onFrameNotSend(_ frame: nghttp2_frame, libErrorCode: Int32) -> Int32 {
        guard case .client = self.role, UInt32(frame.hd.type) == NGHTTP2_HEADERS.rawValue,
            let stream = self.forget(frame.hd.stream_id)
        else { return 0 }
        stream.deadline?.cancel()
        let error = self.clientError(
            self.lifecycle.peerSentGoaway ? .goaway : .connectionClosed,
            detail: "the request was not sent: \(NGHTTP2Session.describe(error: libErrorCode))"
        )
        self.deferredWork.append { stream.fail(error) }
        return 0
    }

    func clientError(_ kind: HTTP2ClientError.Kind, detail: String, errorCode: UInt32? = nil)
        -> HTTP2ClientError
    {
        let peer: String
        switch self.role {
        case .client(let client): peer = client.peer
        case .server: peer = self.context?.remoteAddress?.description ?? "unknown"
        }
        return HTTP2ClientError(kind, peer: peer, detail: detail, errorCode: errorCode)
    }
}

/// Whether `bytes` are those of `text`.
@inline(__always)
private func bytes(_ bytes: UnsafeBufferPointer<UInt8>, are text: StaticString) -> Bool {
    bytes.count == text.utf8CodeUnitCount && memcmp(bytes.baseAddress!, text.utf8Start, bytes.count) == 0
}

/// The request method in `bytes` as a constant when it is a common one: recognising the bytes costs
/// less than decoding and validating them into a new `String` on every request.
func knownMethod(_ value: UnsafeBufferPointer<UInt8>) -> String? {
    switch value.count {
    case 3:
        if bytes(value, are: "GET") { return "GET" }
        if bytes(value, are: "PUT") { return "PUT" }
    case 4:
        if bytes(value, are: "POST") { return "POST" }
        if bytes(value, are: "HEAD") { return "HEAD" }
    case 6:
        if bytes(value, are: "DELETE") { return "DELETE" }
    default:
        break
    }
    return nil
}
