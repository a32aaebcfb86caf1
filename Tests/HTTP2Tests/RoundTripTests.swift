// Our client against our server over h2c: round trips, many concurrent streams, 64 MiB bodies, backpressure.
import HTTP2
import NIOConcurrencyHelpers
import NIOCore
import Testing

@Suite struct RoundTripTests {
    static func echoRouter() -> Router {
        var router = Router()
        router.get("/v1/vms/{name}") { request, parameters in
            var response = HTTPResponse.json("{\"name\": \(quoted(parameters["name"] ?? ""))}")
            response.headers["x-query"] = request.query ?? ""
            return response
        }
        router.post("/echo") { request, _ in HTTPResponse(status: 200, body: request.body) }
        router.post("/stream-echo", body: .stream) { request, _ in HTTPResponse(status: 200, body: request.body) }
        router.get("/n/{index}") { _, parameters in .json(parameters["index"] ?? "") }
        return router
    }

    private static func quoted(_ text: String) -> String { "\"\(text)\"" }

    @Test func getRoundTripCarriesPathParametersQueryAndHeaders() async throws {
        try await withServer(Self.echoRouter()) { _, port in
            try await withClient(port: port) { client in
                let response = try await client.send(
                    HTTPRequest(method: .get, target: "/v1/vms/web-1?owner=n2"),
                    deadline: testDeadline()
                )
                #expect(response.status == 200)
                #expect(response.headers["content-type"] == "application/json")
                #expect(response.headers["x-query"] == "owner=n2")
                let body = try await response.body.collect(upTo: 1 << 10)
                #expect(String(buffer: body) == #"{"name": "web-1"}"#)
            }
        }
    }

    /// The server splits `:path` at its first `?` and hands the handler the method, path, query,
    /// authority and fields it received, whether the request had a body to collect first or none;
    /// a HEAD request's answer keeps its fields and drops its body.
    @Test(arguments: [
        ("GET", "/echo-request/a%20b", nil, "/echo-request/a%20b", "<none>", "a b"),
        ("GET", "/echo-request/p?", nil, "/echo-request/p", "", "p"),
        ("GET", "/echo-request/p?a=1?b=/2", nil, "/echo-request/p", "a=1?b=/2", "p"),
        ("POST", "/echo-request/q?x=y", "hello", "/echo-request/q", "x=y", "q"),
        ("HEAD", "/echo-request/h?z", nil, "/echo-request/h", "z", "h"),
    ])
    func serverHandsOverTheRequestAsReceived(
        method: String, target: String, body: String?, path: String, query: String, parameter: String
    ) async throws {
        var router = Router()
        let answer: Router.Handler = { request, parameters in
            let received = try await request.body.collect(upTo: 1 << 10)
            return HTTPResponse(
                status: 200,
                headers: [
                    "x-method": request.method.rawValue, "x-path": request.path, "x-query": request.query ?? "<none>",
                    "x-authority": request.authority ?? "<none>", "x-agent": request.headers["x-agent"] ?? "<none>",
                    "x-parameter": parameters["name"] ?? "<none>",
                ],
                body: .string("got \(received.readableBytes)"))
        }
        router.get("/echo-request/{name}", handler: answer)
        router.post("/echo-request/{name}", handler: answer)
        try await withServer(router) { _, port in
            try await withClient(port: port) { client in
                let response = try await client.send(
                    HTTPRequest(
                        method: HTTPMethod(rawValue: method), target: target, authority: "example.test:1",
                        headers: ["x-agent": "round-trip/1"], body: body.map(HTTPBody.string) ?? .empty),
                    deadline: testDeadline())
                #expect(response.status == 200)
                #expect(response.headers["x-method"] == method)
                #expect(response.headers["x-path"] == path)
                #expect(response.headers["x-query"] == query)
                #expect(response.headers["x-authority"] == "example.test:1")
                #expect(response.headers["x-agent"] == "round-trip/1")
                #expect(response.headers["x-parameter"] == parameter)
                let received = String(buffer: try await response.body.collect(upTo: 1 << 10))
                #expect(received == (method == "HEAD" ? "" : "got \(body?.utf8.count ?? 0)"))
            }
        }
    }

