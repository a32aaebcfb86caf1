// A real guest's migration stream between two nodes: QEMU's bytes as the body of one HTTP/2 request
// from the source node to the target node, which feeds them into its QEMU's incoming socket.
public import ClusterModel
public import HTTP2
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
public import QEMU

/// The target's end: a route on the data listener that takes a migration's stream and feeds it
/// into the socket its QEMU listens on. A peer names the migration, never a file: only streams this
/// node expects (`expect`) are taken, once, so no request can make it write into another socket;
/// and only with the stream's token, a random secret `expect` returns for the source alone (a
/// migration id is easy to guess; QEMU's migration loader is no place for bytes a stranger chose).
public final class QEMUStreamReceiver: Sendable {
    public static func path(_ id: MigrationID) -> String { "/v1/internal/migrations/\(id.rawValue)/qemu-stream" }
    /// The request header that carries the stream's token.
    public static let tokenHeader = "flotilla-stream-token"

    private let expected = NIOLockedValueBox<[MigrationID: (socket: String, token: String)]>([:])

    public init() {}

    /// Takes the stream of migration `id` into `socketPath` (where the target QEMU listens) from a
    /// request that carries the returned token (128 random bits, hex).
    public func expect(_ id: MigrationID, socketPath: String) -> String {
        var random = SystemRandomNumberGenerator()
        let token = (0..<2).map { _ in
            let word = String(random.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - word.count) + word
        }.joined()
        expected.withLockedValue { $0[id] = (socketPath, token) }
        return token
    }

    /// Takes no stream for `id` any more (the migration ended).
    public func forget(_ id: MigrationID) {
        _ = expected.withLockedValue { $0.removeValue(forKey: id) }
    }

    /// Adds the route; the answer (`{"bytes": N}`) comes once every byte is in the target's socket.
    ///
    /// The stream's DATA goes straight from the connection's event loop into the target's socket,
    /// connected on that same loop: no task and no thread hop per chunk. Each piece's flow-control
    /// credit goes back to the source only once it is written into the socket, so the source sends
    /// as fast as the target QEMU reads and at most one stream window waits here.
    public func register(on router: inout Router) {
        router.addSink(.post, "/v1/internal/migrations/{id}/qemu-stream") { [expected] request, parameters in
            guard let id = parameters["id"].flatMap(MigrationID.init(parsing:)) else {
                throw HTTPError(
                    status: 400, error: "bad_request", detail: "not a migration id: \(parameters["id"] ?? "")")
            }
            // Taken once, and only with its token: a second stream, or one without the token, is refused.
            let token = request.headers[QEMUStreamReceiver.tokenHeader]
            let socket = expected.withLockedValue { table -> String? in
                guard let entry = table[id], let token, entry.token == token else { return nil }
                table.removeValue(forKey: id)
                return entry.socket
            }
            guard let socket else {
                throw HTTPError(
                    status: 404, error: "not_found",
                    detail: "this node expects no QEMU stream for migration \(id) with that token")
            }
            guard let loop = MultiThreadedEventLoopGroup.currentEventLoop else {
                throw HTTPError(status: 500, error: "internal", detail: "the stream's sink opened off its event loop")
            }
            return QEMUTargetFeed(socketPath: socket, eventLoop: loop)
        }
    }
}

/// Feeds a carried stream into the socket the target QEMU listens on, on the HTTP/2 connection's
/// event loop (`PacedRequestBodySink`): each piece is written as it arrives and its credit given
/// back once written; at the body's end the write side is shut down and the answer waits until
/// QEMU, having read to that end, closes the connection.
final class QEMUTargetFeed: PacedRequestBodySink {
    private let socketPath: String
    private let eventLoop: any EventLoop
    /// The target's socket once connected; pieces wait in `pending` until then.
    private var channel: (any Channel)?
    private var pending: [(ByteBuffer, RequestBodyCredit)] = []
    /// Why the socket failed (connecting or writing): the next piece's answer.
    private var failure: (any Error)?
    /// The body ended: the answer, once every byte is in and QEMU closed the connection.
    private var responder: HTTPResponder?
    private var aborted = false
    /// The last write's completion: the body's end follows it.
    private var lastWrite: EventLoopFuture<Void>?
    private var bytes: UInt64 = 0

    init(socketPath: String, eventLoop: any EventLoop) {
        self.socketPath = socketPath
        self.eventLoop = eventLoop
        let feed = NIOLoopBound(self, eventLoop: eventLoop)
        ClientBootstrap(group: eventLoop)
            // A UNIX socket holds what its sender's buffer allows (208 KiB by default): a larger one
            // (up to the system's wmem_max) takes a DATA piece whole, in fewer writes and wake-ups.
            .channelOption(.socketOption(.so_sndbuf), value: 4 << 20)
            .connect(unixDomainSocketPath: socketPath)
            .whenComplete { result in feed.value.connected(result) }
    }

