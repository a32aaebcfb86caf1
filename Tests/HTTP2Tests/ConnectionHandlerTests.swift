// The connection handler's lifecycle on EmbeddedChannels: a server and a client talking through memory, no socket.
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import HTTP2

@Suite struct ConnectionHandlerTests {
    let loop = EmbeddedEventLoop()

    @Test func aServerStartsItsSessionWhenTheChannelBecomesActiveAndSendsItsSettings() throws {
        let server = NGHTTP2Connection(role: .server(serverSettings(Router())))
        let channel = EmbeddedChannel(handler: server, loop: self.loop)
        #expect(server.lifecycle.state == .idle)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)

        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        guard case .open(let open) = server.lifecycle.state, case .awaitingFirstBytes = open.handshake else {
            Issue.record("expected a session waiting for the client's first bytes, got \(server.lifecycle.state)")
            return
        }
        #expect(try frameTypes(written: channel) == [settingsFrame, windowUpdateFrame], "and the connection's window")
        try closeAndRemove(channel)
        #expect(server.lifecycle.state == .closed)
    }

    @Test func aHandlerAddedToAnActiveChannelStartsItsSessionAtOnce() throws {
        // As the protocol sniffer does, once the first bytes said HTTP/2.
        let channel = EmbeddedChannel(loop: self.loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let server = NGHTTP2Connection(role: .server(serverSettings(Router())))
        try channel.pipeline.syncOperations.addHandler(server)
        #expect(server.lifecycle.liveSession != nil)
        #expect(try frameTypes(written: channel) == [settingsFrame, windowUpdateFrame], "and the connection's window")
        try closeAndRemove(channel)
    }

    @Test func aPeerThatDoesNotSpeakHTTP2IsClosedAndItsBytesAfterwardsIgnored() throws {
        let server = NGHTTP2Connection(role: .server(serverSettings(Router())))
        let channel = EmbeddedChannel(handler: server, loop: self.loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        _ = try frameTypes(written: channel)

        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nhost: example\r\n\r\n"))
        #expect(!channel.isActive)
        guard case .closing(let closing) = server.lifecycle.state else {
            Issue.record("expected a closing connection, got \(server.lifecycle.state)")
            return
        }
        #expect(closing.session != nil, "the session lives until the handler is removed")
        try channel.writeInbound(ByteBuffer(string: "more"))
        self.loop.run()
        #expect(server.lifecycle.state == .closed)
    }

    @Test func aClientIsReadyWhenTheServersSettingsArrive() throws {
        let pair = try ConnectionPair(router: Router(), loop: self.loop)
        let ready = outcome(of: pair.client.peerSettingsReceived(on: self.loop))
        #expect(ready.withLockedValue { $0 } == nil)

        let carried = try pair.exchange()
        #expect(carried.toClient.first == settingsFrame)
        let result = try #require(ready.withLockedValue { $0 })
        #expect(throws: Never.self) { try result.get() }
        #expect(pair.client.lifecycle.peerSettingsWait == .ready)
        try pair.close()
    }

    @Test func aClientWhoseChannelClosesDuringTheHandshakeFailsTheWaitAndIsRemoved() throws {
        let pair = try ConnectionPair(router: Router(), loop: self.loop)
        let ready = outcome(of: pair.client.peerSettingsReceived(on: self.loop))

        try pair.clientChannel.close().wait()
        let failure = try #require(ready.withLockedValue { $0 }?.failure)
        #expect((failure as? HTTP2ClientError)?.kind == .connectionClosed)
        #expect(pair.unusable.withLockedValue { $0 } == 1, "the client learns before its callers do")
        self.loop.run()
        #expect(pair.client.lifecycle.state == .closed)
        let late = outcome(of: pair.client.peerSettingsReceived(on: self.loop))
        #expect(late.withLockedValue { $0 }?.failure != nil)
        try pair.close()
    }

    @Test func aGracefulShutdownLetsTheRequestInFlightFinishAndRefusesNewOnes() throws {
        let responder = NIOLockedValueBox<HTTPResponder?>(nil)
        var router = Router()
        router.addDeferred(.get, "/slow") { _, _, respond in responder.withLockedValue { $0 = respond } }
        let pair = try ConnectionPair(router: router, loop: self.loop)
        try pair.exchange()

        let inFlight = outcome(of: pair.send(HTTPRequest(method: .get, path: "/slow")))
        try pair.exchange()
        #expect(responder.withLockedValue { $0 } != nil, "the server is working on the request")

        pair.serverChannel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        guard case .quiescing = pair.server.lifecycle.state else {
            Issue.record("expected a quiescing server, got \(pair.server.lifecycle.state)")
            return
        }
        #expect(try pair.exchange().toClient == [goawayFrame])
        #expect(pair.serverChannel.isActive, "a stream is still in flight")
        #expect(pair.client.lifecycle.peerSentGoaway)
        #expect(pair.unusable.withLockedValue { $0 } == 1, "the client opens a new connection for new calls")
        let refused = outcome(of: pair.send(HTTPRequest(method: .get, path: "/slow")))
        let refusal = try #require(refused.withLockedValue { $0 }?.failure)
        #expect((refusal as? HTTP2ClientError)?.kind == .goaway)

        responder.withLockedValue { $0 }?.respond(HTTPResponse(status: 200, body: .string("done")))
        try pair.exchange()
        let response = try #require(try inFlight.withLockedValue { $0 }?.get())
        #expect(response.status == 200)
        #expect(!pair.serverChannel.isActive, "nothing is left to do, so the server closed")
        #expect(pair.server.lifecycle.state == .closed)
        try pair.close()
    }

    @Test func aClientWithKeepalivePINGsThePeerEachIntervalAndNotesTheAnswer() throws {
        let pair = try ConnectionPair(router: Router(), loop: self.loop, keepalive: (.seconds(1), .seconds(5)))
        try pair.exchange()

        self.loop.advanceTime(by: .seconds(1))
        guard case .open(let waiting) = pair.client.lifecycle.state else {
            Issue.record("expected an open client, got \(pair.client.lifecycle.state)")
            return
        }
        #expect(waiting.pingSentAt != nil)

        let carried = try pair.exchange()
        #expect(carried.toServer == [pingFrame])
        #expect(carried.toClient == [pingFrame], "the answer: a PING with the ACK flag")
        guard case .open(let answered) = pair.client.lifecycle.state else {
            Issue.record("expected an open client, got \(pair.client.lifecycle.state)")
            return
        }
        #expect(answered.pingSentAt == nil)
        try pair.close()
    }
}

// MARK: Two handlers joined through memory

/// A client and a server handler on two EmbeddedChannels sharing one loop; `exchange` carries the
/// bytes each writes to the other.
private struct ConnectionPair {
    let server: NGHTTP2Connection
    let client: NGHTTP2Connection
    let serverChannel: EmbeddedChannel
    let clientChannel: EmbeddedChannel
    let loop: EmbeddedEventLoop
    /// How often the client handler said the connection is no good for new requests.
    let unusable = NIOLockedValueBox(0)

    init(router: Router, loop: EmbeddedEventLoop, keepalive: (TimeAmount, TimeAmount)? = nil) throws {
        let unusable = self.unusable
        self.loop = loop
        self.server = NGHTTP2Connection(role: .server(serverSettings(router)))
        self.client = NGHTTP2Connection(
            role: .client(
                ClientSessionSettings(
                    peer: "server", maxResponseBodySize: 1 << 20, maxHeaderListSize: 64 << 10,
                    initialStreamWindowSize: 1 << 20, connectionWindowSize: 16 << 20, keepalive: keepalive,
                    onUnusable: { unusable.withLockedValue { $0 += 1 } })))
        self.serverChannel = EmbeddedChannel(handler: self.server, loop: loop)
        self.clientChannel = EmbeddedChannel(handler: self.client, loop: loop)
        try self.serverChannel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try self.clientChannel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
    }

    /// Carries bytes both ways (running queued flushes) until neither side has more to say, and
    /// returns the types of the frames carried each way.
    @discardableResult
    func exchange() throws -> (toServer: [UInt8], toClient: [UInt8]) {
        var carried: (toServer: [UInt8], toClient: [UInt8]) = ([], [])
        while true {
            self.loop.run()
            let toServer = try written(by: self.clientChannel)
            let toClient = try written(by: self.serverChannel)
            if toServer.isEmpty && toClient.isEmpty { return carried }
            carried.toServer += frameTypes(in: toServer)
            carried.toClient += frameTypes(in: toClient)
            for bytes in toServer where self.serverChannel.isActive { try self.serverChannel.writeInbound(bytes) }
            for bytes in toClient where self.clientChannel.isActive { try self.clientChannel.writeInbound(bytes) }
        }
    }

    func send(_ request: HTTPRequest) -> EventLoopFuture<HTTPResponse> {
        self.client.startRequest(
            request, streamResponse: false, deadline: nil, cancellation: CallCancellation(), on: self.loop)
    }

    func close() throws {
        _ = try self.clientChannel.finish(acceptAlreadyClosed: true)
        _ = try self.serverChannel.finish(acceptAlreadyClosed: true)
        self.loop.run()
    }
}

private func serverSettings(_ router: Router) -> ServerSessionSettings {
    ServerSessionSettings(
        router: router, maxConcurrentStreams: 256, maxHeaderListSize: 16 << 10, maxRequestBodySize: 8 << 20,
        requestTimeout: .seconds(30), connectionSetupTimeout: .seconds(10), initialStreamWindowSize: 1 << 20,
        connectionWindowSize: 16 << 20, runsHandlersOnEventLoop: false)
}

private func closeAndRemove(_ channel: EmbeddedChannel) throws {
    _ = try channel.finish(acceptAlreadyClosed: true)
    (channel.eventLoop as? EmbeddedEventLoop)?.run()
}

/// Holds what a future ended with, as soon as it ends (the loop runs on the test's thread).
private func outcome<Value: Sendable>(
    of future: EventLoopFuture<Value>
) -> NIOLockedValueBox<Result<Value, any Error>?> {
    let box = NIOLockedValueBox<Result<Value, any Error>?>(nil)
    future.whenComplete { result in box.withLockedValue { $0 = result } }
    return box
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

// MARK: Frames on the wire

private let settingsFrame: UInt8 = 0x4
private let pingFrame: UInt8 = 0x6
private let goawayFrame: UInt8 = 0x7
private let windowUpdateFrame: UInt8 = 0x8

private func written(by channel: EmbeddedChannel) throws -> [ByteBuffer] {
    var buffers: [ByteBuffer] = []
    while let buffer = try channel.readOutbound(as: ByteBuffer.self) { buffers.append(buffer) }
    return buffers
}

/// The types of the frames a channel wrote since last asked.
private func frameTypes(written channel: EmbeddedChannel) throws -> [UInt8] {
    frameTypes(in: try written(by: channel))
}

/// The types of the frames in `buffers` (after the client preface, if they start with it): each
/// frame is a 9-byte header (length in 24 bits, type, flags, stream id), then the payload (RFC 9113 §4.1).
private func frameTypes(in buffers: [ByteBuffer]) -> [UInt8] {
    var bytes = ByteBuffer()
    for var buffer in buffers { bytes.writeBuffer(&buffer) }
    if bytes.readableBytesView.starts(with: ProtocolSniffer.preface) {
        bytes.moveReaderIndex(forwardBy: ProtocolSniffer.preface.count)
    }
    var types: [UInt8] = []
    while let header = bytes.readBytes(length: 9) {
        let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
        types.append(header[3])
        bytes.moveReaderIndex(forwardBy: length)
    }
    return types
}