    /// Each request on a connection gets its own `:authority`, whether it repeats the one before
    /// (which the server reuses) or not.
    @Test func eachRequestGetsItsOwnAuthority() async throws {
        var router = Router()
        router.get("/authority") { request, _ in .json("\"\(request.authority ?? "<none>")\"") }
        try await withServer(router) { _, port in
            try await withClient(port: port) { client in
                for authority in ["a.test:1", "a.test:1", "b.test:22", "a.test:1", "a.test:2", "b.test:2", "a.test:2"] {
                    let response = try await client.send(
                        HTTPRequest(method: .get, path: "/authority", authority: authority), deadline: testDeadline())
                    let body = String(buffer: try await response.body.collect(upTo: 1 << 10))
                    #expect(body == "\"\(authority)\"")
                }
            }
        }
    }

    /// The server writes `:status` and `content-length` as digits straight into the header block:
    /// one, two, several and zero digits, and a handler's own content-length is kept, not doubled.
    @Test func statusAndContentLengthArriveAsWritten() async throws {
        var router = Router()
        router.get("/sized/{status}/{length}") { _, parameters in
            HTTPResponse(
                status: Int(parameters["status"] ?? "") ?? 500,
                body: .buffer(ByteBuffer(repeating: UInt8(ascii: "x"), count: Int(parameters["length"] ?? "") ?? 0)))
        }
        router.get("/own-length") { _, _ in
            HTTPResponse(status: 200, headers: ["content-length": "3"], body: .string("abc"))
        }
        try await withServer(router) { _, port in
            try await withClient(port: port) { client in
                for (status, length) in [(200, 0), (200, 7), (201, 10), (404, 1024), (503, 100_000), (299, 99_999)] {
                    let response = try await client.send(
                        HTTPRequest(method: .get, path: "/sized/\(status)/\(length)"), deadline: testDeadline())
                    #expect(response.status == status)
                    #expect(response.headers.values(for: "content-length") == ["\(length)"])
                    #expect(try await response.body.collect(upTo: 1 << 20).readableBytes == length)
                }
                let own = try await client.send(
                    HTTPRequest(method: .get, path: "/own-length"), deadline: testDeadline())
                #expect(own.headers.values(for: "content-length") == ["3"])
                #expect(String(buffer: try await own.body.collect(upTo: 16)) == "abc")
            }
        }
    }

    @Test func unknownRouteAnswers404WithJSONError() async throws {
        try await withServer(Self.echoRouter()) { _, port in
            try await withClient(port: port) { client in
                let response = try await client.send(HTTPRequest(method: .get, path: "/nope"), deadline: testDeadline())
                #expect(response.status == 404)
                let body = String(buffer: try await response.body.collect(upTo: 1 << 10))
                #expect(body == #"{"error": "not_found", "detail": "no route for GET /nope"}"#)
            }
        }
    }