    private func connected(_ result: Result<any Channel, any Error>) {
        switch result {
        case .success(let channel):
            guard !self.aborted else {
                channel.close(promise: nil)
                return
            }
            self.channel = channel
            for (piece, credit) in self.pending { self.write(piece, credit, to: channel) }
            self.pending = []
            channel.flush()
            if let responder = self.responder { self.end(responder) }
        case .failure(let error):
            self.fail(QEMUGuestError("the target's socket \(self.socketPath) does not connect: \(error)"))
        }
    }

    private func write(_ piece: ByteBuffer, _ credit: RequestBodyCredit, to channel: any Channel) {
        let written = channel.write(piece)
        self.lastWrite = written
        let feed = NIOLoopBound(self, eventLoop: self.eventLoop)
        written.whenComplete { result in
            switch result {
            case .success: credit.give()
            case .failure(let error):
                feed.value.fail(QEMUGuestError("writing into the target's socket failed: \(error)"))
            }
        }
    }

    private func fail(_ error: any Error) {
        guard self.failure == nil else { return }
        self.failure = error
        self.channel?.close(promise: nil)
        self.responder?.fail(error)
    }

    func receive(_ piece: ByteBuffer, credit: RequestBodyCredit) throws {
        if let failure { throw failure }
        self.bytes += UInt64(piece.readableBytes)
        if let channel {
            self.write(piece, credit, to: channel)
            channel.flush()
        } else {
            self.pending.append((piece, credit))
        }
    }

    func finish(responder: HTTPResponder) {
        if let failure {
            responder.fail(failure)
            return
        }
        self.responder = responder
        if self.channel != nil { self.end(responder) }
    }

    /// After the last write: the write side's shutdown ends QEMU's stream; the answer waits until
    /// QEMU, having read to that end, closes the connection.
    private func end(_ responder: HTTPResponder) {
        guard let channel else { return }
        let bytes = self.bytes
        (self.lastWrite ?? self.eventLoop.makeSucceededVoidFuture())
            .flatMap {
                // Every byte is in the socket. QEMU, having read its stream's last section, may
                // have closed the connection already (the shutdown then fails: nothing is lost).
                channel.close(mode: .output).flatMapErrorThrowing { _ in }
            }
            .flatMap { channel.closeFuture }
            .whenComplete { result in
                switch result {
                case .success: responder.respond(.json("{\"bytes\": \(bytes)}"))
                case .failure(let error):
                    responder.fail(QEMUGuestError("ending the target's stream failed: \(error)"))
                }
            }
    }

    func abort() {
        self.aborted = true
        self.channel?.close(promise: nil)
    }

    // HTTP/1.1 collects a body before a sink sees it: no place for a migration's stream.
    private static let http2Only = HTTPError(
        status: 400, error: "bad_request", detail: "a QEMU migration stream is carried over HTTP/2 only")

    func receive(_ bytes: UnsafeRawBufferPointer) throws { throw Self.http2Only }

    func finish() -> HTTPResponse { HTTPResponse(error: Self.http2Only) }
}

/// The source's end: sends the source QEMU's bytes to the target node as one request whose body
/// is pushed from the source's socket on the connection's event loop (`QEMUStreamOutlet`).
public final class QEMUStreamSender: QEMUStreamOutlet {
    private let stream: HTTP2PushStream
    private let timeout: Duration

    /// Opens the request for migration `id`'s stream on `client`; `timeout` bounds the wait for the
    /// target's answer once the source's stream ended.
    public static func open(migration id: MigrationID, token: String, to client: HTTP2Client, timeout: Duration)
        async throws -> QEMUStreamSender
    {
        let stream = try await client.openPushStream(
            HTTPRequest(
                method: .post, path: QEMUStreamReceiver.path(id), headers: [QEMUStreamReceiver.tokenHeader: token]),
            deadline: .now() + .seconds(10))
        return QEMUStreamSender(stream: stream, timeout: timeout)
    }

    private init(stream: HTTP2PushStream, timeout: Duration) {
        self.stream = stream
        self.timeout = timeout
    }

    public var eventLoop: any EventLoop { stream.eventLoop }

    public func push(_ bytes: ByteBuffer) throws -> Bool {
        guard let queued = stream.push(bytes) else {
            throw QEMUGuestError("the stream to the target closed (the target answered or went away)")
        }
        return queued < HTTP2PushStream.highWatermark
    }

    public func drained() -> EventLoopFuture<Void> { stream.drained() }

    public func finish() async throws {
        let stream = self.stream
        stream.eventLoop.execute { stream.finish() }
        let timer = stream.eventLoop.scheduleTask(in: TimeAmount(timeout)) { stream.cancel() }
        defer { timer.cancel() }
        let response = try await withTaskCancellationHandler {
            try await stream.response.get()
        } onCancel: {
            stream.eventLoop.execute { stream.cancel() }
        }
        guard response.status == 200 else {
            let detail = (try? await response.body.collect(upTo: 4096)).map { String(buffer: $0) } ?? ""
            throw QEMUGuestError("the target took the stream with \(response.status): \(detail)")
        }
    }

    public func abort() {
        let stream = self.stream
        stream.eventLoop.execute { stream.cancel() }
    }
}
