// The HTTP/2 client: one h2c connection to one peer, many concurrent streams, reconnect with backoff.
import NIOConcurrencyHelpers
public import NIOCore
public import NIOPosix
import Synchronization

/// Links a call to its stream so that cancelling the calling task can reset the stream.
final class CallCancellation: Sendable {
    private let state = NIOLockedValueBox<(streamID: Int32?, cancelled: Bool)>((nil, false))

    var streamID: Int32? {
        get { self.state.withLockedValue { $0.streamID } }
        set { self.state.withLockedValue { $0.streamID = newValue } }
    }

    /// Marks the call cancelled and returns its stream, if it has one yet.
    func cancel() -> Int32? {
        self.state.withLockedValue { state in
            state.cancelled = true
            return state.streamID
        }
    }

    var isCancelled: Bool { self.state.withLockedValue { $0.cancelled } }
}

/// A client for one peer (`host:port`) that multiplexes every call over one cleartext HTTP/2 connection.
///
/// The connection opens on first use and reopens after it closes or the peer sends GOAWAY. After a
/// failed connect the client backs off (`initialBackoff` doubling up to `maxBackoff`); calls made during
/// the backoff fail at once with `.peerUnavailable`, so a dead peer costs microseconds, not deadlines.
/// Every call has a deadline covering connect, request and the whole response body, except a push
/// stream (`openPushStream`), which lasts until either side ends it or the connection fails.
public final class HTTP2Client: Sendable {
    /// The peer and the client's limits.
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// The longest a TCP connect may take (a call's own deadline may cut it shorter).
        public var connectTimeout: TimeAmount = .seconds(2)
        /// The wait after the first failed connect; doubles per failure up to `maxBackoff`.
        public var initialBackoff: TimeAmount = .milliseconds(50)
        public var maxBackoff: TimeAmount = .seconds(5)
        /// The largest response body `send` collects; a larger one fails with `.bodyTooLarge`.
        public var maxResponseBodySize: Int = 64 << 20
        public var maxHeaderListSize: Int = 64 << 10
        /// The flow-control window per stream: the most response bytes buffered for one slow reader.
        public var initialStreamWindowSize: Int = 1 << 20
        public var connectionWindowSize: Int = 16 << 20
        /// When set, an open connection PINGs the peer this often and is closed when an answer takes
        /// longer than `pingTimeout`: a peer whose host vanished, or whose network was cut, says
        /// nothing and TCP would hold the connection for many minutes. What was in flight on it
        /// (push streams included, which have no deadline) then fails, and the next call reconnects.
        public var pingInterval: TimeAmount?
        public var pingTimeout: TimeAmount = .seconds(5)

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// An open connection and the handler that runs its session.
    struct PeerConnection: Sendable {
        let channel: any Channel
        let handler: NIOLoopBound<NGHTTP2Connection>
        let attempt: UInt64
    }

    private struct Shared {
        var machine: ReconnectStateMachine
        var connection: PeerConnection?
        var pendingConnect: EventLoopFuture<PeerConnection>?
        var lastError: HTTP2ClientError?
        /// Called when an open connection closes, unless the client was closed.
        var onConnectionLost: (@Sendable () -> Void)?
    }

    public let configuration: Configuration
    private let group: any EventLoopGroup
    private let shared: NIOLockedValueBox<Shared>
    /// Answers to this client's keepalive PINGs, over all its connections.
    private let pings = Atomic<Int>(0)

