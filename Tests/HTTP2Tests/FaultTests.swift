// Faults: dead peers, vanishing clients, malformed bytes and limits; after each the server still answers.
import Foundation
import HTTP2
import NIOConcurrencyHelpers
import NIOCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct FaultTests {
    /// A route that proves the server still answers after a fault.
    static func router(events: AsyncStream<String>.Continuation? = nil) -> Router {
        var router = Router()
        router.get("/ping") { _, _ in .json("\"pong\"") }
        router.post("/collect") { request, _ in .json("\(request.body.collectedCount)") }
        router.post("/upload", body: .stream) { request, _ in
            var received = 0
            do {
                for try await chunk in request.body.chunks {
                    if received == 0 { events?.yield("first chunk") }
                    received += chunk.readableBytes
                }
                events?.yield("complete")
            } catch {
                events?.yield("body failed")
                throw error
            }
            return .json("\(received)")
        }
        return router
    }

    private func expectServerAnswers(port: Int) async throws {
        try await withClient(port: port) { client in
            let response = try await client.send(HTTPRequest(method: .get, path: "/ping"), deadline: testDeadline())
            #expect(response.status == 200)
            #expect(String(buffer: try await response.body.collect(upTo: 64)) == "\"pong\"")
        }
    }

    /// A server whose port is taken fails to start with an error, and dropping it is harmless (a
    /// node whose start fails drops its servers; a debug build once stopped over the promise
    /// `run()` waits on, which nothing had completed).
    @Test func aServerThatCannotBindFailsToStartAndCanBeDropped() async throws {
        let holder = HTTP2Server(configuration: .init(host: "127.0.0.1", port: 0), router: Self.router())
        let port = try await holder.start()
        do {
            let second = HTTP2Server(configuration: .init(host: "127.0.0.1", port: port), router: Self.router())
            await #expect(throws: (any Error).self) { try await second.start() }
        }
        for _ in 0..<3 { _ = HTTP2Server(configuration: .init(host: "127.0.0.1", port: 0), router: Self.router()) }
        try await expectServerAnswers(port: port)
        await holder.shutdown()
    }

    @Test func serverKilledMidStreamFailsTheCallInsteadOfHanging() async throws {
        let bench = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("flotilla-bench")
        try #require(
            FileManager.default.isExecutableFile(atPath: bench.path),
            "flotilla-bench is not built next to the tests; run `swift build --build-tests` first"
        )
        let process = Process()
        process.executableURL = bench
        process.arguments = ["http2-server", "--port", "0", "--body-size", "\(64 << 20)", "--threads", "1"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        defer { process.waitUntilExit() }
        let line = await readLine(output.fileHandleForReading)
        let port = try #require(line.split(separator: ":").last.flatMap { Int($0) }, "unexpected output: \(line)")

        try await withClient(port: port) { client in
            let response = try await client.stream(HTTPRequest(method: .get, path: "/big"), deadline: testDeadline())
            #expect(response.status == 200)
            guard case .stream(let body) = response.body else {
                Issue.record("a streamed call must return a streamed body")
                return
            }
            var iterator = body.makeAsyncIterator()
            _ = try await iterator.next()
            kill(process.processIdentifier, SIGKILL)
            let error = await #expect(throws: HTTP2ClientError.self) {
                while try await iterator.next() != nil {}
            }
            #expect(error?.kind == .connectionClosed)

            // The peer is gone: the next call fails rather than waiting for its (minute-long) deadline.
            // A connect racing the dying process's listener may be accepted and then reset, so a closed
            // connection is as good an answer as a refused one.
            let next = await #expect(throws: HTTP2ClientError.self) {
                _ = try await client.send(HTTPRequest(method: .get, path: "/"), deadline: testDeadline())
            }
            let failedFast: Set<HTTP2ClientError.Kind> = [.connectionRefused, .peerUnavailable, .connectionClosed]
            #expect(next.map { failedFast.contains($0.kind) } == true, "got \(String(describing: next))")
        }
    }

    @Test func clientVanishingMidUploadLeavesTheServerServing() async throws {
        let (events, eventSink) = AsyncStream<String>.makeStream()
        try await withServer(Self.router(events: eventSink)) { _, port in
            let (upload, uploadSink) = AsyncStream<ByteBuffer>.makeStream()
            let client = HTTP2Client(configuration: .init(host: "127.0.0.1", port: port))
            let call = Task {
                try await client.send(
                    HTTPRequest(method: .post, path: "/upload", body: .stream(HTTPBodyStream(upload))),
                    deadline: testDeadline()
                )
            }
            uploadSink.yield(patternBuffer(count: 64 << 10))
            var seen = events.makeAsyncIterator()
            #expect(await seen.next() == "first chunk")
            await client.close()
            #expect(await seen.next() == "body failed")
            await #expect(throws: HTTP2ClientError.self) { try await call.value }
            uploadSink.finish()
            try await self.expectServerAnswers(port: port)
        }
    }

    @Test(arguments: [false, true])
    func garbageInsteadOfPrefaceClosesOnlyThatConnection(acceptsHTTP1: Bool) async throws {
        try await withServer(Self.router(), configure: { $0.acceptsHTTP1 = acceptsHTTP1 }) { _, port in
            let garbage = [UInt8](repeating: 0xA5, count: 64) + Array("\r\n\r\n".utf8)
            let received = try await rawExchange(port: port, sending: garbage)
            if acceptsHTTP1 {
                // Not the HTTP/2 preface, so it went to the HTTP/1.1 parser, which rejects it.
                #expect(String(decoding: received, as: UTF8.self).hasPrefix("HTTP/1.1 400"))
            } else {
                // nghttp2 rejects the bad preface; nothing but its own SETTINGS, WINDOW_UPDATE or GOAWAY was sent.
                #expect(parseFrames(received).allSatisfy { [0x4, 0x7, 0x8].contains($0.type) })
            }
            try await self.expectServerAnswers(port: port)
        }
    }

    @Test(arguments: [false, true])
    func connectionThatNeverSendsAPrefaceIsClosed(acceptsHTTP1: Bool) async throws {
        try await withServer(
            Self.router(),
            configure: {
                $0.acceptsHTTP1 = acceptsHTTP1
                // Long enough that the healthy client below gets its preface in even on a machine
                // whose cores are busy with builds (200 ms was not, once).
                $0.connectionSetupTimeout = .seconds(1)
            }
        ) { _, port in
            let peer = try await RawPeer.connect(port: port)
            for await _ in peer.received {}  // ends when the server closes the connection
            try await self.expectServerAnswers(port: port)
        }
    }

    @Test func oversizedFrameGetsGoawayWithFrameSizeError() async throws {
        try await withServer(Self.router()) { _, port in
            let bytes =
                clientPreface + frame(type: 0x4)  // empty SETTINGS
                + frame(type: 0x1, flags: 0x4, stream: 1, length: 1 << 20, payload: [UInt8](repeating: 0, count: 64))
            let received = try await rawExchange(port: port, sending: bytes)
            let goaway = try #require(parseFrames(received).first { $0.type == 0x7 }, "no GOAWAY in \(received)")
            let payload = Array(goaway.payload)
            try #require(payload.count >= 8)
            let errorCode =
                UInt32(payload[4]) << 24 | UInt32(payload[5]) << 16 | UInt32(payload[6]) << 8 | UInt32(payload[7])
            #expect(errorCode == 0x6, "expected FRAME_SIZE_ERROR (6), got \(errorCode)")
            try await self.expectServerAnswers(port: port)
        }
    }

    @Test func gracefulShutdownSendsGoawayAndCloses() async throws {
        let server = HTTP2Server(configuration: .init(host: "127.0.0.1", port: 0), router: Self.router())
        let port = try await server.start()
        let peer = try await RawPeer.connect(port: port)
        // SETTINGS, then a PING: its ACK proves the server's session is up before shutting down.
        try await peer.send(
            clientPreface + frame(type: 0x4) + frame(type: 0x6, payload: [UInt8](repeating: 7, count: 8)))
        var bytes: [UInt8] = []
        var iterator = peer.received.makeAsyncIterator()
        while !parseFrames(bytes).contains(where: { $0.type == 0x6 && $0.flags & 0x1 != 0 }) {
            guard let more = await iterator.next() else { break }
            bytes += more
        }
        await server.shutdown()
        while let more = await iterator.next() {
            bytes += more
        }
        let goaway = try #require(parseFrames(bytes).first { $0.type == 0x7 }, "no GOAWAY before the close")
        let payload = Array(goaway.payload)
        try #require(payload.count >= 8)
        #expect(payload[4..<8].allSatisfy { $0 == 0 }, "expected NO_ERROR in \(payload)")
    }

    @Test func headerListOverTheLimitGets431() async throws {
        try await withServer(Self.router(), configure: { $0.maxHeaderListSize = 4 << 10 }) { _, port in
            try await withClient(port: port) { client in
                var headers = HTTPFields()
                for index in 0..<16 {
                    headers.append(name: "x-filler-\(index)", value: String(repeating: "v", count: 512))
                }
                let response = try await client.send(
                    HTTPRequest(method: .get, path: "/ping", headers: headers),
                    deadline: testDeadline()
                )
                #expect(response.status == 431)
                let body = String(buffer: try await response.body.collect(upTo: 1 << 10))
                #expect(body.contains("\"request_header_fields_too_large\""))
            }
            try await self.expectServerAnswers(port: port)
        }
    }

    @Test func bodyOverTheLimitGets413() async throws {
        try await withServer(Self.router(), configure: { $0.maxRequestBodySize = 1 << 20 }) { _, port in
            try await withClient(port: port) { client in
                let declared = try await client.send(
                    HTTPRequest(method: .post, path: "/collect", body: .buffer(patternBuffer(count: 2 << 20))),
                    deadline: testDeadline()
                )
                #expect(declared.status == 413)
                // Without content-length the limit is enforced as the bytes arrive.
                let streamed = try await client.send(
                    HTTPRequest(
                        method: .post,
                        path: "/collect",
                        body: .stream(HTTPBodyStream(PatternStream(total: 2 << 20, chunkSize: 64 << 10)))
                    ),
                    deadline: testDeadline()
                )
                #expect(streamed.status == 413)
                let body = String(buffer: try await streamed.body.collect(upTo: 1 << 10))
                #expect(body.contains("\"payload_too_large\""))
            }
            try await self.expectServerAnswers(port: port)
        }
    }

    @Test func streamThatNeverSendsItsBodyTimesOutWith408() async throws {
        try await withServer(Self.router(), configure: { $0.requestTimeout = .milliseconds(200) }) { _, port in
            let (upload, uploadSink) = AsyncStream<ByteBuffer>.makeStream()
            defer { uploadSink.finish() }
            try await withClient(port: port) { client in
                let response = try await client.send(
                    HTTPRequest(method: .post, path: "/collect", body: .stream(HTTPBodyStream(upload))),
                    deadline: testDeadline()
                )
                #expect(response.status == 408)
                let body = String(buffer: try await response.body.collect(upTo: 1 << 10))
                #expect(body.contains("\"request_timeout\""))
            }
            try await self.expectServerAnswers(port: port)
        }
    }

    @Test func streamsBeyondTheConcurrencyLimitWaitTheirTurn() async throws {
        try await withServer(Self.router(), configure: { $0.maxConcurrentStreams = 4 }) { _, port in
            try await withClient(port: port) { client in
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<100 {
                        group.addTask {
                            try await client.send(HTTPRequest(method: .get, path: "/ping"), deadline: testDeadline())
                                .status
                        }
                    }
                    for try await status in group {
                        #expect(status == 200)
                    }
                }
            }
        }
    }
}

extension HTTPBody {
    /// The chunks of a streamed body, or the buffer as one chunk.
    var chunks: HTTPBodyStream {
        switch self {
        case .buffer(let buffer): HTTPBodyStream(chunks: [buffer])
        case .stream(let stream): stream
        }
    }

    /// The byte count of a collected body (0 for a stream, which collect routes never see).
    var collectedCount: Int {
        if case .buffer(let buffer) = self { return buffer.readableBytes }
        return 0
    }
}

/// Reads one line from a child's stdout without blocking the cooperative pool.
private func readLine(_ handle: FileHandle) async -> String {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread {
            var data = Data()
            while !data.contains(UInt8(ascii: "\n")) {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                data.append(chunk)
            }
            let line = String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
            continuation.resume(returning: line)
        }
    }
}
