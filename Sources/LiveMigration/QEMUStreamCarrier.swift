// A real guest's migration stream between two nodes: QEMU's bytes as the body of one HTTP/2 request
// from the source node to the target node, which feeds them into its QEMU's incoming socket.
public import ClusterModel
public import HTTP2
import NIOConcurrencyHelpers
public import NIOCore
import QEMU

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
    private let group: any EventLoopGroup

    public init(group: any EventLoopGroup) {
        self.group = group
    }

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
    public func register(on router: inout Router) {
        router.post("/v1/internal/migrations/{id}/qemu-stream", body: .stream) {
            [expected, group] request, parameters in
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
            guard case .stream(let body) = request.body else {
                throw HTTPError(status: 400, error: "bad_request", detail: "the stream must be a streamed body")
            }
            let bytes = try await QEMUMigrationStream.feedTarget(socketPath: socket, group: group, bytes: body)
            return .json("{\"bytes\": \(bytes)}")
        }
    }
}

/// The source's end: sends the source QEMU's bytes to the target node as one request.
public enum QEMUStreamSender {
    public static func send(
        _ bytes: NIOAsyncChannelInboundStream<ByteBuffer>, migration id: MigrationID, token: String,
        to client: HTTP2Client, timeout: Duration
    ) async throws {
        let response = try await client.send(
            HTTPRequest(
                method: .post, path: QEMUStreamReceiver.path(id), headers: [QEMUStreamReceiver.tokenHeader: token],
                body: .stream(HTTPBodyStream(bytes))),
            timeout: timeout)
        guard response.status == 200 else {
            let detail = (try? await response.body.collect(upTo: 4096)).map { String(buffer: $0) } ?? ""
            throw QEMUGuestError("the target took the stream with \(response.status): \(detail)")
        }
    }
}
