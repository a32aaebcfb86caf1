// Router matching and error mapping, without sockets.
import NIOCore
import Testing

@testable import HTTP2

@Suite struct RouterTests {
    private func router() -> Router {
        var router = Router()
        router.get("/v1/vms") { _, _ in .json("[]") }
        router.get("/v1/vms/{name}") { _, parameters in .json("\"\(parameters["name"] ?? "")\"") }
        router.get("/v1/vms/all") { _, _ in .json("\"all\"") }
        router.delete("/v1/vms/{name}") { _, parameters in
            throw HTTPError.notFound("no VM named \(parameters["name"] ?? "")")
        }
        router.post("/v1/crash") { _, _ in throw CancellationError() }
        return router
    }

    @Test func parameterIsCapturedAndPercentDecoded() async throws {
        let response = await router().respond(to: HTTPRequest(method: .get, target: "/v1/vms/web%2D1?x=1"))
        #expect(response.status == 200)
        #expect(try await response.body.collect(upTo: 100) == ByteBuffer(string: "\"web-1\""))
    }

    @Test func rootAndRepeatedSlashesAndMalformedEscapes() async throws {
        var router = Router()
        router.get("/") { _, _ in .json("\"root\"") }
        router.get("/files/{name}") { _, parameters in .json(parameters["name"] ?? "") }
        let root = await router.respond(to: HTTPRequest(method: .get, path: "/"))
        #expect(try await root.body.collect(upTo: 100) == ByteBuffer(string: "\"root\""))
        let doubled = await router.respond(to: HTTPRequest(method: .get, path: "//files//a%zz%4"))
        #expect(try await doubled.body.collect(upTo: 100) == ByteBuffer(string: "a%zz%4"))
        let head = await router.respond(to: HTTPRequest(method: .head, path: "/files/x"))
        #expect(head.status == 200)
    }

    @Test func literalSegmentWinsOverParameter() async throws {
        let response = await router().respond(to: HTTPRequest(method: .get, path: "/v1/vms/all"))
        #expect(try await response.body.collect(upTo: 100) == ByteBuffer(string: "\"all\""))
    }

    @Test func unknownPathIs404WithJSONBody() async throws {
        let response = await router().respond(to: HTTPRequest(method: .get, path: "/v2/nothing"))
        #expect(response.status == 404)
        #expect(response.headers["content-type"] == "application/json")
        let body = try await response.body.collect(upTo: 1000)
        #expect(
            String(buffer: body) == #"{"error": "not_found", "detail": "no route for GET /v2/nothing"}"#
        )
    }

    @Test func wrongMethodIs405WithAllowHeader() async throws {
        let response = await router().respond(to: HTTPRequest(method: .put, path: "/v1/vms/a"))
        #expect(response.status == 405)
        #expect(response.headers["allow"] == "GET, DELETE")
    }

    @Test func parametersOfNoneOneAndTwoSegmentsAreCapturedAndCompare() throws {
        var router = Router()
        router.get("/a") { _, _ in .json("[]") }
        router.get("/v/{name}") { _, _ in .json("[]") }
        router.put("/v/{name}") { _, _ in .json("[]") }
        router.get("/v/{name}/disks/{disk}") { _, _ in .json("[]") }
        func parameters(_ method: HTTPMethod, _ path: String) -> (HTTPMethod, RouteParameters)? {
            guard case .found(let route, let parameters) = router.match(method: method, path: path) else { return nil }
            return (route.method, parameters)
        }
        let none = try #require(parameters(.get, "/a"))
        #expect(none.1.values.isEmpty && none.1["name"] == nil)
        #expect(none.1 == RouteParameters())
        let one = try #require(parameters(.get, "/v/web%201"))
        #expect(one.1.values == ["name": "web 1"])
        #expect(one.1["name"] == "web 1" && one.1["disk"] == nil)
        #expect(one.1 == RouteParameters(["name": "web 1"]) && one.1 != RouteParameters(["name": "web"]))
        let put = try #require(parameters(.put, "/v/web"))
        #expect(put.0 == .put && put.1["name"] == "web")
        let two = try #require(parameters(.get, "/v/x/disks/d0"))
        #expect(two.1.values == ["name": "x", "disk": "d0"])
        #expect(two.1["name"] == "x" && two.1["disk"] == "d0")
        #expect(two.1 == RouteParameters(["disk": "d0", "name": "x"]) && two.1 != one.1)
        guard case .methodNotAllowed(let allowed) = router.match(method: .delete, path: "/v/web") else {
            Issue.record("DELETE /v/web should be 405")
            return
        }
        #expect(allowed == [.get, .put])
    }

    @Test func thrownHTTPErrorKeepsItsStatus() async throws {
        let response = await router().respond(to: HTTPRequest(method: .delete, path: "/v1/vms/x"))
        #expect(response.status == 404)
        let body = String(buffer: try await response.body.collect(upTo: 1000))
        #expect(body == #"{"error": "not_found", "detail": "no VM named x"}"#)
    }

    @Test func otherErrorsBecome500() async throws {
        let response = await router().respond(to: HTTPRequest(method: .post, path: "/v1/crash"))
        #expect(response.status == 500)
        #expect(String(buffer: try await response.body.collect(upTo: 1000)).contains("\"internal_error\""))
    }

    @Test func jsonEscapesQuotesAndControlCharacters() {
        let error = HTTPError(status: 400, error: "bad\"name", detail: "line\nbreak\u{1}")
        #expect(error.jsonBody == #"{"error": "bad\"name", "detail": "line\nbreak\u0001"}"#)
    }
}
