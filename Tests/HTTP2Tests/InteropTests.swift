// Our server against independent peers: curl (HTTP/2 prior knowledge and HTTP/1.1) and nghttp.
import Foundation
import HTTP2
import NIOCore
import Testing

@Suite struct InteropTests {
    static func router() -> Router {
        var router = Router()
        router.get("/v1/vms/{name}") { _, parameters in .json("{\"name\": \"\(parameters["name"] ?? "")\"}") }
        router.post("/echo") { request, _ in HTTPResponse(status: 200, body: request.body) }
        router.get("/big") { _, _ in HTTPResponse(body: .buffer(patternBuffer(count: 3 << 20))) }
        return router
    }

    private func tool(_ name: String) throws -> String {
        try #require(toolPath(name), "\(name) is missing; run scripts/install-deps.sh")
    }

    @Test(arguments: [false, true])
    func curlWithHTTP2PriorKnowledge(acceptsHTTP1: Bool) async throws {
        let curl = try tool("curl")
        try await withServer(Self.router(), configure: { $0.acceptsHTTP1 = acceptsHTTP1 }) { _, port in
            let (status, out, err) = try await runTool(
                curl,
                [
                    "-sS", "--http2-prior-knowledge", "-w", "\n%{http_code} %{http_version}",
                    "http://127.0.0.1:\(port)/v1/vms/db-2",
                ]
            )
            #expect(status == 0, "curl failed: \(err)")
            #expect(String(decoding: out, as: UTF8.self) == "{\"name\": \"db-2\"}\n200 2")
        }
    }

    @Test func curlHTTP2UploadIsEchoedByteIdentical() async throws {
        let curl = try tool("curl")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("flotilla-upload-\(UUID())")
        let payload = Data(patternBuffer(count: 5 << 20).readableBytesView)
        try payload.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        try await withServer(Self.router()) { _, port in
            let (status, out, err) = try await runTool(
                curl,
                ["-sS", "--http2-prior-knowledge", "--data-binary", "@\(file.path)", "http://127.0.0.1:\(port)/echo"]
            )
            #expect(status == 0, "curl failed: \(err)")
            #expect(out == payload)
        }
    }

    @Test func plainCurlSpeaksHTTP1OnTheClientAPIPort() async throws {
        let curl = try tool("curl")
        try await withServer(Self.router(), configure: { $0.acceptsHTTP1 = true }) { _, port in
            let (status, out, err) = try await runTool(
                curl,
                ["-sS", "-w", "\n%{http_code} %{http_version}", "http://127.0.0.1:\(port)/v1/vms/web-1"]
            )
            #expect(status == 0, "curl failed: \(err)")
            #expect(String(decoding: out, as: UTF8.self) == "{\"name\": \"web-1\"}\n200 1.1")

            let (_, missing, _) = try await runTool(
                curl,
                ["-sS", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)/v1/nothing"]
            )
            #expect(
                String(decoding: missing, as: UTF8.self)
                    == "{\"error\": \"not_found\", \"detail\": \"no route for GET /v1/nothing\"}\n404"
            )

            let (_, echoed, _) = try await runTool(
                curl,
                ["-sS", "--data-binary", "hello over HTTP/1.1", "http://127.0.0.1:\(port)/echo"]
            )
            #expect(String(decoding: echoed, as: UTF8.self) == "hello over HTTP/1.1")
        }
    }

    @Test func nghttpFetchesAndUploads() async throws {
        let nghttp = try tool("nghttp")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("flotilla-nghttp-\(UUID())")
        let payload = Data(patternBuffer(count: 1 << 20).readableBytesView)
        try payload.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        try await withServer(Self.router()) { _, port in
            let (status, out, err) = try await runTool(nghttp, ["http://127.0.0.1:\(port)/big"])
            #expect(status == 0, "nghttp failed: \(err)")
            #expect(out == Data(patternBuffer(count: 3 << 20).readableBytesView))

            let (uploadStatus, echoed, uploadErr) = try await runTool(
                nghttp,
                ["-d", file.path, "http://127.0.0.1:\(port)/echo"]
            )
            #expect(uploadStatus == 0, "nghttp upload failed: \(uploadErr)")
            #expect(echoed == payload)
        }
    }
}
