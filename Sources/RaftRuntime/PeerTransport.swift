// Raft messages between nodes over HTTP/2: one connection per peer, batches in order.
public import ClusterModel
public import HTTP2
public import Logging
public import NIOCore
public import RaftCore
import Synchronization

/// The peer-RPC paths.
package enum PeerPath {
    /// One long-lived request per sending node and peer; its body is a sequence of `PeerStreamFrame`s.
    package static let raftStream = "/raft/v1/stream"
}

/// The peer stream's format version, declared once per stream in a request header.
///
/// Every frame on a stream, and every Raft message in it (`Message`'s wire format), is in the
/// version its stream declared, so a batch costs no version bytes and no check: the receiver
/// compares one header when the stream opens. A stream without the header is version 1 (the
/// streams of builds before it was declared, which wrote exactly version 1).
package enum PeerStreamFormat {
    package static let header = "flotilla-peer-format"
    /// The newest version this build reads, and the one it writes when lease reads are on.
    /// Version 2 adds two message kinds: a lease round's heartbeat (`Heartbeat.lease`) and the
    /// answer that takes its promise. A node without lease reads declares version 1, which builds
    /// before version 2 read; it sends the second kind only to a leader that sent it the first,
    /// which runs this build.
    package static let current: UInt64 = 2
    /// The version the stream of a node that asks for no lease declares.
    package static let withoutLeaseRounds: UInt64 = 1

    /// The answer that refuses a stream declaring `declared` (`nil`: no header, version 1), or nil
    /// when this build reads it: a version newer than `current`, or not a version, is refused.
    package static func refusal(_ declared: String?) -> HTTPError? {
        guard let declared else { return nil }
        guard let version = UInt64(declared), version >= 1 else {
            return HTTPError(
                status: 400, error: "bad_peer_format", detail: "\(header) is \(declared), not a format version")
        }
        guard version <= current else {
            let newer = NewerFormatVersion(
                subject: "this peer's Raft stream", format: "peer stream format", found: version, newest: current)
            return HTTPError(status: 400, error: "newer_peer_format", detail: newer.description)
        }
        return nil
    }
}

/// Encodes a batch of messages: a count, then each message length-prefixed.
package enum MessageBatch {
    package static func encode(_ messages: [Message], into writer: inout ByteWriter) {
        writer.writeVarint(messages.count)
        for message in messages { writer.write(message.wireBytes) }
    }

    package static func decode(_ reader: inout ByteReader) throws(WireFormatError) -> [Message] {
        let count = try reader.readCount()
        var messages: [Message] = []
        messages.reserveCapacity(count)
        for _ in 0..<count { messages.append(try Message(wireBytes: try reader.readBytes())) }
        return messages
    }
}

/// One frame of a peer stream: a batch of messages and the sender's last contact with a leader.
///
/// Layout: the varint length of the rest, then the sender's `LeaderContactTracker` age in
/// microseconds (varint), then the batch (`MessageBatch`). A frame may span DATA frames, and a DATA
/// frame may hold several frames: the receiver reassembles.
package enum PeerStreamFrame {
    /// A frame longer than this is refused. Senders split batches at `splitBytes`; one message is
    /// far smaller (entries per append and snapshot chunks are capped in `RaftConfiguration`).
    package static let maxLength = 64 << 20
    /// A batch's messages go in one frame until it holds this many bytes; the rest in more frames.
    package static let splitBytes = 8 << 20

    /// Encodes `messages` as one or more frames (see `splitBytes`), each carrying `age`.
    package static func encode(_ messages: [Message], contactAgeMicroseconds age: UInt64) -> ByteBuffer {
        var buffer = ByteBuffer()
        var encoded: [[UInt8]] = []
        var bytes = 0
        for message in messages {
            let wire = message.wireBytes
            if !encoded.isEmpty && bytes + wire.count > splitBytes {
                appendFrame(encoded, age: age, to: &buffer)
                encoded.removeAll(keepingCapacity: true)
                bytes = 0
            }
            encoded.append(wire)
            bytes += wire.count
        }
        appendFrame(encoded, age: age, to: &buffer)
        return buffer
    }

    private static func appendFrame(_ messages: [[UInt8]], age: UInt64, to buffer: inout ByteBuffer) {
        var body = ByteWriter(capacity: 16 + messages.reduce(0) { $0 + $1.count + 5 })
        body.writeVarint(age)
        body.writeVarint(messages.count)
        for message in messages { body.write(message) }
        var length = ByteWriter(capacity: 10)
        length.writeVarint(body.bytes.count)
        buffer.writeBytes(length.bytes)
        buffer.writeBytes(body.bytes)
    }

    /// Decodes the frame's content (after its length): the age and the batch.
    package static func decode(_ content: [UInt8]) throws(WireFormatError) -> (
        ageMicroseconds: UInt64, messages: [Message]
    ) {
        var reader = ByteReader(content)
        let age = try reader.readVarint()
        let messages = try MessageBatch.decode(&reader)
        guard reader.isAtEnd else { throw WireFormatError("\(reader.remaining) bytes after a message batch") }
        return (age, messages)
    }
}

