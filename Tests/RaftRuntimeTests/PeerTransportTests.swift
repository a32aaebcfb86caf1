// The peer transport against real HTTP/2 servers: batches in order on one stream, an ended stream
// reported and reopened, and the peer route's refusals of a misdirected batch and a bad frame.
import ClusterModel
import FlotillaTestKit
import HTTP2
import Logging
import NIOCore
import NIOPosix
import RaftCore
import RaftRuntime
import RaftStorage
import Synchronization
import TestSupport
import Testing

/// What a receiving server's streams carried, frame by frame.
private final class Recorder: Sendable {
    let frames = Mutex<[(ageMicroseconds: UInt64, messages: [Message])]>([])
    let streams = Mutex(0)

    /// The read rounds of the heartbeats received, in order.
    var rounds: [UInt64] {
        frames.withLock { frames in
            frames.flatMap(\.messages).compactMap { message in
                if case .heartbeat(let heartbeat) = message.kind { return heartbeat.readRound }
                return nil
            }
        }
    }
}

private final class RecordingSink: RequestBodySink {
    let recorder: Recorder
    var reassembler = PeerStreamReassembler()

    init(recorder: Recorder) {
        self.recorder = recorder
    }

    func receive(_ bytes: UnsafeRawBufferPointer) throws {
        for content in try reassembler.take(bytes) {
            let frame = try PeerStreamFrame.decode(content)
            recorder.frames.withLock { $0.append(frame) }
        }
    }

    func finish() -> HTTPResponse { HTTPResponse(status: 204) }
}

@Suite struct PeerTransportTests {
    private static func recordingServer(_ recorder: Recorder, port: Int = 0) async throws -> (HTTP2Server, Int) {
        var router = Router()
        router.addSink(.post, PeerPath.raftStream) { _, _ in
            recorder.streams.withLock { $0 += 1 }
            return RecordingSink(recorder: recorder)
        }
        let server = HTTP2Server(configuration: .init(host: "127.0.0.1", port: port), router: router)
        return (server, try await server.start())
    }

    private static func heartbeat(_ round: UInt64, to: NodeID = 2) -> Message {
        Message(from: 1, to: to, term: 1, kind: .heartbeat(Heartbeat(commit: 0, readRound: round)))
    }

    /// Node 2's peer port is `port`; no other node's address is known.
    private static func addresses(_ port: Int) -> @Sendable (NodeID) -> Endpoint? {
        { $0 == 2 ? Endpoint(host: "127.0.0.1", port: port) : nil }
    }

    @Test(.timeLimit(.minutes(1)))
    func batchesArriveInOrderOnOneStreamAndAnEndedStreamIsReportedAndReopened() async throws {
        let first = Recorder()
        let (server, port) = try await Self.recordingServer(first)
        let contact = LeaderContactTracker()
        let transport = HTTP2PeerTransport(
            local: 1, peerAddress: Self.addresses(port), requestTimeout: .seconds(5), leaderContact: contact,
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton.next(), logger: Logger(label: "peer-transport-test"))
        let unreachable = Mutex<[NodeID]>([])
        transport.onUnreachable { id in unreachable.withLock { $0.append(id) } }

        // Sent from the test's thread while the stream opens and after: all in order, on one stream.
        for round in UInt64(1)...200 { transport.send([Self.heartbeat(round)]) }
        try await eventually("200 heartbeats") { first.rounds.count == 200 }
        #expect(first.rounds == Array(1...200))
        #expect(first.streams.withLock { $0 } == 1)
        // Each frame carried this node's contact age (it has never heard from a leader: its age
        // since start, a few seconds at most).
        #expect(first.frames.withLock { $0 }.allSatisfy { $0.ageMicroseconds < 60_000_000 })
        #expect(unreachable.withLock { $0 }.isEmpty)

        // The peer shuts down: its answer ends the stream, which is reported.
        await server.shutdown()
        try await eventually("the ended stream reported") { unreachable.withLock { $0 } == [2] }

        // The peer is back: batches open a new stream to it, in order again. (Those sent while a
        // connect fails fast, in the backoff after the peer was down, are dropped: Raft resends.)
        let second = Recorder()
        let (restarted, _) = try await Self.recordingServer(second, port: port)
        var round: UInt64 = 200
        try await eventually("heartbeats on a new stream") {
            round += 1
            transport.send([Self.heartbeat(round)])
            return second.rounds.count >= 20
        }
        let rounds = second.rounds
        #expect(zip(rounds, rounds.dropFirst()).allSatisfy { $1 == $0 + 1 }, "\(rounds)")
        #expect(second.streams.withLock { $0 } == 1)

        await transport.close()
        await restarted.shutdown()
    }

    private struct Nothing: ReplicatedStateMachine {
        mutating func apply(_ command: [UInt8], at index: LogIndex) -> [UInt8] { [] }
        func snapshot() -> [UInt8] { [] }
        mutating func restore(from snapshot: [UInt8]) throws {}
    }

    private struct Silent: PeerTransport {
        func send(_ messages: [Message]) {}
    }

    /// Node 2 of {1, 2, 3}, applying nothing and sending nothing: for the peer route's own checks.
    private static func silentNode2(in root: borrowing TemporaryDirectory) throws -> RaftDriver<Nothing> {
        let (storage, recovered) = try RaftDiskStorage.open(directory: "\(root.path)/n2")
        return try RaftDriver(
            configuration: RaftConfiguration(id: 2, electionTicks: 10, heartbeatTicks: 1),
            bootstrapMembership: Membership(voters: [1, 2, 3]), storage: storage, recovered: recovered,
            machine: Nothing(), transport: Silent(), tickDuration: .milliseconds(50), seed: 2)
    }