    @Test(arguments: [true, false])
    func thousandConcurrentRequestsShareOneConnection(runsHandlersOnEventLoop: Bool) async throws {
        try await withServer(
            Self.echoRouter(),
            configure: { $0.runsHandlersOnEventLoop = runsHandlersOnEventLoop }
        ) { server, port in
            try await withClient(port: port) { client in
                let bodies = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                    for index in 0..<1000 {
                        group.addTask {
                            let response = try await client.send(
                                HTTPRequest(method: .get, path: "/n/\(index)"),
                                deadline: testDeadline()
                            )
                            return (index, String(buffer: try await response.body.collect(upTo: 64)))
                        }
                    }
                    var bodies: [Int: String] = [:]
                    for try await (index, body) in group {
                        bodies[index] = body
                    }
                    return bodies
                }
                #expect(bodies.count == 1000)
                #expect(bodies.allSatisfy { String($0.key) == $0.value })
                #expect(server.acceptedConnections == 1)
            }
        }
    }

    /// Handlers that suspend must not hold up handlers dispatched after them on the same connection
    /// (the server shares one task between handlers until one suspends).
    @Test(arguments: [true, false])
    func suspendedHandlersDoNotHoldUpOthers(runsHandlersOnEventLoop: Bool) async throws {
        let (gate, gateSink) = AsyncStream<Void>.makeStream()
        defer { gateSink.finish() }
        var router = Router()
        router.get("/wait/{index}") { _, parameters in
            for await _ in gate {}
            return .json(parameters["index"] ?? "")
        }
        router.get("/fast/{index}") { _, parameters in .json(parameters["index"] ?? "") }
        try await withServer(router, configure: { $0.runsHandlersOnEventLoop = runsHandlersOnEventLoop }) { _, port in
            try await withClient(port: port) { client in
                // Waiting and fast calls interleaved, so they share the server's read bursts and batches.
                var waiting: [Task<HTTPResponse, any Error>] = []
                var fast: [Task<HTTPResponse, any Error>] = []
                for index in 0..<100 {
                    let path = index % 2 == 0 ? "/wait/\(index / 2)" : "/fast/\(index / 2)"
                    // A stuck batch would show as deadlineExceeded here rather than as a hang.
                    let call = Task {
                        try await client.send(HTTPRequest(method: .get, path: path), deadline: .now() + .seconds(20))
                    }
                    if index % 2 == 0 { waiting.append(call) } else { fast.append(call) }
                }
                // Every fast call completes while the waiting ones are still suspended.
                for (index, call) in fast.enumerated() {
                    let response = try await call.value
                    #expect(String(buffer: try await response.body.collect(upTo: 16)) == "\(index)")
                }
                gateSink.finish()
                for (index, call) in waiting.enumerated() {
                    let response = try await call.value
                    #expect(String(buffer: try await response.body.collect(upTo: 16)) == "\(index)")
                }
                // Later bursts (whose calls reuse the finished batches' storage) are answered too.
                for round in 0..<3 {
                    let later = (0..<40).map { index in
                        Task {
                            try await client.send(
                                HTTPRequest(method: .get, path: "/fast/\(round * 100 + index)"),
                                deadline: .now() + .seconds(20))
                        }
                    }
                    for (index, call) in later.enumerated() {
                        let response = try await call.value
                        #expect(String(buffer: try await response.body.collect(upTo: 16)) == "\(round * 100 + index)")
                    }
                }
            }
        }
    }

    @Test func sixtyFourMiBBufferedBodiesArriveByteIdentical() async throws {
        let size = 64 << 20
        try await withServer(Self.echoRouter(), configure: { $0.maxRequestBodySize = size }) { _, port in
            try await withClient(port: port) { client in
                let request = HTTPRequest(method: .post, path: "/echo", body: .buffer(patternBuffer(count: size)))
                let response = try await client.send(request, deadline: testDeadline())
                #expect(response.status == 200)
                #expect(try await verifyPattern(response.body) == size)
            }
        }
    }

    @Test func sixtyFourMiBStreamedBodiesArriveByteIdentical() async throws {
        let size = 64 << 20
        try await withServer(Self.echoRouter()) { _, port in
            try await withClient(port: port) { client in
                let upload = HTTPBodyStream(PatternStream(total: size, chunkSize: 256 << 10))
                let response = try await client.stream(
                    HTTPRequest(method: .post, path: "/stream-echo", body: .stream(upload)),
                    deadline: testDeadline()
                )
                #expect(response.status == 200)
                #expect(try await verifyPattern(response.body) == size)
            }
        }
    }

    /// A reader that takes the body chunk by chunk never lets the producer run more than a bounded
    /// amount ahead: the stream window plus the outbound buffer, never the whole 64 MiB.
    @Test func slowReaderBoundsWhatTheServerProduces() async throws {
        let size = 64 << 20
        let produced = NIOLockedValueBox(0)
        var router = Router()
        router.get("/big") { _, _ in
            HTTPResponse(
                body: .stream(HTTPBodyStream(PatternStream(total: size, chunkSize: 64 << 10, produced: produced))))
        }
        let bound = 4 << 20
        try await withServer(router) { _, port in
            try await withClient(port: port) { client in
                let response = try await client.stream(
                    HTTPRequest(method: .get, path: "/big"), deadline: testDeadline())
                var worstLead = 0
                let total = try await verifyPattern(response.body) { consumed in
                    worstLead = max(worstLead, produced.withLockedValue { $0 } - consumed)
                }
                #expect(total == size)
                #expect(worstLead <= bound, "the producer ran \(worstLead) bytes ahead of the reader")
            }
        }
    }

    /// The same in the other direction: a handler that reads the upload slowly bounds the client's producer.
    @Test func slowHandlerBoundsWhatTheClientUploads() async throws {
        let size = 64 << 20
        let produced = NIOLockedValueBox(0)
        let worstLead = NIOLockedValueBox(0)
        var router = Router()
        router.post("/sink", body: .stream) { request, _ in
            let total = try await verifyPattern(request.body) { consumed in
                let lead = produced.withLockedValue { $0 } - consumed
                worstLead.withLockedValue { $0 = max($0, lead) }
            }
            return .json("\(total)")
        }
        try await withServer(router) { _, port in
            try await withClient(port: port) { client in
                let upload = HTTPBodyStream(PatternStream(total: size, chunkSize: 64 << 10, produced: produced))
                let response = try await client.send(
                    HTTPRequest(method: .post, path: "/sink", body: .stream(upload)),
                    deadline: testDeadline()
                )
                #expect(String(buffer: try await response.body.collect(upTo: 64)) == "\(size)")
                let lead = worstLead.withLockedValue { $0 }
                #expect(lead <= 4 << 20, "the client produced \(lead) bytes ahead of the handler")
            }
        }
    }

    /// A computed body (a migration's pages) goes both ways byte for byte although its chunk
    /// function refills one buffer for every chunk, and every chunk is made on an event loop.
    @Test func computedBodiesArriveByteIdenticalAndAreMadeOnTheLoop() async throws {
        let size = 64 << 20
        let offLoop = NIOLockedValueBox(0)
        var router = Self.echoRouter()
        router.get("/computed") { _, _ in
            HTTPResponse(body: .stream(computedPattern(total: size, chunkSize: 100_000, offLoop: offLoop)))
        }
        try await withServer(router) { _, port in
            try await withClient(port: port) { client in
                let upload = computedPattern(total: size, chunkSize: 256 << 10, offLoop: offLoop)
                let echoed = try await client.stream(
                    HTTPRequest(method: .post, path: "/stream-echo", body: .stream(upload)), deadline: testDeadline())
                #expect(echoed.status == 200)
                #expect(try await verifyPattern(echoed.body) == size)
                let served = try await client.stream(
                    HTTPRequest(method: .get, path: "/computed"), deadline: testDeadline())
                #expect(try await verifyPattern(served.body) == size)
            }
        }
        #expect(offLoop.withLockedValue { $0 } == 0, "chunks were asked for off the event loop")
    }

    /// A computed upload is made only as fast as the handler reads it, as an awaited one is.
    @Test func slowHandlerBoundsAComputedUpload() async throws {
        let size = 64 << 20
        let produced = NIOLockedValueBox(0)
        let worstLead = NIOLockedValueBox(0)
        var router = Router()
        router.post("/sink", body: .stream) { request, _ in
            let total = try await verifyPattern(request.body) { consumed in
                let lead = produced.withLockedValue { $0 } - consumed
                worstLead.withLockedValue { $0 = max($0, lead) }
            }
            return .json("\(total)")
        }
        try await withServer(router) { _, port in
            try await withClient(port: port) { client in
                let response = try await client.send(
                    HTTPRequest(
                        method: .post, path: "/sink",
                        body: .stream(computedPattern(total: size, chunkSize: 64 << 10, produced: produced))),
                    deadline: testDeadline()
                )
                #expect(String(buffer: try await response.body.collect(upTo: 64)) == "\(size)")
                let lead = worstLead.withLockedValue { $0 }
                #expect(lead <= 4 << 20, "the client computed \(lead) bytes ahead of the handler")
            }
        }
    }
}