/// Splits a peer stream's body into frames as its bytes arrive, in any pieces.
package struct PeerStreamReassembler {
    private var pending: [UInt8] = []

    /// Takes the next bytes; returns the contents of the frames they completed, in order.
    package init() {}

    package mutating func take(_ bytes: UnsafeRawBufferPointer) throws(WireFormatError) -> [[UInt8]] {
        pending.append(contentsOf: bytes)
        var frames: [[UInt8]] = []
        var start = 0
        while start < pending.count {
            // The length prefix: a varint of at most 10 bytes, possibly not all here yet.
            var length: UInt64 = 0
            var shift: UInt64 = 0
            var offset = start
            var complete = false
            while offset < pending.count {
                let byte = pending[offset]
                offset += 1
                guard shift < 64 else { throw WireFormatError("a peer frame's length prefix is too long") }
                length |= UInt64(byte & 0x7F) << shift
                shift += 7
                if byte & 0x80 == 0 {
                    complete = true
                    break
                }
            }
            guard complete else { break }
            guard length <= UInt64(PeerStreamFrame.maxLength) else {
                throw WireFormatError(
                    "a peer frame of \(length) bytes exceeds the limit of \(PeerStreamFrame.maxLength)")
            }
            guard pending.count - offset >= Int(length) else { break }
            frames.append(Array(pending[offset..<(offset + Int(length))]))
            start = offset + Int(length)
        }
        if start == pending.count && pending.capacity > 1 << 20 {
            // Let go of a large frame's room once it is handed on: the stream lives for long.
            pending = []
        } else {
            pending.removeFirst(start)
        }
        return frames
    }

    /// Bytes of a frame not yet complete.
    package var bufferedBytes: Int { pending.count }
}

