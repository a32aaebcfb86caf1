// The channel handler that owns one nghttp2 session: inbound bytes go to mem_recv, mem_send output goes out.
import CNghttp2
import NIOCore

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
    /// Inbound body bytes a reader takes before consumption is reported back to the event loop.
    static let consumeReportThreshold = 64 << 10

    let role: Role
    private let isServer: Bool
    private let maxHeaderListSize: Int
    /// Server only: the collect limit for request bodies.
    private let maxRequestBodySize: Int
    /// Server only: the routes (empty for a client).
    private let router: Router
    private var session: OpaquePointer?
    private var context: ChannelHandlerContext?
    /// Every open stream, from its first HEADERS until nghttp2 closes it. Stream ids are never reused.
    private var streams: [Int32: NGHTTP2Stream] = [:]
    /// The stream `lookup` found last; cleared whenever a stream leaves `streams`.
    private var lastStream: NGHTTP2Stream?
    /// Work that must run after the current mem_recv/mem_send call returns (see duty 1).
    private var deferredWork: [() -> Void] = []
    /// True while inside mem_recv or mem_send: the session must not be re-entered.
    private var inSession = false
    /// True between channelRead and channelReadComplete: flushes wait for read-complete.
    private var inReadBurst = false
    private var flushScheduled = false
    /// True while `flushNow` runs: work it runs (deferred promise completions) must not flush again
    /// inside it, or newer frames would be written before the ones it is about to write.
    private var flushing = false
    /// Client keepalive: when the PING now unanswered was sent.
    private var pingSentAt: NIODeadline?
    /// The capacity to allocate for the next write: about the size of the last one.
    private var writeSizeHint = 16 << 10
    /// The last buffer written, reused for the next write when the socket no longer holds it.
    private var spareWriteBuffer: ByteBuffer?
    private var closing = false
    private var goawayReceived = false
    private var timeoutSweep: RepeatedTask?
    /// Client: completed by the peer's first SETTINGS frame; until then its stream limit is unknown,
    /// and requests beyond nghttp2's assumed limit would be refused.
    private var peerSettings: EventLoopPromise<Void>?
    /// When the connection was set up, and whether the peer has sent anything since (server: a client
    /// that never sends its preface is closed after `connectionSetupTimeout`).
    private let startedAt = NIODeadline.now()
    private var receivedBytes = false
    /// Async handler calls dispatched inside `mem_recv`, run once it returns.
    private var pendingCalls: [PendingCall] = []
    /// Where handler tasks start: this connection's event loop, or `nil` for the global executor.
    private var handlerExecutor: EventLoopTaskExecutor?

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
        if let session {
            nghttp2_session_del(session)
        }
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if case .server(let server) = self.role, server.runsHandlersOnEventLoop {
            self.handlerExecutor = EventLoopTaskExecutor(eventLoop: context.eventLoop)
        }
        if context.channel.isActive {
            self.startSession(context: context)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        if self.session == nil {
            self.startSession(context: context)
        }
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.failEverything(reason: .connectionClosed)
        self.timeoutSweep?.cancel()
        self.timeoutSweep = nil
        if let session {
            nghttp2_session_del(session)
            self.session = nil
        }
        self.context = nil
    }

    /// Client: succeeds once the peer's SETTINGS arrived (the connection is ready for requests).
    func peerSettingsReceived(on loop: any EventLoop) -> EventLoopFuture<Void> {
        if case .server = self.role { return loop.makeSucceededVoidFuture() }
        if self.session == nil || self.closing {
            return loop.makeFailedFuture(
                self.clientError(.connectionClosed, detail: "the connection closed during the HTTP/2 handshake")
            )
        }
        guard let peerSettings else { return loop.makeSucceededVoidFuture() }
        return peerSettings.futureResult
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
        guard let session, !self.closing else { return }
        self.inReadBurst = true
        self.receivedBytes = true
        self.inSession = true
        let result = buffer.withUnsafeReadableBytes { bytes in
            nghttp2_session_mem_recv(session, bytes.bindMemory(to: UInt8.self).baseAddress, bytes.count)
        }
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
        guard self.session == nil else { return }
        var callbacks: OpaquePointer?
        var option: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks,
            nghttp2_option_new(&option) == 0, let option
        else {
            context.close(promise: nil)
            return
        }
        defer {
            nghttp2_session_callbacks_del(callbacks)
            nghttp2_option_del(option)
        }
        installNGHTTP2Callbacks(callbacks)
        nghttp2_option_set_no_auto_window_update(option, 1)

        let userData = Unmanaged.passUnretained(self).toOpaque()
        var newSession: OpaquePointer?
        var settings: [nghttp2_settings_entry]
        let connectionWindow: Int
        switch self.role {
        case .server(let server):
            guard nghttp2_session_server_new2(&newSession, callbacks, userData, option) == 0 else {
                context.close(promise: nil)
                return
            }
            settings = [
                entry(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, server.maxConcurrentStreams),
                entry(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, server.initialStreamWindowSize),
                entry(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, server.maxHeaderListSize),
            ]
            connectionWindow = server.connectionWindowSize
            let shortest = min(server.requestTimeout, server.connectionSetupTimeout)
            let interval = TimeAmount.nanoseconds(max(shortest.nanoseconds / 4, 10_000_000))
            self.timeoutSweep = context.eventLoop.scheduleRepeatedTask(
                initialDelay: interval,
                delay: interval
            ) { [loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)] _ in
                loopBound.value.sweepRequestTimeouts()
            }
        case .client(let client):
            self.peerSettings = context.eventLoop.makePromise()
            nghttp2_option_set_peer_max_concurrent_streams(option, 100)
            guard nghttp2_session_client_new2(&newSession, callbacks, userData, option) == 0 else {
                context.close(promise: nil)
                return
            }
            settings = [
                entry(NGHTTP2_SETTINGS_ENABLE_PUSH, 0),
                entry(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, client.initialStreamWindowSize),
                entry(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, client.maxHeaderListSize),
            ]
            connectionWindow = client.connectionWindowSize
            if let keepalive = client.keepalive {
                self.timeoutSweep = context.eventLoop.scheduleRepeatedTask(
                    initialDelay: keepalive.interval, delay: keepalive.interval
                ) { [loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)] _ in
                    loopBound.value.keepaliveTick(timeout: keepalive.timeout)
                }
            }
        }
        guard let newSession else { return }
        self.session = newSession
        nghttp2_submit_settings(newSession, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        nghttp2_session_set_local_window_size(newSession, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(connectionWindow))
        self.flushNow()
    }

    /// Client: PINGs the peer, or closes the connection when the last PING went unanswered for
    /// `timeout`. A peer whose host vanished or whose network was cut sends nothing, not even a
    /// reset, and TCP would keep the connection for many minutes; calls and push streams on it then
    /// fail here instead, and the next call reconnects.
    private func keepaliveTick(timeout: TimeAmount) {
        guard let session, !self.closing else { return }
        let now = NIODeadline.now()
        if let sent = self.pingSentAt {
            if now - sent >= timeout { self.closeConnection() }
            return
        }
        guard nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil) == 0 else { return }
        self.pingSentAt = now
        self.scheduleFlush()
    }

    /// Sends GOAWAY (last processed stream) so the peer opens no new streams; in-flight streams finish,
    /// then nghttp2 wants neither read nor write and the connection closes. A sink's request has no
    /// end of its own, so it is answered now, 204, and its sink dropped (a frame it had only begun
    /// to receive is lost with it: the sender sees the stream end and sends again elsewhere).
    func initiateGracefulShutdown() {
        guard let session, !self.closing else { return }
        nghttp2_submit_goaway(
            session,
            UInt8(NGHTTP2_FLAG_NONE.rawValue),
            nghttp2_session_get_last_proc_stream_id(session),
            NGHTTP2_NO_ERROR.rawValue,
            nil,
            0
        )
        if self.isServer {
            for stream in self.streams.values where !stream.responseStarted {
                guard case .sink = stream.inbound else { continue }
                stream.inbound = .discarding
                self.submitResponse(stream, HTTPResponse(status: 204))
            }
        }
        self.scheduleFlush()
    }

    private func closeConnection() {
        guard !self.closing, let context else { return }
        self.closing = true
        context.close(promise: nil)
    }

    /// Fails every stream still open (connection closed or dead) and forgets them.
    private func failEverything(reason: HTTP2ClientError.Kind) {
        if let peerSettings {
            self.peerSettings = nil
            peerSettings.fail(self.clientError(reason, detail: "the connection closed during the HTTP/2 handshake"))
        }
        let open = self.streams.values
        self.streams = [:]
        self.lastStream = nil
        for stream in open {
            stream.isClosed = true
            stream.fail(self.clientError(reason, detail: "the connection closed before the exchange completed"))
        }
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
    private func flushNow() {
        guard let session, let context, !self.inSession, !self.flushing else { return }
        self.flushing = true
        defer { self.flushing = false }
        while context.channel.isWritable {
            // Reuse the last write's buffer: once the socket took it, it is ours alone again and
            // clear() keeps its memory (large buffers freed and reallocated each time page-fault).
            // If the write is still pending, clear() gets fresh storage instead (copy-on-write).
            var out: ByteBuffer
            if var spare = self.spareWriteBuffer {
                self.spareWriteBuffer = nil
                spare.clear()
                out = spare
            } else {
                out = context.channel.allocator.buffer(capacity: self.writeSizeHint)
            }
            self.inSession = true
            var failure: Int = 0
            while out.readableBytes < Self.maxWriteSize {
                var chunk: UnsafePointer<UInt8>?
                let count = nghttp2_session_mem_send(session, &chunk)
                if count < 0 {
                    failure = count
                    break
                }
                guard count > 0, let chunk else { break }
                out.writeBytes(UnsafeRawBufferPointer(start: chunk, count: count))
            }
            self.inSession = false
            self.runDeferredWork()
            if out.readableBytes > 0 {
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
            if out.readableBytes < Self.maxWriteSize { break }
        }
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
            self.closeConnection()
        }
    }

    private func runDeferredWork() {
        while !self.deferredWork.isEmpty {
            let work = self.deferredWork
            self.deferredWork = []
            for item in work { item() }
        }
    }

    /// The open stream with this id. Callbacks for one stream come in runs (HEADERS, each field,
    /// END_HEADERS, DATA...), so the last stream found is remembered to skip the dictionary's hashing.
    @inline(__always)
    private func lookup(_ id: Int32) -> NGHTTP2Stream? {
        if let last = self.lastStream, last.id == id { return last }
        let found = self.streams[id]
        self.lastStream = found
        return found
    }

    /// Removes a stream from the table (and from the lookup cache).
    private func forget(_ id: Int32) -> NGHTTP2Stream? {
        if self.lastStream?.id == id { self.lastStream = nil }
        return self.streams.removeValue(forKey: id)
    }

    // MARK: nghttp2 callbacks (called inside mem_recv / mem_send)

    func onBeginHeaders(_ frame: nghttp2_frame) -> Int32 {
        let id = frame.hd.stream_id
        if self.isServer {
            guard frame.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
            // `inbound` starts as .discarding; requestHeadersComplete decides where a body goes.
            let stream = NGHTTP2Stream(id: id, now: .now())
            self.streams[id] = stream
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
            let text = String(decoding: value, as: UTF8.self)
            switch name.count {
            case 7 where name[1] == UInt8(ascii: "m"): stream.method = text  // :method
            case 5 where name[1] == UInt8(ascii: "p"): stream.path = text  // :path
            case 10 where name[1] == UInt8(ascii: "a"): stream.authority = text  // :authority
            case 7 where name[1] == UInt8(ascii: "s") && name[2] == UInt8(ascii: "t"): stream.status = Int(text)
            default: break  // :scheme, :protocol (nghttp2 has already validated the set)
            }
        } else {
            stream.headers.appendLowercased(
                name: String(decoding: name, as: UTF8.self),
                value: String(decoding: value, as: UTF8.self)
            )
        }
        return 0
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
            if frame.hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0, let ready = self.peerSettings {
                self.peerSettings = nil
                self.deferredWork.append { ready.succeed() }
            }
        case NGHTTP2_PING.rawValue:
            // nghttp2 answers a peer's PING itself; an answer to ours means the peer is there.
            if frame.hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0 { self.pingSentAt = nil }
        case NGHTTP2_GOAWAY.rawValue:
            self.goawayReceived = true
            if case .client(let client) = self.role {
                let onUnusable = client.onUnusable
                self.deferredWork.append { onUnusable() }
            }
        default:
            break
        }
        return 0
    }

    func onDataChunk(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard let stream = self.lookup(streamID) else {
            // Data for a stream we already forgot: return the credit at once.
            self.consumeLater(streamID: streamID, data.count)
            return 0
        }
        stream.lastActivity = .now()
        switch stream.inbound {
        case .collecting(var collected, let limit):
            if collected.readableBytes + data.count > limit {
                stream.inbound = .discarding
                self.consumeLater(streamID: streamID, data.count)
                self.inboundBodyTooLarge(stream, limit: limit)
            } else {
                stream.inbound = .discarding  // drop the reference so the append does not copy
                collected.writeBytes(data)
                stream.inbound = .collecting(collected, limit: limit)
                self.consumeLater(streamID: streamID, data.count)
            }
        case .streaming(let continuation):
            stream.unconsumedBytes += data.count
            continuation.yield(ByteBuffer(bytes: data))
        case .discarding:
            self.consumeLater(streamID: streamID, data.count)
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
        if case .streaming = stream.inbound { streaming = true } else { streaming = false }
        guard waiter != nil || streaming || (stream.exchange.map { !$0.finished } ?? false) else {
            return 0  // nobody is waiting on this stream: the common, successful case
        }
        stream.outbound?.producerWaiting = nil
        let error: HTTP2ClientError
        if errorCode == NGHTTP2_REFUSED_STREAM.rawValue && self.goawayReceived {
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
            nghttp2_session_get_stream_remote_close(session, frame.hd.stream_id) == 0,
            let stream = self.lookup(frame.hd.stream_id), !stream.inboundEnded
        else { return 0 }
        // The response is complete while the request body is still arriving (an early error answer):
        // RFC 9113 §8.1 says to reset with NO_ERROR so the client stops sending.
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, NGHTTP2_NO_ERROR.rawValue)
        return 0
    }

    func onFrameNotSend(_ frame: nghttp2_frame, libErrorCode: Int32) -> Int32 {
        guard case .client = self.role, UInt32(frame.hd.type) == NGHTTP2_HEADERS.rawValue,
            let stream = self.forget(frame.hd.stream_id)
        else { return 0 }
        stream.deadline?.cancel()
        let error = self.clientError(
            self.goawayReceived ? .goaway : .connectionClosed,
            detail: "the request was not sent: \(String(cString: nghttp2_strerror(libErrorCode)))"
        )
        self.deferredWork.append { stream.fail(error) }
        return 0
    }

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

    // MARK: Inbound bodies

    private func consumeLater(streamID: Int32, _ count: Int) {
        guard count > 0 else { return }
        self.deferredWork.append { [weak self] in
            guard let session = self?.session else { return }
            nghttp2_session_consume(session, streamID, count)
        }
    }

    private func inboundEnded(_ stream: NGHTTP2Stream) {
        stream.inboundEnded = true
        switch stream.inbound {
        case .collecting(let body, _):
            switch self.role {
            case .server:
                if let route = stream.pendingRoute {
                    stream.pendingRoute = nil
                    self.dispatch(stream, route.route, route.parameters, body: .buffer(body))
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
        case .streaming(let continuation):
            continuation.finish()
            stream.inbound = .discarding
        case .sink(let sink):
            stream.inbound = .discarding
            if !stream.responseStarted {
                self.submitResponse(stream, sink.finish())
                self.scheduleFlush()
            }
        case .discarding:
            break
        }
    }

    /// Starts a streamed inbound body whose reader reports consumption back to this loop.
    private func makeInboundStream(_ stream: NGHTTP2Stream) -> HTTPBodyStream {
        let (chunks, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        let loop = self.context!.eventLoop
        let loopBound = NIOLoopBound(self, eventLoop: loop)
        let id = stream.id
        stream.inbound = .streaming(continuation)
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

    private func inboundConsumed(streamID: Int32, _ count: Int) {
        // A stream that already closed returned its unconsumed bytes then; nothing more to do.
        guard let session, let stream = self.lookup(streamID) else { return }
        let credited = min(count, stream.unconsumedBytes)
        stream.unconsumedBytes -= credited
        nghttp2_session_consume(session, streamID, credited)
        self.scheduleFlush()
    }

    /// The reader dropped the body: return all credit and drop further DATA; a client also cancels.
    private func inboundReaderGone(streamID: Int32) {
        guard let session, let stream = self.lookup(streamID) else { return }
        stream.inbound = .discarding
        if stream.unconsumedBytes > 0 {
            nghttp2_session_consume(session, streamID, stream.unconsumedBytes)
            stream.unconsumedBytes = 0
        }
        if case .client = self.role, !stream.inboundEnded {
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_CANCEL.rawValue)
        }
        self.scheduleFlush()
    }

    private func inboundBodyTooLarge(_ stream: NGHTTP2Stream, limit: Int) {
        switch self.role {
        case .server:
            stream.pendingRoute = nil
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

    // MARK: Outbound bodies

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
            nghttp2_session_resume_data(session, streamID)
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
        guard let session, !self.closing, let stream = self.lookup(streamID), !stream.isClosed, stream.outbound != nil
        else { return nil }
        stream.outbound!.append(chunk)
        if stream.outbound!.deferred {
            stream.outbound!.deferred = false
            nghttp2_session_resume_data(session, streamID)
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
            nghttp2_session_resume_data(session, streamID)
        }
        self.scheduleFlush()
    }

    /// The body producer failed: the peer must not take a truncated body for a complete one.
    func abortOutbound(streamID: Int32) {
        guard let stream = self.lookup(streamID) else { return }
        self.resetStream(stream, code: NGHTTP2_INTERNAL_ERROR.rawValue)
        self.scheduleFlush()
    }

    private func resetStream(_ stream: NGHTTP2Stream, code: UInt32) {
        guard let session else { return }
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, code)
    }

    /// Pulls `body` from a task, one chunk at a time, pausing while the stream's buffer is full.
    private func startProducer(streamID: Int32, body: HTTPBodyStream) {
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
    private func attachBody(_ body: HTTPBody, to stream: NGHTTP2Stream) -> HTTPBodyStream? {
        switch body {
        case .buffer(let buffer):
            stream.outbound = OutboundBody(buffer: buffer, finished: true)
            return nil
        case .stream(let source):
            stream.outbound = OutboundBody(buffer: nil, finished: false)
            return source
        }
    }

    // MARK: Server

    private func requestHeadersComplete(_ stream: NGHTTP2Stream) {
        if stream.headerListTooLarge {
            stream.inbound = .discarding
            self.submitResponse(stream, HTTPResponse(error: .headersTooLarge(limit: self.maxHeaderListSize)))
            return
        }
        let method = HTTPMethod(rawValue: stream.method ?? "")
        let (path, query) = splitTarget(stream.path ?? "/")
        stream.requestPath = path
        stream.requestQuery = query
        switch self.router.match(method: method, path: path) {
        case .notFound:
            stream.inbound = .discarding
            self.submitResponse(stream, HTTPResponse(error: .routeNotFound(method: method, path: path)))
        case .methodNotAllowed(let allowed):
            stream.inbound = .discarding
            self.submitResponse(stream, Router.methodNotAllowedResponse(method, path, allowed))
        case .found(let route, let parameters):
            if case .sink(let open) = route.responder {
                self.openSink(stream, open, parameters)
                return
            }
            switch route.bodyMode {
            case .collect:
                if let length = stream.headers.first(lowercasedName: "content-length").flatMap(Int.init),
                    length > self.maxRequestBodySize
                {
                    stream.inbound = .discarding
                    self.submitResponse(stream, HTTPResponse(error: .payloadTooLarge(limit: self.maxRequestBodySize)))
                } else if stream.inboundEnded {
                    stream.inbound = .discarding
                    self.dispatch(stream, route, parameters, body: .empty)
                } else {
                    stream.inbound = .collecting(ByteBuffer(), limit: self.maxRequestBodySize)
                    stream.pendingRoute = (route, parameters)
                }
            case .stream:
                let body = self.makeInboundStream(stream)
                if stream.inboundEnded, case .streaming(let continuation) = stream.inbound {
                    continuation.finish()
                }
                self.dispatch(stream, route, parameters, body: .stream(body))
            }
        }
    }

    /// Opens a sink route's sink for `stream`; its DATA then goes to the sink as it arrives.
    private func openSink(_ stream: NGHTTP2Stream, _ open: Router.SinkOpener, _ parameters: RouteParameters) {
        let request = HTTPRequest(
            method: HTTPMethod(rawValue: stream.method ?? ""), path: stream.requestPath, query: stream.requestQuery,
            authority: stream.authority, headers: stream.headers, body: .empty)
        do {
            stream.inbound = .sink(try open(request, parameters))
        } catch {
            stream.inbound = .discarding
            self.submitResponse(stream, Router.errorResponse(error))
            self.scheduleFlush()
            return
        }
        if stream.inboundEnded { self.inboundEnded(stream) }
    }

    /// Runs the handler: inline when it is immediate, else in a task whose response comes back here.
    private func dispatch(_ stream: NGHTTP2Stream, _ route: Router.Route, _ parameters: RouteParameters, body: HTTPBody)
    {
        guard self.context != nil else { return }
        let request = HTTPRequest(
            method: HTTPMethod(rawValue: stream.method ?? ""),
            path: stream.requestPath,
            query: stream.requestQuery,
            authority: stream.authority,
            headers: stream.headers,
            body: body
        )
        switch route.responder {
        case .immediate(let handler):
            self.submitResponse(stream, Router.invokeImmediately(handler, request, parameters))
            self.scheduleFlush()
        case .deferred(let handler):
            guard let loop = self.context?.eventLoop else { return }
            let connection = NIOLoopBound(self, eventLoop: loop)
            let boundStream = NIOLoopBound(stream, eventLoop: loop)
            handler(
                request, parameters,
                HTTPResponder { response in
                    if loop.inEventLoop {
                        connection.value.handlerResponded(stream: boundStream.value, response)
                    } else {
                        loop.execute { connection.value.handlerResponded(stream: boundStream.value, response) }
                    }
                })
        case .sink(let open):
            // Not reached (requestHeadersComplete opens sinks), but answered all the same: as a
            // handler that feeds the whole body to the sink, the way HTTP/1.1 does.
            self.pendingCalls.append(
                PendingCall(
                    handler: { request, parameters in await Router.invoke(.sink(open), request, parameters) },
                    request: request, parameters: parameters, stream: stream))
            if !self.inSession {
                self.runPendingCalls()
            }
        case .async(let handler):
            self.pendingCalls.append(
                PendingCall(handler: handler, request: request, parameters: parameters, stream: stream))
            if !self.inSession {
                self.runPendingCalls()
            }
        }
    }

    /// Runs the async handlers dispatched during the last `mem_recv`, sharing tasks between them.
    ///
    /// One `Task.immediate` works through the calls in order on this event loop. A handler that
    /// returns without suspending costs no task of its own; when one suspends, `Task.immediate`
    /// returns here, the suspended task keeps only that call, and a new task takes the rest — so no
    /// call waits for another. Creating a task per request cost about a third of the throughput.
    /// Without an event-loop executor (`runsHandlersOnEventLoop == false`) each call gets its own task.
    private func runPendingCalls() {
        guard !self.pendingCalls.isEmpty, let loop = self.context?.eventLoop else { return }
        var remaining = self.pendingCalls[...]
        self.pendingCalls = []
        let connection = NIOLoopBound(self, eventLoop: loop)
        guard let executor = self.handlerExecutor else {
            for call in remaining {
                let stream = NIOLoopBound(call.stream, eventLoop: loop)
                let (handler, request, parameters) = (call.handler, call.request, call.parameters)
                Task {
                    let response = await Router.invoke(.async(handler), request, parameters)
                    loop.execute { connection.value.handlerResponded(stream: stream.value, response) }
                }
            }
            return
        }
        while !remaining.isEmpty {
            let boundBatch = NIOLoopBound(CallBatch(calls: Array(remaining)), eventLoop: loop)
            Task.immediate(executorPreference: executor) {
                await workThroughCalls(boundBatch, on: loop, connection: connection)
            }
            let batch = boundBatch.value
            if batch.inHandler {
                // The task suspended inside a handler: it keeps that call, the rest go to a new task.
                batch.detached = true
                remaining = batch.calls[batch.next...]
            } else {
                remaining = []
            }
        }
    }

    /// A handler's answer; the stream may have been reset or closed while the handler ran.
    fileprivate func handlerResponded(stream: NGHTTP2Stream, _ response: HTTPResponse) {
        guard !stream.isClosed, !stream.responseStarted else { return }
        self.submitResponse(stream, response)
        self.scheduleFlush()
    }

    private func submitResponse(_ stream: NGHTTP2Stream, _ response: HTTPResponse) {
        guard let session else { return }
        stream.responseStarted = true
        let isHead = stream.method == "HEAD"
        let producerSource: HTTPBodyStream?
        let hasBody: Bool
        switch response.body {
        case .buffer(let buffer) where buffer.readableBytes == 0 || isHead:
            hasBody = false
            producerSource = nil
        default:
            hasBody = !isHead
            producerSource = self.attachBody(response.body, to: stream)
        }
        let pseudo = [(":status", String(response.status))]
        let result = withHeaderBlock(pseudo: pseudo, headers: response.headers, body: response.body) { nva, count in
            if hasBody {
                var provider = nghttp2_data_provider(
                    source: nghttp2_data_source(ptr: nil), read_callback: nghttp2ReadOutbound)
                return nghttp2_submit_response(session, stream.id, nva, count, &provider)
            }
            return nghttp2_submit_response(session, stream.id, nva, count, nil)
        }
        if result != 0 {
            self.resetStream(stream, code: NGHTTP2_INTERNAL_ERROR.rawValue)
            return
        }
        if let producerSource {
            self.startProducer(streamID: stream.id, body: producerSource)
        }
    }

    /// Answers requests whose body stalled longer than `requestTimeout` with 408.
    private func sweepRequestTimeouts() {
        guard case .server(let server) = self.role, self.session != nil else { return }
        let now = NIODeadline.now()
        if !self.receivedBytes && now - self.startedAt >= server.connectionSetupTimeout {
            // Connected but never sent a preface (a stalled or idle-probing client): close it.
            self.closeConnection()
            return
        }
        var expired = false
        for stream in self.streams.values where !stream.inboundEnded && !stream.timedOut {
            // A sink's request is long-lived by design and may idle: its sender decides when it ends.
            if case .sink = stream.inbound { continue }
            guard now - stream.lastActivity >= server.requestTimeout else { continue }
            stream.timedOut = true
            expired = true
            let error = HTTPError.requestTimeout(seconds: Double(server.requestTimeout.nanoseconds) / 1e9)
            switch stream.inbound {
            case .streaming(let continuation):
                continuation.finish(throwing: error)
            case .collecting, .discarding, .sink:
                stream.pendingRoute = nil
                stream.inbound = .discarding
                if !stream.responseStarted {
                    self.submitResponse(stream, HTTPResponse(error: error))
                }
            }
        }
        if expired {
            self.scheduleFlush()
        }
    }

    // MARK: Client

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
        guard let session, !self.closing, !self.goawayReceived else {
            return loop.makeFailedFuture(
                self.clientError(
                    self.goawayReceived ? .goaway : .connectionClosed,
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
        let id = withHeaderBlock(pseudo: pseudo, headers: request.headers, body: pushedBody ? nil : request.body) {
            nva, count in
            if hasBody {
                var provider = nghttp2_data_provider(
                    source: nghttp2_data_source(ptr: nil), read_callback: nghttp2ReadOutbound)
                return nghttp2_submit_request(session, nil, nva, count, &provider, nil)
            }
            return nghttp2_submit_request(session, nil, nva, count, nil, nil)
        }
        guard id > 0 else {
            return loop.makeFailedFuture(
                self.clientError(
                    .connectionClosed,
                    detail: "nghttp2 refused the request: \(String(cString: nghttp2_strerror(id)))"
                )
            )
        }
        stream.id = id
        cancellation.streamID = id
        stream.inbound = streamResponse ? .discarding : .collecting(ByteBuffer(), limit: client.maxResponseBodySize)
        let exchange = ClientExchange(promise: loop.makePromise(), streamResponse: streamResponse)
        stream.exchange = exchange
        self.streams[id] = stream
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

    private func responseHeadersComplete(_ stream: NGHTTP2Stream) {
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
        if stream.inboundEnded, case .streaming(let continuation) = stream.inbound {
            continuation.finish()
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

    private func deadlinePassed(streamID: Int32) {
        guard let stream = self.lookup(streamID) else { return }
        let error = self.clientError(
            .deadlineExceeded, detail: "the call's deadline passed before the exchange completed")
        self.resetStream(stream, code: NGHTTP2_CANCEL.rawValue)
        stream.fail(error)
        self.scheduleFlush()
    }

    private func clientError(_ kind: HTTP2ClientError.Kind, detail: String, errorCode: UInt32? = nil)
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

/// The body of a batch task: call handlers in order until one suspends (see `runPendingCalls`).
private func workThroughCalls(
    _ batch: NIOLoopBound<CallBatch>,
    on loop: any EventLoop,
    connection: NIOLoopBound<NGHTTP2Connection>
) async {
    while true {
        let state = batch.value
        guard !state.detached, state.next < state.calls.count else { return }
        let call = state.calls[state.next]
        state.next += 1
        state.inHandler = true
        // The handler is called directly (not through Router.invoke): one async frame less per call.
        let response: HTTPResponse
        do {
            response = try await call.handler(call.request, call.parameters)
        } catch {
            response = Router.errorResponse(error)
        }
        guard loop.inEventLoop else {
            // Only a suspended task resumes elsewhere, and then the batch is no longer its own.
            let stream = NIOLoopBound(call.stream, eventLoop: loop)
            loop.execute { connection.value.handlerResponded(stream: stream.value, response) }
            return
        }
        connection.value.handlerResponded(stream: call.stream, response)
        if batch.value.detached { return }
        batch.value.inHandler = false
    }
}

/// An async handler call waiting to run (see `NGHTTP2Connection.runPendingCalls`).
struct PendingCall {
    let handler: Router.Handler
    let request: HTTPRequest
    let parameters: RouteParameters
    let stream: NGHTTP2Stream
}

/// The calls one handler task works through; touched only on the connection's event loop.
final class CallBatch {
    let calls: [PendingCall]
    /// The index of the next call to start.
    var next = 0
    /// The task is inside a handler: if `Task.immediate` returns while this is set, the task suspended.
    var inHandler = false
    /// The dispatcher gave the calls after `next` to another task; this one stops after its current call.
    var detached = false

    init(calls: [PendingCall]) {
        self.calls = calls
    }
}

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
        if let waiter = self.outbound?.producerWaiting {
            self.outbound?.producerWaiting = nil
            waiter.fail(error)
        }
    }
}

/// Where a stream's inbound DATA goes.
enum InboundBody {
    /// Appended here (and credited at once) until END_STREAM; over `limit` is an error.
    case collecting(ByteBuffer, limit: Int)
    /// Yielded to a reader; credited as the reader consumes.
    case streaming(AsyncThrowingStream<ByteBuffer, any Error>.Continuation)
    /// Dropped and credited at once.
    case discarding
    /// Handed to a sink route's sink as it arrives, inline, and credited at once.
    case sink(any RequestBodySink)
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

private func entry(_ id: nghttp2_settings_id, _ value: Int) -> nghttp2_settings_entry {
    nghttp2_settings_entry(settings_id: Int32(id.rawValue), value: UInt32(clamping: value))
}

/// Whether HTTP/2 forbids this (lower-case) field name (RFC 9113 §8.2.2); such fields are dropped.
private func isConnectionSpecific(_ name: String) -> Bool {
    switch name {
    case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host": true
    default: false
    }
}

/// Lays out the pseudo-header fields, the regular fields and (for a body complete in memory)
/// `content-length` in temporary storage and calls `call` with an nghttp2_nv array pointing into it.
/// nghttp2 copies names and values during submit, so the storage only needs to live for the call;
/// small blocks stay on the stack, so a response costs no allocation here.
private func withHeaderBlock<Result>(
    pseudo: [(String, String)],
    headers: HTTPFields,
    body: HTTPBody?,
    _ call: (UnsafePointer<nghttp2_nv>, Int) -> Result
) -> Result {
    // A body given in memory gets its content-length; a streamed or pushed one (nil) has none.
    var contentLength: String?
    if case .buffer(let buffer)? = body, headers.first(lowercasedName: "content-length") == nil {
        contentLength = String(buffer.readableBytes)
    }
    var byteCount = 0
    var fieldCount = pseudo.count
    for (name, value) in pseudo {
        byteCount += name.utf8.count + value.utf8.count
    }
    for field in headers where !isConnectionSpecific(field.name) {
        byteCount += field.name.utf8.count + field.value.utf8.count
        fieldCount += 1
    }
    if let contentLength {
        byteCount += 14 + contentLength.utf8.count
        fieldCount += 1
    }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(byteCount, 1)) { bytes in
        withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(fieldCount, 1)) { nva in
            var offset = 0
            var index = 0
            func copy(_ text: String) -> (UnsafeMutablePointer<UInt8>, Int) {
                let start = bytes.baseAddress! + offset
                let (_, written) = UnsafeMutableBufferPointer(rebasing: bytes[offset...]).initialize(from: text.utf8)
                offset += written
                return (start, written)
            }
            func add(_ name: String, _ value: String) {
                let (namePointer, nameLength) = copy(name)
                let (valuePointer, valueLength) = copy(value)
                nva.baseAddress!.advanced(by: index).initialize(
                    to: nghttp2_nv(
                        name: namePointer,
                        value: valuePointer,
                        namelen: nameLength,
                        valuelen: valueLength,
                        flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)
                    )
                )
                index += 1
            }
            for (name, value) in pseudo {
                add(name, value)
            }
            for field in headers where !isConnectionSpecific(field.name) {
                add(field.name, field.value)
            }
            if let contentLength {
                add("content-length", contentLength)
            }
            return call(nva.baseAddress!, index)
        }
    }
}