    /// How many of its keepalive PINGs peers have answered: a test waits for rounds of them.
    package var pingsAnswered: Int { pings.load(ordering: .relaxed) }
    private var peer: String { "\(self.configuration.host):\(self.configuration.port)" }

    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        self.group = eventLoopGroup
        self.shared = NIOLockedValueBox(
            Shared(
                machine: ReconnectStateMachine(
                    initialBackoff: configuration.initialBackoff,
                    maxBackoff: configuration.maxBackoff
                )
            )
        )
    }

    /// Sends `request` and returns the response with its body collected (`.buffer`).
    public func send(_ request: HTTPRequest, deadline: NIODeadline) async throws -> HTTPResponse {
        try await self.execute(request, streamResponse: false, deadline: deadline)
    }

    /// Sends `request` with `timeout` from now as its deadline.
    public func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse {
        try await self.send(request, deadline: .now() + TimeAmount(timeout))
    }

    /// Opens the connection now unless one is open (or opening), waiting for it until `deadline`.
    /// Unlike a call, it connects even in the backoff after a failed connect: its caller asks
    /// whether the peer answers now.
    ///
    /// Throws what a call would: after a failed connect, `connectWasRefused` and `connectWasReset`
    /// on the error say whether the peer's host refused it or took it and reset it.
    public func connect(deadline: NIODeadline) async throws {
        _ = try await self.connection(deadline: deadline, ignoringBackoff: true)
    }

    /// Sets what to do when an open connection closes (the peer closed it, reset it or died); it
    /// runs on the connection's event loop, so it must only start work. Not called after `close()`.
    public func onConnectionLost(_ handler: @escaping @Sendable () -> Void) {
        self.shared.withLockedValue { $0.onConnectionLost = handler }
    }

    /// Sends `request` and returns as soon as the response headers arrive; the body is a `.stream`
    /// that must be read (or dropped) and is subject to the same deadline.
    public func stream(_ request: HTTPRequest, deadline: NIODeadline) async throws -> HTTPResponse {
        try await self.execute(request, streamResponse: true, deadline: deadline)
    }

    /// Opens a request whose body the caller pushes, chunk by chunk, for as long as it likes: a
    /// stream of messages to the peer (connecting first if need be, until `deadline`). There is no
    /// response per chunk and no deadline once open; `HTTP2PushStream.response` completes when the
    /// server ends the exchange and fails when the stream or the connection goes away.
    public func openPushStream(_ request: HTTPRequest, deadline: NIODeadline) async throws -> HTTP2PushStream {
        let connection = try await self.connection(deadline: deadline)
        let handler = connection.handler
        let loop = connection.channel.eventLoop
        return try await loop.submit { () -> (Int32?, EventLoopFuture<HTTPResponse>) in
            let cancellation = CallCancellation()
            let response = handler.value.startRequest(
                request, streamResponse: false, deadline: nil, cancellation: cancellation, on: loop, flushAtOnce: true,
                pushedBody: true)
            return (cancellation.streamID, response)
        }.flatMap { (streamID: Int32?, response: EventLoopFuture<HTTPResponse>) -> EventLoopFuture<HTTP2PushStream> in
            // No stream means it was refused before it had one (the connection is closing): the
            // response future has failed and says why.
            guard let streamID else {
                return response.flatMapThrowing { _ in
                    throw HTTP2ClientError(.connectionClosed, peer: self.peer, detail: "no stream was opened")
                }
            }
            return loop.makeSucceededFuture(
                HTTP2PushStream(handler: handler, streamID: streamID, eventLoop: loop, response: response))
        }.get()
    }

    /// Tells the client its peer is up again (it reached this process another way): the next call
    /// connects at once instead of failing fast until the backoff after a failed connect passes.
    public func peerIsBack() {
        self.shared.withLockedValue { $0.machine.peerIsBack() }
    }

    /// Closes the connection; in-flight calls fail with `.connectionClosed`, later ones with `.clientClosed`.
    public func close() async {
        let connection = self.shared.withLockedValue { shared -> PeerConnection? in
            shared.machine.close()
            defer { shared.connection = nil }
            return shared.connection
        }
        if let connection {
            try? await connection.channel.close()
        }
    }

    private func execute(_ request: HTTPRequest, streamResponse: Bool, deadline: NIODeadline) async throws
        -> HTTPResponse
    {
        let connection = try await self.connection(deadline: deadline)
        let handler = connection.handler
        let loop = connection.channel.eventLoop
        let cancellation = CallCancellation()
        return try await withTaskCancellationHandler {
            try await loop.flatSubmit {
                handler.value.startRequest(
                    request,
                    streamResponse: streamResponse,
                    deadline: deadline,
                    cancellation: cancellation,
                    on: loop
                )
            }.get()
        } onCancel: {
            loop.execute { handler.value.cancelRequest(cancellation) }
        }
    }

    private enum Step {
        case use(PeerConnection)
        case wait(EventLoopFuture<PeerConnection>)
        case fail(HTTP2ClientError)
    }

    private func connection(deadline: NIODeadline, ignoringBackoff: Bool = false) async throws -> PeerConnection {
        let step = self.shared.withLockedValue { shared -> Step in
            switch shared.machine.connectionNeeded(now: .now(), ignoringBackoff: ignoringBackoff) {
            case .useConnection:
                if let connection = shared.connection { return .use(connection) }
                return .fail(HTTP2ClientError(.connectionClosed, peer: self.peer, detail: "no open connection"))
            case .joinConnectAttempt:
                if let pending = shared.pendingConnect { return .wait(pending) }
                return .fail(HTTP2ClientError(.connectionClosed, peer: self.peer, detail: "no connect in flight"))
            case .startConnecting(let attempt):
                let pending = self.connect(attempt: attempt)
                shared.pendingConnect = pending
                return .wait(pending)
            case .failFast(let retryIn):
                let last = shared.lastError.map { $0.detail } ?? "the last connect failed"
                return .fail(
                    HTTP2ClientError(
                        .peerUnavailable,
                        peer: self.peer,
                        detail: "\(last); not retrying for another \(retryIn.nanoseconds / 1_000_000) ms",
                        connectWasRefused: shared.lastError?.connectWasRefused ?? false,
                        connectWasReset: shared.lastError?.connectWasReset ?? false
                    )
                )
            case .failClosed:
                return .fail(HTTP2ClientError(.clientClosed, peer: self.peer, detail: "the client was closed"))
            }
        }
        switch step {
        case .use(let connection):
            return connection
        case .fail(let error):
            throw error
        case .wait(let pending):
            // Each caller waits for the shared connect only until its own deadline.
            let loop = pending.eventLoop
            let bounded = loop.makePromise(of: PeerConnection.self)
            pending.cascade(to: bounded)
            let timer = loop.scheduleTask(deadline: deadline) {
                bounded.fail(
                    HTTP2ClientError(.deadlineExceeded, peer: self.peer, detail: "the deadline passed while connecting")
                )
            }
            defer { timer.cancel() }
            return try await bounded.futureResult.get()
        }
    }

    /// Opens the TCP connection and installs the session; called with the lock held, so it only starts work.
    private func connect(attempt: UInt64) -> EventLoopFuture<PeerConnection> {
        let shared = self.shared
        let settings = ClientSessionSettings(
            peer: self.peer,
            maxResponseBodySize: self.configuration.maxResponseBodySize,
            maxHeaderListSize: self.configuration.maxHeaderListSize,
            initialStreamWindowSize: self.configuration.initialStreamWindowSize,
            connectionWindowSize: self.configuration.connectionWindowSize,
            keepalive: self.configuration.pingInterval.map { ($0, self.configuration.pingTimeout) },
            onUnusable: {
                shared.withLockedValue { $0.machine.connectionLost(attempt: attempt) }
            },
            onPingAnswered: { [weak self] in self?.pings.add(1, ordering: .relaxed) }
        )
        let peer = self.peer
        let group = self.group
        let connectTimeout = self.configuration.connectTimeout
        let promise = self.group.any().makePromise(of: PeerConnection.self)
        let host = self.configuration.host
        let port = self.configuration.port
        promise.completeWithTask {
            do {
                let bootstrap = ClientBootstrap(group: group)
                    // TCP level, not `.socketOption` (SOL_SOCKET option 1 is SO_DEBUG; see HTTP2Server).
                    .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .channelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
                    .connectTimeout(connectTimeout)
                let connection = try await bootstrap.connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = NGHTTP2Connection(role: .client(settings))
                        try channel.pipeline.syncOperations.addHandler(handler)
                        return PeerConnection(
                            channel: channel,
                            handler: NIOLoopBound(handler, eventLoop: channel.eventLoop),
                            attempt: attempt
                        )
                    }
                }
                // Ready once the peer's SETTINGS arrived, so its stream limit is known before requests go out.
                let loop = connection.channel.eventLoop
                let handler = connection.handler
                // A peer that accepts TCP but never speaks HTTP/2 must not wedge the connect forever.
                let ready = loop.makePromise(of: Void.self)
                loop.execute { handler.value.peerSettingsReceived(on: loop).cascade(to: ready) }
                let timer = loop.scheduleTask(in: connectTimeout) {
                    ready.fail(
                        HTTP2ClientError(
                            .connectionRefused,
                            peer: peer,
                            detail: "the peer accepted TCP but sent no HTTP/2 SETTINGS within \(connectTimeout)"
                        )
                    )
                }
                do {
                    try await ready.futureResult.get()
                    timer.cancel()
                } catch {
                    timer.cancel()
                    connection.channel.close(promise: nil)
                    throw error
                }
                return connection
            } catch let error as HTTP2ClientError {
                throw error
            } catch {
                throw HTTP2ClientError.connectFailed(peer: peer, error)
            }
        }
        promise.futureResult.whenComplete { result in
            switch result {
            case .success(let connection):
                let keep = shared.withLockedValue { shared -> Bool in
                    shared.pendingConnect = nil
                    guard shared.machine.connectSucceeded(attempt: attempt) else { return false }
                    shared.connection = connection
                    shared.lastError = nil
                    return true
                }
                guard keep else {
                    connection.channel.close(promise: nil)
                    return
                }
                connection.channel.closeFuture.whenComplete { _ in
                    let report = shared.withLockedValue { shared -> (@Sendable () -> Void)? in
                        shared.machine.connectionLost(attempt: attempt)
                        if shared.connection?.attempt == attempt {
                            shared.connection = nil
                        }
                        if case .closed = shared.machine.state { return nil }
                        return shared.onConnectionLost
                    }
                    report?()
                }
            case .failure(let error):
                shared.withLockedValue { shared in
                    shared.pendingConnect = nil
                    shared.machine.connectFailed(attempt: attempt, now: .now())
                    shared.lastError = error as? HTTP2ClientError
                }
            }
        }
        return promise.futureResult
    }
}