/// Receives one peer's stream: hands each frame's batch to the Raft driver as it completes.
package final class PeerStreamSink: RequestBodySink {
    /// Queues a batch for the Raft driver (`RaftDriver.deliver`), inline on the connection's loop.
    private let deliver: @Sendable ([Message]) -> Void
    private let local: NodeID
    private let leaderContact: LeaderContactTracker?
    /// Told who sent the stream's first batch: that peer is up.
    private let peerReachedUs: (@Sendable (NodeID) -> Void)?
    private var sender: NodeID?
    private var reassembler = PeerStreamReassembler()

    package init(
        deliver: @escaping @Sendable ([Message]) -> Void, local: NodeID, leaderContact: LeaderContactTracker?,
        peerReachedUs: (@Sendable (NodeID) -> Void)? = nil
    ) {
        self.deliver = deliver
        self.local = local
        self.leaderContact = leaderContact
        self.peerReachedUs = peerReachedUs
    }

    package func receive(_ bytes: UnsafeRawBufferPointer) throws {
        let frames: [[UInt8]]
        do {
            frames = try reassembler.take(bytes)
        } catch {
            throw HTTPError(status: 400, error: "bad_peer_stream", detail: "\(error)")
        }
        for content in frames {
            let frame: (ageMicroseconds: UInt64, messages: [Message])
            do {
                frame = try PeerStreamFrame.decode(content)
            } catch {
                throw HTTPError(status: 400, error: "bad_message_batch", detail: "\(error)")
            }
            // A message addressed to another node means a misconfigured peer: say so.
            if let stray = frame.messages.first(where: { $0.to != local }) {
                throw HTTPError(
                    status: 421, error: "misdirected_message",
                    detail: "this is node \(local), the message is for \(stray.to); check the peer addresses")
            }
            // Recorded before the driver sees the batch: a vote it carries must not make this node
            // leader before the voter's report of its last leader contact is counted.
            if let from = frame.messages.first?.from {
                if let leaderContact {
                    leaderContact.peerReported(from, ageMicroseconds: frame.ageMicroseconds)
                    if frame.messages.contains(where: \.comesFromLeader) { leaderContact.heardFromLeader() }
                }
                if sender == nil {
                    sender = from
                    peerReachedUs?(from)
                }
            }
            // Queued for the Raft actor in arrival order; nothing is answered per batch.
            deliver(frame.messages)
        }
    }

    package func finish() -> HTTPResponse {
        guard reassembler.bufferedBytes == 0 else {
            return HTTPResponse(
                error: HTTPError(
                    status: 400, error: "bad_peer_stream",
                    detail: "the stream ended inside a frame, \(reassembler.bufferedBytes) bytes short of its end"))
        }
        return HTTPResponse(status: 204)
    }
}

/// Sends Raft messages to peers over HTTP/2.
///
/// Each peer has one connection (`HTTP2Client`) and, on it, one long-lived request whose body is
/// the stream of this node's messages to that peer (`PeerStreamFrame`s; the peer's messages to
/// this node come on its own stream). `send` writes a batch into the stream at once, on the
/// connection's event loop (the Raft driver's), so a leader's appends leave before its fsync; no
/// batch waits for an answer. Per batch this costs its DATA frames and one write, where a request
/// per batch cost a HEADERS frame, an answer, a task and two more system calls on each side.
///
/// With no open stream, messages wait while the peer's sender task connects and opens one, and
/// are dropped if that fails (the peer is down: Raft resends what matters). A stream that ends or
/// fails, or whose unsent bytes pile up past `maxUnsentBytes` (the peer takes nothing), is
/// reported as unreachable so the leader probes instead of pipelining blind; the next batch opens
/// a new one. A peer that goes silent (host gone, network cut) is found by the connection's PINGs,
/// which close it and so fail the stream.
public final class HTTP2PeerTransport: PeerTransport, Sendable {
    private final class Peer: Sendable {
        struct State {
            /// The open stream, if any.
            var stream: HTTP2PushStream?
            /// Messages waiting for a stream; the sender task writes them once it has opened one.
            var waiting: [Message] = []
            /// The sender task is opening a stream.
            var opening = false
            /// Failures in a row, to log an outage once; a stream opening ends the outage.
            var failures = 0
            /// Streams the peer refused (an answer other than 204), to log the first and every 100th.
            var refusals = 0
        }

        let id: NodeID
        let client: HTTP2Client
        let state = Mutex(State())
        let wake: AsyncStream<Void>.Continuation

        init(id: NodeID, client: HTTP2Client, wake: AsyncStream<Void>.Continuation) {
            self.id = id
            self.client = client
            self.wake = wake
        }
    }

    /// Messages waiting for a stream beyond this are dropped, oldest first (a peer that is down).
    static let maxBufferedMessages = 8192
    /// Bytes a stream may hold unsent (flow control or the socket is full) before it is given up.
    static let maxUnsentBytes = 64 << 20

