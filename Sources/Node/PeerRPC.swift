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
/// Each peer has one connection (`HTTP2Client`), a buffer, and a sending token: `send` appends to
/// the buffer and, if no batch is in flight, takes the token and posts everything buffered as one
/// batch. When the answer comes back (on the connection's event loop) the holder posts what
/// accumulated meanwhile, or gives the token back. Batches to a peer therefore leave in order, one
/// at a time, and grow with load; and while the connection is open a batch goes out with no task
/// hop at all — the wake-up of a sender task cost ~0.1 ms per message leg on a busy machine.
/// When there is no open connection, the peer's sender task connects and posts the batch. A peer
/// that is down costs a failed connect per batch (fast: connection refused) and its messages are
/// dropped; Raft resends what matters.
public final class HTTP2PeerTransport: PeerTransport, Sendable {
    private final class Peer: Sendable {
        struct Queue {
            var buffer: [Message] = []
            /// A batch is in flight (or handed to the sender task); whoever set this posts the next.
            var sending = false
            /// A batch the sender task must post after connecting.
            var awaitingConnection: [Message] = []
            /// Failed batches in a row, to log an outage once.
            var failures = 0
        }

        let id: NodeID
        let client: HTTP2Client
        let queue = Mutex(Queue())
        let wake: AsyncStream<Void>.Continuation

