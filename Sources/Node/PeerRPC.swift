// Raft messages between nodes over HTTP/2: one connection per peer, batches in order.
import ClusterModel
import ClusterState
import HTTP2
import Logging
import NIOCore
import RaftCore
import Synchronization

/// The peer-RPC paths.
enum PeerPath {
    static let raftMessages = "/raft/v1/messages"
}

/// Encodes a batch of messages as one request body: a count, then each message length-prefixed.
enum MessageBatch {
    static func encode(_ messages: [Message]) -> [UInt8] {
        var writer = ByteWriter(capacity: 256 * messages.count)
        writer.writeVarint(messages.count)
        for message in messages { writer.write(message.wireBytes) }
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(WireFormatError) -> [Message] {
        var reader = ByteReader(bytes)
        let count = try reader.readCount()
        var messages: [Message] = []
        messages.reserveCapacity(count)
        for _ in 0..<count { messages.append(try Message(wireBytes: try reader.readBytes())) }
        guard reader.isAtEnd else { throw WireFormatError("\(reader.remaining) bytes after a message batch") }
        return messages
    }
}

/// Sends Raft messages to peers over HTTP/2.
///
/// Each peer has one connection (`HTTP2Client`), a buffer and one sender task: `send` only
/// appends to the buffer and wakes the task, which posts everything buffered as one batch and
/// repeats. Batches to a peer therefore leave in order, and while one is in flight the next
/// accumulates — batching that grows with load. A peer that is down costs a failed connect per
/// batch (fast: connection refused) and its messages are dropped; Raft resends what matters.
public final class HTTP2PeerTransport: PeerTransport, Sendable {
    private final class Peer: Sendable {
        let client: HTTP2Client
        let buffer = Mutex<[Message]>([])
        let wake: AsyncStream<Void>.Continuation

        init(client: HTTP2Client, wake: AsyncStream<Void>.Continuation) {
            self.client = client
            self.wake = wake
        }
    }

    /// Messages buffered for a peer beyond this are dropped, oldest first (a peer that is down).
    static let maxBufferedMessages = 8192

    private let local: NodeID
    private let addressBook: AddressBook
    private let requestTimeout: Duration
    private let logger: Logger
    /// Peers are made on first use, from the address book, so members added later are reached.
    private let peers = Mutex<[NodeID: Peer]>([:])
    private let tasks = Mutex<[Task<Void, Never>]>([])
    /// Told when a batch to a peer is lost, so the Raft leader probes it instead of pipelining blind.
    private let unreachable = Mutex<(@Sendable (NodeID) async -> Void)?>(nil)

    private func reportLost(_ id: NodeID) async {
        await unreachable.withLock { $0 }?(id)
    }

    /// Sets what to do when a batch to a peer could not be delivered.
    func onUnreachable(_ handler: @escaping @Sendable (NodeID) async -> Void) {
        unreachable.withLock { $0 = handler }
    }

    init(local: NodeID, addressBook: AddressBook, requestTimeout: Duration, logger: Logger) {
        self.local = local
        self.addressBook = addressBook
        self.requestTimeout = requestTimeout
        self.logger = logger
    }

    public func send(_ messages: [Message]) {
        var woken: [NodeID: Peer] = [:]
        for message in messages {
            guard let peer = woken[message.to] ?? peer(message.to) else { continue }
            woken[message.to] = peer
            peer.buffer.withLock { buffer in
                buffer.append(message)
                if buffer.count > Self.maxBufferedMessages {
                    buffer.removeFirst(buffer.count - Self.maxBufferedMessages)
                }
            }
        }
        for peer in woken.values { peer.wake.yield() }
    }

    /// The peer for `id`, started on first use; nil for this node or a node with no known address.
    private func peer(_ id: NodeID) -> Peer? {
        guard id != local else { return nil }
        if let peer = peers.withLock({ $0[id] }) { return peer }
        guard let address = addressBook.addresses(of: id)?.peer else {
            logger.warning("no address known for \(id); its messages are dropped until it is registered")
            return nil
        }
        return peers.withLock { peers in
            if let peer = peers[id] { return peer }
            let client = HTTP2Client(configuration: .init(host: address.host, port: address.port))
            let (stream, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
            let peer = Peer(client: client, wake: wake)
            peers[id] = peer
            let (timeout, logger) = (requestTimeout, logger)
            let task = Task { [weak self] in
                let transport = self
                await Self.deliver(to: id, peer: peer, wakeups: stream, timeout: timeout, logger: logger) {
                    await transport?.reportLost(id)
                }
            }
            tasks.withLock { $0.append(task) }
            return peer
        }
    }

    /// The sender loop of one peer: post what is buffered as one batch, then wait to be woken.
    private static func deliver(
        to id: NodeID, peer: Peer, wakeups: AsyncStream<Void>, timeout: Duration, logger: Logger,
        lost: @Sendable () async -> Void
    ) async {
        var failures = 0
        for await _ in wakeups {
            let batch = peer.buffer.withLock { buffer in
                defer { buffer.removeAll(keepingCapacity: true) }
                return buffer
            }
            guard !batch.isEmpty else { continue }
            let request = HTTPRequest(
                method: .post, path: PeerPath.raftMessages, headers: ["content-type": "application/octet-stream"],
                body: .buffer(ByteBuffer(bytes: MessageBatch.encode(batch))))
            do {
                let response = try await peer.client.send(request, timeout: timeout)
                if response.status != 204 {
                    logger.warning("peer \(id) answered \(response.status) to a message batch")
                }
                failures = 0
            } catch {
                failures += 1
                // Once per outage, not once per batch.
                if failures == 1 { logger.info("peer \(id) unreachable: \(error)") }
                await lost()
            }
        }
    }

    /// Stops the sender tasks and closes the connections.
    public func close() async {
        let peers = peers.withLock { $0.values }
        for peer in peers { peer.wake.finish() }
        for task in tasks.withLock({ $0 }) { await task.value }
        for peer in peers { await peer.client.close() }
    }
}

extension Router {
    /// Adds the peer-RPC routes that feed `driver`.
    mutating func addPeerRoutes(driver: RaftDriver, local: NodeID) {
        post(PeerPath.raftMessages) { request, _ in
            let body = try await request.body.collect(upTo: 64 << 20)
            let messages: [Message]
            do {
                messages = try MessageBatch.decode(Array(buffer: body))
            } catch {
                throw HTTPError(status: 400, error: "bad message batch", detail: "\(error)")
            }
            // A message addressed to another node means a misconfigured peer: say so.
            if let stray = messages.first(where: { $0.to != local }) {
                throw HTTPError(
                    status: 421, error: "misdirected message",
                    detail: "this is node \(local), the message is for \(stray.to); check the peer addresses")
            }
            await driver.receive(messages)
            return HTTPResponse(status: 204)
        }
    }
}