    @Test(.timeLimit(.minutes(1)))
    func thePeerRouteReportsItsSenderAndRefusesAMisdirectedBatchAndABadFrame() async throws {
        let root = try TemporaryDirectory()
        let driver = try Self.silentNode2(in: root)
        var router = Router()
        let reached = Mutex<[NodeID]>([])
        router.addPeerRoutes(driver: driver, local: 2, peerReachedUs: { id in reached.withLock { $0.append(id) } })
        try await withServer(router) { port in
            let client = HTTP2Client(configuration: .init(host: "127.0.0.1", port: port))
            let request = HTTPRequest(method: .post, path: PeerPath.raftStream)

            // A stream's sender is reported as up, once, with its first batch.
            let good = try await client.openPushStream(request, deadline: .now() + .seconds(30))
            for round in UInt64(1)...3 {
                let frame = PeerStreamFrame.encode([Self.heartbeat(round)], contactAgeMicroseconds: 0)
                _ = try await good.eventLoop.submit { good.push(frame) }.get()
            }
            // A batch for another node on the same stream is refused; frames are taken in order, so
            // by the refusal the three before it have been, and the sender was reported once.
            let frame = PeerStreamFrame.encode([Self.heartbeat(4, to: 3)], contactAgeMicroseconds: 0)
            _ = try await good.eventLoop.submit { good.push(frame) }.get()
            let refused = try await good.response.get()
            #expect(refused.status == 421)
            guard case .buffer(let body) = refused.body else {
                Issue.record("the refusal has no body to read: \(refused.body)")
                return
            }
            #expect(String(buffer: body).contains("this is node n2, the message is for n3"))
            #expect(reached.withLock { $0 } == [1])

            let garbled = try await client.openPushStream(request, deadline: .now() + .seconds(30))
            // A whole frame (length 2) whose content is no batch.
            _ = try await garbled.eventLoop.submit { garbled.push(ByteBuffer(bytes: [0x02, 0x00, 0xFF])) }.get()
            #expect(try await garbled.response.get().status == 400)
            await client.close()
        }
    }

    /// A stream declaring a newer peer stream format than this build reads is refused before any
    /// batch of it is read, with a 400 naming both versions, and the refusal is logged; streams of
    /// the current format, or without the header (builds before it was declared), are taken.
    @Test(.timeLimit(.minutes(1)))
    func thePeerRouteRefusesAStreamOfANewerFormatNamingBothVersions() async throws {
        let root = try TemporaryDirectory()
        let driver = try Self.silentNode2(in: root)
        var router = Router()
        let reached = Mutex<[NodeID]>([])
        let log = CapturedLog()
        router.addPeerRoutes(
            driver: driver, local: 2, peerReachedUs: { id in reached.withLock { $0.append(id) } },
            logger: Logger(label: "test", factory: { _ in log.handler() }))
        try await withServer(router) { port in
            let client = HTTP2Client(configuration: .init(host: "127.0.0.1", port: port))
            let newer = PeerStreamFormat.current + 1
            let future = try await client.openPushStream(
                HTTPRequest(method: .post, path: PeerPath.raftStream, headers: [PeerStreamFormat.header: "\(newer)"]),
                deadline: .now() + .seconds(30))
            let frame = PeerStreamFrame.encode([Self.heartbeat(1)], contactAgeMicroseconds: 0)
            _ = try await future.eventLoop.submit { future.push(frame) }.get()
            let refused = try await future.response.get()
            #expect(refused.status == 400)
            guard case .buffer(let body) = refused.body else {
                Issue.record("the refusal has no body to read: \(refused.body)")
                return
            }
            let expected =
                "this peer's Raft stream is peer stream format \(newer); this build reads up to "
                + "\(PeerStreamFormat.current): upgrade this node (docs/operations.md, Upgrades)"
            #expect(String(buffer: body).contains("newer_peer_format"))
            #expect(String(buffer: body).contains(expected))
            #expect(log.lines.withLock { $0 } == ["refused a Raft stream: \(expected)"])
            #expect(reached.withLock { $0 }.isEmpty, "no batch of the refused stream was read")

            for header: HTTPFields in [[PeerStreamFormat.header: "\(PeerStreamFormat.current)"], [:]] {
                let stream = try await client.openPushStream(
                    HTTPRequest(method: .post, path: PeerPath.raftStream, headers: header),
                    deadline: .now() + .seconds(30))
                _ = try await stream.eventLoop.submit { stream.push(frame) }.get()
                try await eventually("the batch of a stream with headers \(header) is read") {
                    reached.withLock { $0 }.count == 1
                }
                reached.withLock { $0.removeAll() }
            }
            await client.close()
        }
        #expect(PeerStreamFormat.refusal("0")?.error == "bad_peer_format")
        #expect(PeerStreamFormat.refusal("two")?.error == "bad_peer_format")
    }

    private func withServer(_ router: Router, _ body: (Int) async throws -> Void) async throws {
        let server = HTTP2Server(configuration: .init(host: "127.0.0.1", port: 0), router: router)
        let port = try await server.start()
        do {
            try await body(port)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }
}

/// Error lines logged through `handler()`.
private final class CapturedLog: Sendable {
    let lines = Mutex<[String]>([])

    func handler() -> some LogHandler { Handler(log: self) }

    private struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            guard event.level >= .error else { return }
            log.lines.withLock { $0.append("\(event.message)") }
        }
    }
}
