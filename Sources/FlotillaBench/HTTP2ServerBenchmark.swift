// `flotilla-bench http2-server`: our HTTP2Server serving a fixed body, for h2load and the fault tests.
import ArgumentParser
import HTTP2
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct HTTP2ServerBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http2-server",
        abstract: "Serve a fixed body on GET (any path) and echo the body on POST, over h2c."
    )

    @Option(help: "The address to bind.")
    var host = "127.0.0.1"

    @Option(help: "The port to bind (0 picks a free one; the bound port is printed).")
    var port = 0

    @Option(help: "The size in bytes of the body served on GET.")
    var bodySize = 1024

    @Option(help: "The largest POST body echoed back, in bytes.")
    var maxBodySize = 128 << 20

    @Option(help: "Event loop threads (defaults to the number of cores).")
    var threads = System.coreCount

    @Flag(help: "Serve GET with an immediate (synchronous) handler instead of an async one.")
    var immediate = false

    @Flag(help: "Also accept HTTP/1.1 on the port.")
    var http1 = false

    func validate() throws {
        guard (0...65535).contains(self.port) else {
            throw ValidationError("--port must be between 0 and 65535, got \(self.port)")
        }
        guard self.bodySize >= 0 else {
            throw ValidationError("--body-size must not be negative, got \(self.bodySize)")
        }
        guard self.threads > 0 else {
            throw ValidationError("--threads must be at least 1, got \(self.threads)")
        }
    }

    func run() async throws {
        let body = ByteBuffer(repeating: UInt8(ascii: "x"), count: self.bodySize)
        var router = Router()
        if self.immediate {
            router.addImmediate(.get, "/{path}") { _, _ in HTTPResponse(status: 200, body: .buffer(body)) }
            router.addImmediate(.get, "/") { _, _ in HTTPResponse(status: 200, body: .buffer(body)) }
        } else {
            router.get("/{path}") { _, _ in HTTPResponse(status: 200, body: .buffer(body)) }
            router.get("/") { _, _ in HTTPResponse(status: 200, body: .buffer(body)) }
        }
        router.post("/{path}") { request, _ in HTTPResponse(status: 200, body: request.body) }
        var configuration = HTTP2Server.Configuration(host: self.host, port: self.port, acceptsHTTP1: self.http1)
        configuration.maxRequestBodySize = self.maxBodySize
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.threads)
        let server = HTTP2Server(configuration: configuration, router: router, eventLoopGroup: group)
        let bound = try await server.start()
        print("listening on \(self.host):\(bound)")
        fflush(nil)  // flush stdout: scripts and tests wait for this line on a pipe
        try await server.run()
    }
}
