// The HTTP/2 (h2c) server: binds a port, runs each connection's nghttp2 session, drains on shutdown.
import NIOConcurrencyHelpers
public import NIOCore
import NIOHTTP1
public import NIOPosix

/// A cleartext HTTP/2 server (prior knowledge, h2c) that answers requests through a `Router`.
///
/// With `acceptsHTTP1` the same port also speaks HTTP/1.1: each connection's first bytes are compared
/// with the 24-byte HTTP/2 client preface and the matching protocol is installed. Usage:
///
/// ```swift
/// let server = HTTP2Server(configuration: .init(host: "127.0.0.1", port: 0), router: router)
/// let port = try await server.start()      // bound; port 0 picks a free one
/// try await server.run()                   // returns after shutdown() has drained every connection
/// ```
public final class HTTP2Server: Sendable {
    /// Where to listen and the limits each connection enforces.
    public struct Configuration: Sendable {
        public var host: String
        /// 0 asks the OS for a free port; `start()` reports the bound one.
        public var port: Int
        /// SETTINGS_MAX_CONCURRENT_STREAMS per connection; more streams are refused by nghttp2.
        public var maxConcurrentStreams: Int = 256
        /// SETTINGS_MAX_HEADER_LIST_SIZE; a request over it is answered 431.
        public var maxHeaderListSize: Int = 16 << 10
        /// The largest body a `.collect` route accepts; a larger one is answered 413.
        public var maxRequestBodySize: Int = 8 << 20
        /// How long a request may go without receiving any of its body before it is answered 408.
        public var requestTimeout: TimeAmount = .seconds(30)
        /// How long a new connection may take to send its first bytes (the preface) before it is
        /// closed. Separate from `requestTimeout` so a short request timeout never races a busy
        /// client's connection set-up.
        public var connectionSetupTimeout: TimeAmount = .seconds(10)
        /// The flow-control window per stream: the most body bytes buffered for one slow reader.
        public var initialStreamWindowSize: Int = 1 << 20
        /// The flow-control window for the whole connection.
        public var connectionWindowSize: Int = 16 << 20
        /// The most bytes one read takes from a connection's socket (reads grow towards it while they
        /// come back full). NIO's default, 64 KiB, costs a read and a pass through nghttp2 per 64 KiB;
        /// a listener that takes bulk uploads gains from more.
        public var maxReadSize: Int = 64 << 10
        /// SETTINGS_MAX_FRAME_SIZE: the largest frame a client may send, 16 KiB (the protocol's
        /// least) to 16 MiB − 1. Larger DATA frames mean fewer frames and body callbacks per byte
        /// for bulk uploads, at the cost of other streams waiting behind a long frame.
        public var maxFrameSize: Int = 16 << 10
        /// Whether the port also serves HTTP/1.1 (the client API); peer ports leave this off.
        public var acceptsHTTP1: Bool = false
        /// Whether handler tasks start on their connection's event loop (fast: no thread hop per request)
        /// rather than on the global executor. Either way a handler must not block its thread.
        public var runsHandlersOnEventLoop: Bool = true
        /// How long `shutdown()` waits for in-flight requests before closing connections forcibly.
        public var shutdownGracePeriod: TimeAmount = .seconds(10)

        public init(host: String = "127.0.0.1", port: Int = 0, acceptsHTTP1: Bool = false) {
            self.host = host
            self.port = port
            self.acceptsHTTP1 = acceptsHTTP1
        }
    }

    private enum State {
        case idle
        case running(any Channel)
        case shuttingDown
        case stopped
    }

    public let configuration: Configuration
    private let router: Router
    private let group: any EventLoopGroup
    private let state = NIOLockedValueBox(State.idle)
    private let connections = ConnectionRegistry()
    private let finished: EventLoopPromise<Void>

    public init(
        configuration: Configuration,
        router: Router,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        self.router = router
        self.group = eventLoopGroup
        self.finished = eventLoopGroup.any().makePromise()
    }

    deinit {
        // A server dropped without a completed shutdown (its start failed: the port was taken, say)
        // still completes `finished`: NIO stops a debug build over a promise that is never completed.
        // One whose shutdown completed has completed it: completing it again would schedule on its
        // event loop, which may be shut down by now (a node drops its data server after its loops).
        let stopped = self.state.withLockedValue { state in
            if case .stopped = state { return true }
            return false
        }
        if !stopped { self.finished.succeed() }
    }

    /// The port the server listens on, once started.
    public var port: Int? {
        self.state.withLockedValue { state in
            if case .running(let channel) = state { return channel.localAddress?.port }
            return nil
        }
    }

    /// How many connections the server has accepted since it started (a count for metrics and tests).
    public var acceptedConnections: Int { self.connections.acceptedCount }

