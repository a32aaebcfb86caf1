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

/// A paced sink: records what it takes, holds each piece's credit until the test gives it back
/// (or gives it at once when `creditAtOnce`), answers when the test says.
private final class PacedSink: PacedRequestBodySink, Sendable {
    let bytes = Mutex<[UInt8]>([])
    let credits = Mutex<[RequestBodyCredit]>([])
    let creditAtOnce = Mutex(false)
    let responder = Mutex<HTTPResponder?>(nil)
    let aborted = Mutex(false)

    func receive(_ piece: ByteBuffer, credit: RequestBodyCredit) throws {
        bytes.withLock { $0.append(contentsOf: piece.readableBytesView) }
        if creditAtOnce.withLock({ $0 }) {
            credit.give()
        } else {
            credits.withLock { $0.append(credit) }
        }
    }

    /// Gives back every credit held, and from now on credits at once.
    func release() {
        creditAtOnce.withLock { $0 = true }
        for credit in credits.withLock({ held in
            defer { held = [] }; return held
        }) { credit.give() }
    }

    func finish(responder: HTTPResponder) { self.responder.withLock { $0 = responder } }
    func abort() { aborted.withLock { $0 = true } }
    func receive(_ bytes: UnsafeRawBufferPointer) throws {}
    func finish() -> HTTPResponse { HTTPResponse(status: 500) }
}

@Suite struct PacedSinkTests {
    static let window = 256 << 10

    private static func router(_ sink: PacedSink) -> Router {
        var router = Router()
        router.addSink(.post, "/paced") { _, _ in sink }
        return router
    }

    /// The peer sends no more than one stream window until the sink gives credit back; a pusher
    /// that queued more is not drained until then; the body's end waits for the sink's answer.
    @Test func theSenderWaitsForTheSinksCreditAndTheAnswerForItsResponder() async throws {
        let sink = PacedSink()
        try await withServer(Self.router(sink), configure: { $0.initialStreamWindowSize = Self.window }) { _, port in
            try await withClient(port: port) { client in
                let stream = try await client.openPushStream(
                    HTTPRequest(method: .post, path: "/paced"), deadline: testDeadline())
                let outcome = Outcome(stream.response)
                let total = 3 << 20
                let queued = try await stream.eventLoop.submit { () -> Int? in
                    var queued: Int?
                    for offset in stride(from: 0, to: total, by: 64 << 10) {
                        queued = stream.push(patternBuffer(offset: offset, count: 64 << 10))
                    }
                    return queued
                }.get()
                #expect((queued ?? 0) >= HTTP2PushStream.highWatermark)
                let drained = try await stream.eventLoop.submit { stream.drained() }.get()
                try await eventually("a window's worth arrives") { sink.bytes.withLock { $0.count } >= Self.window }
                // Without credit, not a byte more than the window; the pusher still waits.
                #expect(sink.bytes.withLock { $0.count } == Self.window)
                #expect(try await !drained.isCompleted())

                sink.release()
                try await drained.get()
                try await stream.eventLoop.submit { stream.finish() }.get()
                try await eventually("the sink has the whole body and its end") {
                    sink.responder.withLock { $0 } != nil
                }
                #expect(sink.bytes.withLock { $0 } == Array(patternBuffer(count: total).readableBytesView))
                // No answer until the sink gives it.
                #expect(outcome.result.withLock { $0 } == nil)
                sink.responder.withLock { $0 }!.respond(HTTPResponse(status: 201))
                #expect(try await stream.response.get().status == 201)
                #expect(!sink.aborted.withLock { $0 })
            }
        }
    }

    /// A stream reset before its end tells the sink, which can then stop what it feeds.
    @Test func aStreamResetBeforeItsEndAbortsTheSink() async throws {
        let sink = PacedSink()
        sink.creditAtOnce.withLock { $0 = true }
        try await withServer(Self.router(sink)) { _, port in
            try await withClient(port: port) { client in
                let stream = try await client.openPushStream(
                    HTTPRequest(method: .post, path: "/paced"), deadline: testDeadline())
                _ = try await stream.eventLoop.submit { stream.push(patternBuffer(count: 1000)) }.get()
                try await eventually("the first bytes arrive") { sink.bytes.withLock { $0.count } == 1000 }
                try await stream.eventLoop.submit { stream.cancel() }.get()
                try await eventually("the sink learns the stream ended early") { sink.aborted.withLock { $0 } }
                #expect(sink.responder.withLock { $0 } == nil)
            }
        }
    }
}

extension EventLoopFuture {
    /// Whether it has completed, looked at on its event loop.
    fileprivate func isCompleted() async throws -> Bool {
        try await self.eventLoop.submit {
            let done = Mutex(false)
            // On its loop a completed future runs the callback at once.
            self.whenComplete { _ in done.withLock { $0 = true } }
            return done.withLock { $0 }
        }.get()
    }
}