        init(id: NodeID, client: HTTP2Client, wake: AsyncStream<Void>.Continuation) {
            self.id = id
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
    /// Every batch reports how long ago this node last heard from a leader (`LeaderContact`).
    private let leaderContact: LeaderContactTracker?
    /// Where the peer connections live: the Raft driver's loop, so answers reach it without a thread switch.
    private let eventLoopGroup: any EventLoopGroup
    /// Peers are made on first use, from the address book, so members added later are reached.
    private let peers = Mutex<[NodeID: Peer]>([:])
    private let tasks = Mutex<[Task<Void, Never>]>([])
    /// Told when a batch to a peer is lost, so the Raft leader probes it instead of pipelining blind.
    private let unreachable = Mutex<(@Sendable (NodeID) async -> Void)?>(nil)

    /// Told when a peer's process is gone (see `checkProcessGone`), so a follower of it campaigns at once.
    private let processGone = Mutex<(@Sendable (NodeID) async -> Void)?>(nil)

    /// Sets what to do when a batch to a peer could not be delivered.
    func onUnreachable(_ handler: @escaping @Sendable (NodeID) async -> Void) {
        unreachable.withLock { $0 = handler }
    }

    /// Sets what to do when a peer's connection closed and a reconnect was refused: its process
    /// is gone (killed or crashed; a live node always accepts connections).
    func onPeerProcessGone(_ handler: @escaping @Sendable (NodeID) async -> Void) {
        processGone.withLock { $0 = handler }
    }

    init(
        local: NodeID, addressBook: AddressBook, requestTimeout: Duration, leaderContact: LeaderContactTracker? = nil,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger
    ) {
        self.local = local
        self.eventLoopGroup = eventLoopGroup
        self.addressBook = addressBook
        self.requestTimeout = requestTimeout
        self.leaderContact = leaderContact
        self.logger = logger
    }

    public func send(_ messages: [Message]) {
        var touched: [NodeID: Peer] = [:]
        for message in messages {
            guard let peer = touched[message.to] ?? peer(message.to) else { continue }
            touched[message.to] = peer
            peer.queue.withLock { queue in
                queue.buffer.append(message)
                if queue.buffer.count > Self.maxBufferedMessages {
                    queue.buffer.removeFirst(queue.buffer.count - Self.maxBufferedMessages)
                }
            }
        }
        for peer in touched.values {
            let takesToken = peer.queue.withLock { queue in
                if queue.sending { return false }
                queue.sending = true
                return true
            }
            if takesToken { postNext(peer) }
        }
    }

    /// Called by the token holder: posts the buffered batch, or gives the token back when there is none.
    private func postNext(_ peer: Peer) {
        let batch = peer.queue.withLock { queue -> [Message]? in
            if queue.buffer.isEmpty {
                queue.sending = false
                return nil
            }
            defer { queue.buffer.removeAll(keepingCapacity: true) }
            return queue.buffer
        }
        guard let batch else { return }
        let request = request(for: batch)
        if let answer = peer.client.sendIfConnected(request, deadline: .now() + TimeAmount(requestTimeout)) {
            answer.whenComplete { result in
                self.finished(peer, result)
                self.postNext(peer)
            }
        } else {
            // No open connection: the sender task connects (suspending), posts, and carries on.
            peer.queue.withLock { $0.awaitingConnection = batch }
            peer.wake.yield()
        }
    }

    private func request(for batch: [Message]) -> HTTPRequest {
        var headers: HTTPFields = ["content-type": "application/octet-stream"]
        // Computed as the batch is encoded: the time it then spends on the way only makes the
        // receiver place the contact later, the cautious side.
        if let leaderContact {
            headers[LeaderContactTracker.ageHeader] = leaderContact.ageHeaderValue()
        }
        return HTTPRequest(
            method: .post, path: PeerPath.raftMessages, headers: headers,
            body: .buffer(ByteBuffer(bytes: MessageBatch.encode(batch))))
    }

    private func finished(_ peer: Peer, _ result: Result<HTTPResponse, any Error>) {
        switch result {
        case .success(let response):
            peer.queue.withLock { $0.failures = 0 }
            if response.status != 204 {
                logger.warning("peer \(peer.id) answered \(response.status) to a message batch")
            }
        case .failure(let error):
            let failures = peer.queue.withLock { queue in
                queue.failures += 1
                return queue.failures
            }
            // Once per outage, not once per batch.
            if failures == 1 { logger.info("peer \(peer.id) unreachable: \(error)") }
            if let report = unreachable.withLock({ $0 }) {
                let id = peer.id
                Task { await report(id) }
            }
        }
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
            let client = HTTP2Client(
                configuration: .init(host: address.host, port: address.port), eventLoopGroup: eventLoopGroup)
            let (stream, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
            let peer = Peer(id: id, client: client, wake: wake)
            peers[id] = peer
            // Followers learn of a dead leader from this even when they have nothing to send.
            client.onConnectionLost { [weak self] in
                guard let transport = self else { return }
                Task { await transport.checkProcessGone(peer) }
            }
            let task = Task { [weak self] in
                for await _ in stream {
                    guard let transport = self else { return }
                    await transport.postAfterConnecting(peer)
                }
            }
            tasks.withLock { $0.append(task) }
            return peer
        }
    }

    /// The sender task's part: connect if need be, post the batch that waited for it, carry on.
    private func postAfterConnecting(_ peer: Peer) async {
        let batch = peer.queue.withLock { queue in
            defer { queue.awaitingConnection = [] }
            return queue.awaitingConnection
        }
        guard !batch.isEmpty else { return }
        let result: Result<HTTPResponse, any Error>
        do {
            result = .success(try await peer.client.send(request(for: batch), timeout: requestTimeout))
        } catch {
            result = .failure(error)
        }
        finished(peer, result)
        postNext(peer)
    }

    /// Called once per closed connection: a process that dies (SIGKILL, crash) has its sockets
    /// closed by the kernel, so the connection closes at once and a new connect to its port is
    /// refused by its still-running host. Only that pair is reported. A host that vanished, or a
    /// cut network, leaves the connection silent and makes a connect time out: that stays the
    /// election timeout's job. A peer that restarted or merely closed the connection accepts the
    /// reconnect, which the next batch then uses.
    private func checkProcessGone(_ peer: Peer) async {
        do {
            try await peer.client.connect(deadline: .now() + TimeAmount(requestTimeout))
        } catch let error as HTTP2ClientError where error.connectWasRefused {
            logger.info("peer \(peer.id) closed its connection and refuses new ones: its process is gone")
            if let report = processGone.withLock({ $0 }) { await report(peer.id) }
        } catch {
            // Timed out or failed otherwise: no sign either way.
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
    mutating func addPeerRoutes(driver: RaftDriver, local: NodeID, leaderContact: LeaderContactTracker? = nil) {
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
            // Recorded before the driver sees the batch: a vote it carries must not make this node
            // leader before the voter's report of its last leader contact is counted. The body is
            // in by now, so the receive time is, if anything, late: the cautious side.
            if let leaderContact, let sender = messages.first?.from {
                leaderContact.peerReported(sender, ageHeader: request.headers[LeaderContactTracker.ageHeader])
                if messages.contains(where: \.comesFromLeader) { leaderContact.heardFromLeader() }
            }
            // Queued for the Raft actor; the answer need not wait for it (order is kept by the queue).
            driver.deliver(messages)
            return HTTPResponse(status: 204)
        }
    }
}