    private let local: NodeID
    /// Where a peer's Raft port is; nil for a node whose address is not known (yet).
    private let peerAddress: @Sendable (NodeID) -> Endpoint?
    /// How long opening a stream (connect included) may take.
    private let requestTimeout: Duration
    private let logger: Logger
    /// Every batch reports how long ago this node last heard from a leader (`LeaderContact`).
    private let leaderContact: LeaderContactTracker?
    /// Where the peer connections live: the Raft driver's loop, so answers reach it without a thread switch.
    private let eventLoopGroup: any EventLoopGroup
    /// Peers are made on first use, from `peerAddress`, so members added later are reached.
    private let peers = Mutex<[NodeID: Peer]>([:])
    private let tasks = Mutex<[Task<Void, Never>]>([])
    /// Set by `close()`: streams that end from then on are expected, not news.
    private let closing = Atomic<Bool>(false)
    /// Told when messages to a peer may have been lost, so the Raft leader probes it instead of pipelining blind.
    private let unreachable = Mutex<(@Sendable (NodeID) async -> Void)?>(nil)

    /// Told when a peer's process is gone (see `checkProcessGone`), so a follower of it campaigns at once.
    private let processGone = Mutex<(@Sendable (NodeID) async -> Void)?>(nil)

    /// Sets what to do when messages to a peer may have been lost.
    public func onUnreachable(_ handler: @escaping @Sendable (NodeID) async -> Void) {
        unreachable.withLock { $0 = handler }
    }

    /// Sets what to do when a peer's connection closed and a reconnect was refused: its process
    /// is gone (killed or crashed; a live node always accepts connections).
    public func onPeerProcessGone(_ handler: @escaping @Sendable (NodeID) async -> Void) {
        processGone.withLock { $0 = handler }
    }

    /// The peer stream format this node's streams declare (`PeerStreamFormat`).
    private let streamFormat: UInt64

    /// - Parameter asksForLeases: this node's Raft core takes read leases, so its heartbeats may ask
    ///   for lease promises: its streams declare format 2 (else 1).
    public init(
        local: NodeID, peerAddress: @escaping @Sendable (NodeID) -> Endpoint?, requestTimeout: Duration,
        leaderContact: LeaderContactTracker? = nil, eventLoopGroup: any EventLoopGroup, logger: Logger,
        asksForLeases: Bool = false
    ) {
        self.streamFormat = asksForLeases ? PeerStreamFormat.current : PeerStreamFormat.withoutLeaseRounds
        self.local = local
        self.eventLoopGroup = eventLoopGroup
        self.peerAddress = peerAddress
        self.requestTimeout = requestTimeout
        self.leaderContact = leaderContact
        self.logger = logger
    }

    public func send(_ messages: [Message]) {
        // One batch per peer, in the order given (a node sends to two or four peers at most).
        var batches: [(peer: NodeID, messages: [Message])] = []
        for message in messages {
            if let index = batches.firstIndex(where: { $0.peer == message.to }) {
                batches[index].messages.append(message)
            } else {
                batches.append((message.to, [message]))
            }
        }
        for (id, batch) in batches {
            guard let peer = peer(id) else { continue }
            send(batch, to: peer)
        }
    }

    private enum Route {
        case write(HTTP2PushStream)
        case openStream
        case wait
    }

    private func send(_ batch: [Message], to peer: Peer) {
        let route = peer.state.withLock { state -> Route in
            if let stream = state.stream { return .write(stream) }
            state.waiting.append(contentsOf: batch)
            if state.waiting.count > Self.maxBufferedMessages {
                state.waiting.removeFirst(state.waiting.count - Self.maxBufferedMessages)
            }
            if state.opening { return .wait }
            state.opening = true
            return .openStream
        }
        switch route {
        case .write(let stream): write(batch, to: stream, of: peer)
        case .openStream: peer.wake.yield()
        case .wait: break
        }
    }

    private func write(_ batch: [Message], to stream: HTTP2PushStream, of peer: Peer) {
        // The age is taken as the batch is encoded: time on the way only makes the receiver place
        // the contact later, the cautious side.
        let frame = PeerStreamFrame.encode(batch, contactAgeMicroseconds: leaderContact?.ageMicroseconds() ?? 0)
        if stream.eventLoop.inEventLoop {
            pushed(stream.push(frame), batch, stream, peer)
        } else {
            stream.eventLoop.execute { self.pushed(stream.push(frame), batch, stream, peer) }
        }
    }