    /// Binds the listening socket and returns the bound port; calling it again returns the same port.
    @discardableResult
    public func start() async throws -> Int {
        if let port = self.port { return port }
        let settings = ServerSessionSettings(
            router: self.router,
            maxConcurrentStreams: self.configuration.maxConcurrentStreams,
            maxHeaderListSize: self.configuration.maxHeaderListSize,
            maxRequestBodySize: self.configuration.maxRequestBodySize,
            requestTimeout: self.configuration.requestTimeout,
            connectionSetupTimeout: self.configuration.connectionSetupTimeout,
            initialStreamWindowSize: self.configuration.initialStreamWindowSize,
            connectionWindowSize: self.configuration.connectionWindowSize,
            runsHandlersOnEventLoop: self.configuration.runsHandlersOnEventLoop,
            maxFrameSize: self.configuration.maxFrameSize
        )
        let acceptsHTTP1 = self.configuration.acceptsHTTP1
        let connections = self.connections
        let channel = try await ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // A TCP-level option: `.socketOption(.tcp_nodelay)` would set SOL_SOCKET option 1, SO_DEBUG,
            // which needs CAP_NET_ADMIN and so fails every connection inside a container.
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
            .childChannelOption(
                .recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(
                    minimum: 64, initial: 2048, maximum: self.configuration.maxReadSize)
            )
            .childChannelInitializer { channel in
                connections.add(channel)
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if acceptsHTTP1 {
                        try sync.addHandler(ProtocolSniffer(settings: settings))
                    } else {
                        try sync.addHandler(NGHTTP2Connection(role: .server(settings)))
                    }
                }
            }
            .bind(host: self.configuration.host, port: self.configuration.port)
            .get()
        let accepted = self.state.withLockedValue { state -> Bool in
            guard case .idle = state else { return false }
            state = .running(channel)
            return true
        }
        guard accepted else {
            try? await channel.close()
            throw HTTPError.serviceUnavailable("the server was shut down or started twice concurrently")
        }
        return channel.localAddress?.port ?? self.configuration.port
    }

    /// Starts the server if needed and waits until `shutdown()` has drained it (at once if it already has).
    public func run() async throws {
        let needsStart = self.state.withLockedValue { state in
            if case .idle = state { return true }
            return false
        }
        if needsStart {
            try await self.start()
        }
        try await self.finished.futureResult.get()
    }

    /// Stops accepting, sends GOAWAY on every connection, waits for in-flight streams (at most
    /// `shutdownGracePeriod`), then closes what is left. `run()` returns once this completes.
    public func shutdown() async {
        enum Step {
            case drain(any Channel)
            case finishNow
            case waitForOtherShutdown
        }
        let step = self.state.withLockedValue { state -> Step in
            switch state {
            case .running(let channel):
                state = .shuttingDown
                return .drain(channel)
            case .idle:
                state = .stopped
                return .finishNow
            case .shuttingDown, .stopped:
                return .waitForOtherShutdown
            }
        }
        let channel: any Channel
        switch step {
        case .finishNow:
            self.finished.succeed()
            return
        case .waitForOtherShutdown:
            try? await self.finished.futureResult.get()
            return
        case .drain(let listening):
            channel = listening
        }
        try? await channel.close()
        await self.connections.drain(gracePeriod: self.configuration.shutdownGracePeriod)
        self.state.withLockedValue { $0 = .stopped }
        self.finished.succeed()
    }
}

/// The open connections, so shutdown can ask each to quiesce and wait for it to close.
final class ConnectionRegistry: Sendable {
    private let channels = NIOLockedValueBox([ObjectIdentifier: any Channel]())
    private let accepted = NIOLockedValueBox(0)

    var acceptedCount: Int { self.accepted.withLockedValue { $0 } }

    func add(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        self.accepted.withLockedValue { $0 += 1 }
        self.channels.withLockedValue { $0[key] = channel }
        channel.closeFuture.whenComplete { _ in
            self.channels.withLockedValue { _ = $0.removeValue(forKey: key) }
        }
    }

    func drain(gracePeriod: TimeAmount) async {
        let open = self.channels.withLockedValue { Array($0.values) }
        for channel in open {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        await withTaskGroup(of: Void.self) { group in
            for channel in open {
                group.addTask {
                    let forced = channel.eventLoop.scheduleTask(in: gracePeriod) {
                        channel.close(promise: nil)
                    }
                    try? await channel.closeFuture.get()
                    forced.cancel()
                }
            }
        }
    }
}

/// Reads a connection's first bytes and installs HTTP/2 (they are the client preface) or HTTP/1.1.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    /// RFC 9113 §3.4: the client connection preface.
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private let settings: ServerSessionSettings
    private var buffered: ByteBuffer?
    /// Closes a connection that does not say which protocol it speaks within `connectionSetupTimeout`.
    private var decisionTimeout: Scheduled<Void>?

    init(settings: ServerSessionSettings) {
        self.settings = settings
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        self.decisionTimeout = context.eventLoop.scheduleTask(in: self.settings.connectionSetupTimeout) {
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.decisionTimeout?.cancel()
        self.decisionTimeout = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        if self.buffered == nil {
            self.buffered = incoming
        } else {
            self.buffered!.writeBuffer(&incoming)
        }
        let bytes = self.buffered!.readableBytesView
        let compared = min(bytes.count, Self.preface.count)
        let isHTTP2 = bytes.prefix(compared).elementsEqual(Self.preface.prefix(compared))
        if isHTTP2 && compared < Self.preface.count {
            return  // a prefix of the preface so far: wait for more
        }
        do {
            let sync = context.pipeline.syncOperations
            if isHTTP2 {
                try sync.addHandler(NGHTTP2Connection(role: .server(self.settings)), position: .after(self))
            } else {
                let handler = HTTP1Connection(
                    router: self.settings.router,
                    maxRequestBodySize: self.settings.maxRequestBodySize
                )
                try sync.addHandler(handler, position: .after(self))
                try sync.configureHTTPServerPipeline(position: .after(self), withErrorHandling: true)
            }
        } catch {
            context.close(promise: nil)
            return
        }
        let replay = self.buffered!
        self.buffered = nil
        context.fireChannelRead(self.wrapInboundOut(replay))
        context.fireChannelReadComplete()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Nothing was decided yet, so nothing is in flight: close.
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

extension ProtocolSniffer {
    typealias InboundOut = ByteBuffer
}