/// A request body pushed chunk by chunk on one stream (`HTTP2Client.openPushStream`).
public final class HTTP2PushStream: Sendable {
    private let handler: NIOLoopBound<NGHTTP2Connection>
    private let streamID: Int32
    /// The connection's event loop: `push` and `cancel` must be called on it.
    public let eventLoop: any EventLoop
    /// The server's answer, when it ends the exchange; a failure when the stream or connection closes.
    public let response: EventLoopFuture<HTTPResponse>

    init(
        handler: NIOLoopBound<NGHTTP2Connection>, streamID: Int32, eventLoop: any EventLoop,
        response: EventLoopFuture<HTTPResponse>
    ) {
        self.handler = handler
        self.streamID = streamID
        self.eventLoop = eventLoop
        self.response = response
    }

    /// Queues `chunk` and writes it at once (on `eventLoop`). Returns the bytes still waiting for
    /// the peer's flow-control window or the socket, or nil when the stream is gone (then nothing
    /// was queued).
    public func push(_ chunk: ByteBuffer) -> Int? {
        self.handler.value.pushOutbound(streamID: self.streamID, chunk)
    }

    /// The bytes a pusher should keep queued at most: past this, wait for `drained()`.
    public static let highWatermark = NGHTTP2Connection.outboundHighWatermark

    /// Completes (on `eventLoop`) once the queued bytes are down to a low watermark, at once when
    /// they are: a pusher whose `push` returned `highWatermark` or more waits for it, so the
    /// peer's flow control paces it; fails when the stream goes away first.
    public func drained() -> EventLoopFuture<Void> {
        self.handler.value.outboundDrained(streamID: self.streamID, on: self.eventLoop)
    }

    /// Ends the body (on `eventLoop`): END_STREAM follows the last queued byte.
    public func finish() {
        self.handler.value.finishOutbound(streamID: self.streamID)
    }

    /// Resets the stream (on `eventLoop`): the peer sees the body end without completing.
    public func cancel() {
        self.handler.value.abortOutbound(streamID: self.streamID)
    }
}