    private func pushed(_ unsent: Int?, _ batch: [Message], _ stream: HTTP2PushStream, _ peer: Peer) {
        guard let unsent else {
            // The stream closed before its end was reported here: this batch goes on a new one.
            forget(stream, of: peer)
            send(batch, to: peer)
            return
        }
        if unsent > Self.maxUnsentBytes {
            logger.info("peer \(peer.id) takes nothing: \(unsent) bytes wait to be sent; the stream is reset")
            stream.cancel()
            if forget(stream, of: peer) { reportUnreachable(peer) }
        }
    }

    /// Clears `stream` as the peer's stream; false if it was not (already cleared or replaced).
    @discardableResult
    private func forget(_ stream: HTTP2PushStream, of peer: Peer) -> Bool {
        peer.state.withLock { state in
            guard state.stream === stream else { return false }
            state.stream = nil
            return true
        }
    }

    private func reportUnreachable(_ peer: Peer) {
        if let report = unreachable.withLock({ $0 }) {
            let id = peer.id
            Task { await report(id) }
        }
    }

    /// The peer for `id`, started on first use; nil for this node or a node with no known address.
    private func peer(_ id: NodeID) -> Peer? {
        guard id != local else { return nil }
        if let peer = peers.withLock({ $0[id] }) { return peer }
        guard let address = peerAddress(id) else {
            logger.warning("no address known for \(id); its messages are dropped until it is registered")
            return nil
        }
        return peers.withLock { peers in
            if let peer = peers[id] { return peer }
            var configuration = HTTP2Client.Configuration(host: address.host, port: address.port)
            // A stream has no deadline: PINGs find a peer that went silent (host gone, network cut),
            // whose connection TCP would otherwise keep for minutes with this node's messages queued
            // on it. Patient (a busy peer answers late; the election timeout is what detects a dead
            // leader), but then the connection closes, the stream fails and the leader probes.
            configuration.pingInterval = TimeAmount(requestTimeout)
            configuration.pingTimeout = max(TimeAmount(requestTimeout) * 4, .seconds(2))
            let client = HTTP2Client(configuration: configuration, eventLoopGroup: eventLoopGroup)
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
                    await transport.openStream(to: peer)
                }
            }
            tasks.withLock { $0.append(task) }
            return peer
        }
    }

    /// The sender task's part: connect if need be, open a stream, write what waited for it.
    private func openStream(to peer: Peer) async {
        let request = HTTPRequest(
            method: .post, path: PeerPath.raftStream,
            headers: [
                "content-type": "application/octet-stream", PeerStreamFormat.header: "\(streamFormat)",
            ],
            body: .empty)
        let stream: HTTP2PushStream
        do {
            stream = try await peer.client.openPushStream(request, deadline: .now() + TimeAmount(requestTimeout))
        } catch {
            let failures = peer.state.withLock { state in
                state.opening = false
                state.waiting.removeAll()
                state.failures += 1
                return state.failures
            }
            // Once per outage, not once per batch.
            if failures == 1 { logger.info("peer \(peer.id) unreachable: \(error)") }
            reportUnreachable(peer)
            return
        }
        // Installed on the loop, where the driver sends: what waited is written before any later
        // batch. Watched from there too, so a stream that already ended is seen as installed.
        stream.eventLoop.execute {
            let waiting = peer.state.withLock { state in
                state.stream = stream
                state.opening = false
                state.failures = 0
                defer { state.waiting.removeAll() }
                return state.waiting
            }
            stream.response.whenComplete { result in self.streamEnded(stream, of: peer, result) }
            if !waiting.isEmpty { self.write(waiting, to: stream, of: peer) }
        }
    }

    private func streamEnded(_ stream: HTTP2PushStream, of peer: Peer, _ result: Result<HTTPResponse, any Error>) {
        guard forget(stream, of: peer), !closing.load(ordering: .relaxed) else { return }
        switch result {
        case .success(let response) where response.status == 204:
            logger.info("peer \(peer.id) closed this node's message stream (it is shutting down)")
        case .success(let response):
            // A refusing peer (misconfigured addresses) refuses every new stream too: log the first
            // and then every 100th, not one line per batch.
            let refusals = peer.state.withLock { state in
                state.refusals += 1
                return state.refusals
            }
            if refusals == 1 || refusals % 100 == 0 {
                var detail = ""
                if case .buffer(let body) = response.body, body.readableBytes > 0 {
                    detail = ": " + String(buffer: body)
                }
                logger.warning(
                    "peer \(peer.id) refused this node's message stream with status \(response.status)\(detail) (\(refusals) times)"
                )
            }
        case .failure(let error):
            let failures = peer.state.withLock { state in
                state.failures += 1
                return state.failures
            }
            // Once per outage, not once per stream.
            if failures == 1 { logger.info("peer \(peer.id) unreachable: \(error)") }
        }
        reportUnreachable(peer)
    }

    /// Called once per closed connection: a process that dies (SIGKILL, crash) has its sockets
    /// closed by the kernel, so the connection closes at once and a new connect to its port is
    /// refused by its still-running host. Only that pair is reported. A host that vanished, or a
    /// cut network, leaves the connection silent and makes a connect time out: that stays the
    /// election timeout's job. A peer that restarted or merely closed the connection accepts the
    /// reconnect, which the next batch then uses. `ProcessGoneCheck` reads each reconnect,
    /// including the ones a dying process's listening socket still took and then reset.
    private func checkProcessGone(_ peer: Peer) async {
        var check = ProcessGoneCheck()
        while true {
            var failure: (any Error)?
            do {
                try await peer.client.connect(deadline: .now() + TimeAmount(requestTimeout))
            } catch {
                failure = error
            }
            switch check.read(failure) {
            case .alive:
                return
            case .gone:
                logger.info("peer \(peer.id) closed its connection and refuses new ones: its process is gone")
                if let report = processGone.withLock({ $0 }) { await report(peer.id) }
                return
            case .tryAgain(let delay):
                try? await Task.sleep(for: delay)
            case .noSign:
                logger.info(
                    "peer \(peer.id) closed its connection; reconnecting did not show it gone (\(check.attempt) attempts): \(failure.map { "\($0)" } ?? "")"
                )
                return
            }
        }
    }

    /// `id` opened a stream to this node, so it is up: if its last connect failed (it was down, or
    /// restarting), this node's next batch to it connects at once instead of after the backoff —
    /// which would otherwise keep this node's votes and appends from a restarted peer for seconds.
    public func peerReachedUs(_ id: NodeID) {
        guard let peer = peers.withLock({ $0[id] }) else { return }
        peer.client.peerIsBack()
    }

    /// Stops the sender tasks and closes the connections.
    public func close() async {
        closing.store(true, ordering: .relaxed)
        let peers = peers.withLock { $0.values }
        for peer in peers { peer.wake.finish() }
        for task in tasks.withLock({ $0 }) { await task.value }
        for peer in peers { await peer.client.close() }
    }
}

extension Router {
    /// Adds the peer-RPC route that feeds `driver`: each peer's stream of message batches.
    /// `peerReachedUs` is told the sender of each stream's first batch (see
    /// `HTTP2PeerTransport.peerReachedUs`). A stream in a newer format than this build reads is
    /// refused (`PeerStreamFormat`) and the refusal logged to `logger`.
    public mutating func addPeerRoutes<Machine>(
        driver: RaftDriver<Machine>, local: NodeID, leaderContact: LeaderContactTracker? = nil,
        peerReachedUs: (@Sendable (NodeID) -> Void)? = nil, logger: Logger? = nil
    ) {
        addSink(.post, PeerPath.raftStream) { request, _ in
            if let refusal = PeerStreamFormat.refusal(request.headers[PeerStreamFormat.header]) {
                logger?.error("refused a Raft stream: \(refusal.detail)")
                throw refusal
            }
            return PeerStreamSink(
                deliver: { driver.deliver($0) }, local: local, leaderContact: leaderContact,
                peerReachedUs: peerReachedUs)
        }
    }
}
