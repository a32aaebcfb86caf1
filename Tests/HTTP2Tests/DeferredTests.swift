// Deferred handlers: a route answered later through its responder, from any thread, with no task.
import HTTP2
import NIOCore
import Synchronization
import Testing

@Suite struct DeferredTests {
    private static func router() -> Router {
        var router = Router()
        // Answers at once, inside the handler.
        router.addDeferred(.get, "/now") { _, _, responder in
            responder.respond(.json("\"now\""))
        }
        // Answers twice, later, from a task on the global executor: the first answer counts.
        router.addDeferred(.put, "/later/{name}") { request, parameters, responder in
            let name = parameters["name"] ?? ""
            let size: Int
            if case .buffer(let body) = request.body { size = body.readableBytes } else { size = -1 }
            Task {
                try? await Task.sleep(for: .milliseconds(50))
                responder.respond(.json("{\"name\": \"\(name)\", \"bytes\": \(size)}"))
                responder.respond(.json("\"second\""))
            }
        }
        // Fails, later: the error becomes the answer as a thrown one would.
        router.addDeferred(.post, "/fails") { _, _, responder in
            Task { responder.fail(HTTPError(status: 409, error: "conflict", detail: "it is taken")) }
        }
        return router
    }

    private static func text(_ response: HTTPResponse) -> String {
        if case .buffer(let body) = response.body { return String(buffer: body) }
        return ""
    }

    @Test func deferredAnswersArriveWhetherGivenAtOnceOrLaterFromAnotherThread() async throws {
        try await withServer(Self.router()) { _, port in
            try await withClient(port: port) { client in
                let now = try await client.send(HTTPRequest(method: .get, path: "/now"), deadline: testDeadline())
                #expect(now.status == 200 && Self.text(now) == "\"now\"")
                // Many at once on one connection, each with its own answer.
                try await withThrowingTaskGroup(of: (Int, HTTPResponse).self) { group in
                    for index in 0..<50 {
                        group.addTask {
                            let request = HTTPRequest(
                                method: .put, path: "/later/vm-\(index)",
                                body: .buffer(ByteBuffer(bytes: [UInt8](repeating: 1, count: index))))
                            return (index, try await client.send(request, deadline: testDeadline()))
                        }
                    }
                    for try await (index, response) in group {
                        #expect(response.status == 200)
                        #expect(Self.text(response) == "{\"name\": \"vm-\(index)\", \"bytes\": \(index)}")
                    }
                }
                let failed = try await client.send(HTTPRequest(method: .post, path: "/fails"), deadline: testDeadline())
                #expect(failed.status == 409)
                #expect(Self.text(failed).contains("it is taken"))
            }
        }
    }

    @Test func aDeferredRouteOverHTTP1() async throws {
        let curl = try #require(toolPath("curl"), "curl is installed by scripts/install-deps.sh")
        try await withServer(Self.router(), configure: { $0.acceptsHTTP1 = true }) { _, port in
            let (status, out, err) = try await runTool(
                curl, ["-sS", "--http1.1", "-X", "PUT", "--data-binary", "abc", "http://127.0.0.1:\(port)/later/x"])
            #expect(status == 0, "curl failed: \(err)")
            #expect(String(decoding: out, as: UTF8.self) == "{\"name\": \"x\", \"bytes\": 3}")
        }
    }
}
