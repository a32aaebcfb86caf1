// Sink routes and pushed request bodies: one long-lived request that carries a stream of messages.
import HTTP2
import NIOCore
import Synchronization
import TestSupport
import Testing

/// What the server's sinks received; written on the connection's event loop, read by the test.
private final class Received: Sendable {
    let bytes = Mutex<[UInt8]>([])
    let opened = Mutex(0)
    /// The largest piece of body one `receive` was given.
    let largest = Mutex(0)
}

/// Records every byte; throws 421 on a chunk that holds `refusedByte`.
private final class RecordingSink: RequestBodySink {
    let received: Received
    let refusedByte: UInt8?

    init(received: Received, refusedByte: UInt8?) {
        self.received = received
        self.refusedByte = refusedByte
    }

    func receive(_ bytes: UnsafeRawBufferPointer) throws {
        if let refusedByte, bytes.contains(refusedByte) {
            throw HTTPError(status: 421, error: "refused byte", detail: "the chunk holds \(refusedByte)")
        }
        received.bytes.withLock { $0.append(contentsOf: bytes) }
        received.largest.withLock { $0 = max($0, bytes.count) }
    }

    func finish() -> HTTPResponse {
        HTTPResponse(status: 204)
    }
}

/// Whether a future has completed, and how, without waiting for it.
private final class Outcome: Sendable {
    let result = Mutex<Result<HTTPResponse, any Error>?>(nil)

    init(_ future: EventLoopFuture<HTTPResponse>) {
        future.whenComplete { result in self.result.withLock { $0 = result } }
    }

    var response: HTTPResponse? {
        if case .success(let response)? = result.withLock({ $0 }) { return response }
        return nil
    }
    var failed: Bool {
        if case .failure? = result.withLock({ $0 }) { return true }
        return false
    }
}

@Suite struct SinkTests {
    private static func router(_ received: Received, refusedByte: UInt8? = nil) -> Router {
        var router = Router()
        router.addSink(.post, "/stream") { request, _ in
            received.opened.withLock { $0 += 1 }
            if request.headers["x-refuse"] != nil {
                throw HTTPError(status: 403, error: "refused", detail: "the request asked to be refused")
            }
            return RecordingSink(received: received, refusedByte: refusedByte)
        }
        return router
    }

    private static func push(_ chunk: ByteBuffer, on stream: HTTP2PushStream) async throws -> Int? {
        try await stream.eventLoop.submit { stream.push(chunk) }.get()
    }

    @Test func pushedChunksReachTheSinkInOrderWhileTheRequestStaysOpen() async throws {
        let received = Received()
        try await withServer(Self.router(received)) { _, port in
            try await withClient(port: port) { client in
                let stream = try await client.openPushStream(
                    HTTPRequest(method: .post, path: "/stream"), deadline: testDeadline())
                let outcome = Outcome(stream.response)
                var sent = 0
                // Sizes from 1 byte to beyond a DATA frame (16 KiB) and the 64 KiB default window.
                for size in [1, 2, 100, 16_383, 16_385, 70_000, 3, 1 << 20, 5] {
                    #expect(try await Self.push(patternBuffer(offset: sent, count: size), on: stream) != nil)
                    sent += size
                }
                try await eventually("every byte received") { received.bytes.withLock { $0.count } == sent }
                let bytes = received.bytes.withLock { $0 }
                #expect(bytes == Array(patternBuffer(count: sent).readableBytesView))
                // One request in all, and no answer while its body goes on.
                #expect(received.opened.withLock { $0 } == 1)
                #expect(outcome.result.withLock { $0 } == nil)
            }
        }
    }

    @Test func aSinkThatThrowsAnswersWithItsErrorAndTheStreamIsThenGone() async throws {
        let received = Received()
        try await withServer(Self.router(received, refusedByte: 0xEE)) { _, port in
            try await withClient(port: port) { client in
                let stream = try await client.openPushStream(
                    HTTPRequest(method: .post, path: "/stream"), deadline: testDeadline())
                let outcome = Outcome(stream.response)
                #expect(try await Self.push(ByteBuffer(bytes: [1, 2, 3]), on: stream) != nil)
                #expect(try await Self.push(ByteBuffer(bytes: [4, 0xEE, 5]), on: stream) != nil)
                try await eventually("the answer") { outcome.response != nil }
                #expect(outcome.response?.status == 421)
                #expect(received.bytes.withLock { $0 } == [1, 2, 3])
                try await eventually("the stream is gone") {
                    try await Self.push(ByteBuffer(bytes: [6]), on: stream) == nil
                }
                // The connection is still good for other requests.
                let again = try await client.openPushStream(
                    HTTPRequest(method: .post, path: "/stream"), deadline: testDeadline())
                #expect(try await Self.push(ByteBuffer(bytes: [7]), on: again) != nil)
                try await eventually("the new stream's byte") { received.bytes.withLock { $0 } == [1, 2, 3, 7] }
            }
        }
    }

