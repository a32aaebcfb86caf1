import Foundation
import NIOCore
import NIOPosix
import QEMU
import Testing

/// A stand-in for QEMU's control socket: sends the greeting, then answers each line with `answer`.
final class FakeQMPServer: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The reply lines for one request line (nil: close the connection instead).
    let answer: @Sendable (String) -> [String]?

    init(answer: @escaping @Sendable (String) -> [String]?) { self.answer = answer }

    func channelActive(context: ChannelHandlerContext) {
        write(#"{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": []}}"#, context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let text = String(buffer: unwrapInboundIn(data))
        for line in text.split(separator: "\n") {
            guard let replies = answer(String(line)) else {
                context.close(promise: nil)
                return
            }
            for reply in replies { write(reply, context) }
        }
    }

    private func write(_ line: String, _ context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: line + "\n")), promise: nil)
    }

    /// The request's id as QEMU would echo it.
    static func id(of request: String) -> String {
        let json = try! JSONSerialization.jsonObject(with: Data(request.utf8)) as! [String: Any]
        return "\(json["id"] as! Int)"
    }

    static func command(of request: String) -> String {
        let json = try! JSONSerialization.jsonObject(with: Data(request.utf8)) as! [String: Any]
        return json["execute"] as! String
    }
}

@Suite struct QMPClientTests {
    let group = MultiThreadedEventLoopGroup.singleton

    func serve(_ answer: @escaping @Sendable (String) -> [String]?) async throws -> (String, any Channel) {
        let path = "/tmp/qmp-\(UUID().uuidString.prefix(8)).sock"
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FakeQMPServer(answer: answer))
                }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        return (path, server)
    }

    @Test func commandsGetTheirOwnAnswersAndEventsArriveOnTheirStream() async throws {
        let (path, server) = try await serve { request in
            let id = FakeQMPServer.id(of: request)
            switch FakeQMPServer.command(of: request) {
            case "qmp_capabilities": return [#"{"return": {}, "id": \#(id)}"#]
            case "query-status":
                // An event first, then the answer.
                return [
                    #"{"event": "RESUME", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}"#,
                    #"{"return": {"status": "running", "running": true}, "id": \#(id)}"#,
                ]
            default:
                return [
                    #"{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": \#(id)}"#
                ]
            }
        }
        defer { server.close(promise: nil) }
        let client = try await QMPClient.connect(socketPath: path, group: group)
        defer { client.close() }
        let status = try await client.execute("query-status")
        #expect(status["status"]?.string == "running")
        #expect(status["running"]?.bool == true)
        var events = client.events.makeAsyncIterator()
        #expect(await events.next()?.name == "RESUME")
        await #expect(
            throws: QMPError.command(
                "nope", errorClass: "CommandNotFound", description: "The command nope has not been found")
        ) {
            try await client.execute("nope", ["x": 1])
        }
        // Many at once: each answer goes to the command that asked.
        try await withThrowingTaskGroup(of: String?.self) { tasks in
            for _ in 0..<20 { tasks.addTask { try await client.execute("query-status")["status"]?.string } }
            for try await answer in tasks { #expect(answer == "running") }
        }
    }

    /// `waitForEvent` wakes on the next event of its name, counts from the mark it is given (an
    /// event before the wait is not missed), returns the same count when its timeout passes, and
    /// fails when the connection closes.
    @Test func eventWaitsWakeOnTheirEventAndNotOthers() async throws {
        let (path, server) = try await serve { request in
            let id = FakeQMPServer.id(of: request)
            let event = { (name: String) in #"{"event": "\#(name)", "data": {"status": "active"}}"# }
            switch FakeQMPServer.command(of: request) {
            case "migration-event": return [#"{"return": {}, "id": \#(id)}"#, event("MIGRATION")]
            case "stop-event": return [#"{"return": {}, "id": \#(id)}"#, event("STOP")]
            case "quit": return nil
            default: return [#"{"return": {}, "id": \#(id)}"#]
            }
        }
        defer { server.close(promise: nil) }
        let client = try await QMPClient.connect(socketPath: path, group: group)
        defer { client.close() }
        #expect(try await client.eventCount("MIGRATION") == 0)
        // No event: the wait ends at its timeout with the count unchanged.
        #expect(try await client.waitForEvent("MIGRATION", after: 0, timeout: .milliseconds(10)) == 0)
        // An event that came before the wait (after the mark) ends it at once.
        try await client.execute("migration-event")
        #expect(try await client.waitForEvent("MIGRATION", after: 0, timeout: .seconds(60)) == 1)
        // A waiter woken by its event; another event's name leaves it waiting.
        let waiter = Task { try await client.waitForEvent("MIGRATION", after: 1, timeout: .seconds(60)) }
        try await client.execute("stop-event")
        // The event's line follows the command's answer and may be read after `execute` returns.
        #expect(try await client.waitForEvent("STOP", after: 0, timeout: .seconds(60)) == 1)
        #expect(try await client.eventCount("MIGRATION") == 1)
        try await client.execute("migration-event")
        #expect(try await waiter.value == 2)
        // A waiter when the connection closes fails.
        let closing = Task { try await client.waitForEvent("MIGRATION", after: 2, timeout: .seconds(60)) }
        await #expect(throws: QMPError.closed) { try await client.execute("quit") }
        await #expect(throws: QMPError.closed) { try await closing.value }
    }

    @Test func aConnectionThatClosesFailsTheCommandsWaitingAndLaterOnes() async throws {
        let (path, server) = try await serve { request in
            FakeQMPServer.command(of: request) == "qmp_capabilities"
                ? [#"{"return": {}, "id": \#(FakeQMPServer.id(of: request))}"#] : nil
        }
        defer { server.close(promise: nil) }
        let client = try await QMPClient.connect(socketPath: path, group: group)
        await #expect(throws: QMPError.closed) { try await client.execute("quit") }
        await #expect(throws: QMPError.closed) { try await client.execute("query-status") }
        var events = client.events.makeAsyncIterator()
        #expect(await events.next() == nil)
    }

    @Test func somethingThatIsNotQMPIsRefusedWithWhatItSaid() async throws {
        let (path, server) = try await serve { _ in ["this is not json"] }
        defer { server.close(promise: nil) }
        await #expect(throws: QMPError.malformed("this is not json")) {
            _ = try await QMPClient.connect(socketPath: path, group: group)
        }
    }

    @Test func aSocketNobodyListensOnIsAConnectError() async throws {
        await #expect {
            _ = try await QMPClient.connect(
                socketPath: "/tmp/no-such-qmp-\(UUID().uuidString.prefix(8)).sock", group: group)
        } throws: { error in
            if case QMPError.connect = error { return true }
            return false
        }
    }
}