    @Test func anOpenerThatThrowsAnswersAtOnce() async throws {
        let received = Received()
        try await withServer(Self.router(received)) { _, port in
            try await withClient(port: port) { client in
                var headers = HTTPFields()
                headers.append(name: "x-refuse", value: "yes")
                let stream = try await client.openPushStream(
                    HTTPRequest(method: .post, path: "/stream", headers: headers), deadline: testDeadline())
                let response = try await stream.response.get()
                #expect(response.status == 403)
                if case .buffer(let body) = response.body {
                    #expect(String(buffer: body).contains("the request asked to be refused"))
                } else {
                    Issue.record("the error body was not collected")
                }
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func shuttingTheServerDownAnswersOpenSinksAndLaterPushesFindTheStreamGone() async throws {
        let received = Received()
        var configuration = HTTP2Server.Configuration(host: "127.0.0.1", port: 0)
        // Long enough that a test waiting for it would time out: the sink must be answered at once.
        configuration.shutdownGracePeriod = .seconds(120)
        let server = HTTP2Server(configuration: configuration, router: Self.router(received))
        let port = try await server.start()
        try await withClient(port: port) { client in
            let stream = try await client.openPushStream(
                HTTPRequest(method: .post, path: "/stream"), deadline: testDeadline())
            #expect(try await Self.push(ByteBuffer(bytes: [1]), on: stream) != nil)
            try await eventually("the byte") { received.bytes.withLock { $0 } == [1] }
            // The grace period is two minutes, longer than the test's limit: only an open sink
            // answered at once lets the shutdown return in time.
            await server.shutdown()
            #expect(try await stream.response.get().status == 204)
            try await eventually("the stream is gone") {
                try await Self.push(ByteBuffer(bytes: [2]), on: stream) == nil
            }
        }
    }

    /// A listener that raises SETTINGS_MAX_FRAME_SIZE and its read size gets an upload in pieces
    /// larger than a 16 KiB frame (our client sends frames as large as the server allows); one
    /// that does not, in frames of 16 KiB at most. Either way the bytes are the same.
    @Test(arguments: [false, true])
    func largerFramesReachTheSinkInLargerPieces(raised: Bool) async throws {
        let received = Received()
        let size = 16 << 20
        try await withServer(
            Self.router(received),
            configure: { configuration in
                guard raised else { return }
                configuration.maxFrameSize = 1 << 20
                configuration.maxReadSize = 1 << 20
                configuration.initialStreamWindowSize = 4 << 20
            }
        ) { _, port in
            try await withClient(port: port) { client in
                let response = try await client.send(
                    HTTPRequest(
                        method: .post, path: "/stream",
                        body: .stream(computedPattern(total: size, chunkSize: 256 << 10))),
                    deadline: testDeadline())
                #expect(response.status == 204)
            }
        }
        #expect(received.bytes.withLock { $0 } == Array(buffer: patternBuffer(count: size)))
        let largest = received.largest.withLock { $0 }
        if raised {
            #expect(largest > 16 << 10, "the largest piece was \(largest) bytes")
        } else {
            #expect(largest <= 16 << 10, "the largest piece was \(largest) bytes")
        }
    }

    @Test func aSinkRouteOverHTTP1GetsTheWholeBody() async throws {
        let received = Received()
        let curl = try #require(toolPath("curl"), "curl is installed by scripts/install-deps.sh")
        try await withServer(Self.router(received), configure: { $0.acceptsHTTP1 = true }) { _, port in
            let (status, out, err) = try await runTool(
                curl,
                [
                    "-sS", "--http1.1", "-w", "%{http_code}", "--data-binary", "one piece",
                    "http://127.0.0.1:\(port)/stream",
                ])
            #expect(status == 0, "curl failed: \(err)")
            #expect(String(decoding: out, as: UTF8.self) == "204")
            #expect(received.bytes.withLock { $0 } == Array("one piece".utf8))
        }
    }
}
