// Helpers shared by the HTTP/2 tests: a server on an ephemeral loopback port, body patterns, raw sockets.
import Foundation
import HTTP2
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Runs `body` against a started server on 127.0.0.1 and shuts the server down afterwards.
func withServer<Result>(
    _ router: Router,
    configure: (inout HTTP2Server.Configuration) -> Void = { _ in },
    _ body: (HTTP2Server, Int) async throws -> Result
) async throws -> Result {
    var configuration = HTTP2Server.Configuration(host: "127.0.0.1", port: 0)
    configure(&configuration)
    let server = HTTP2Server(configuration: configuration, router: router)
    let port = try await server.start()
    do {
        let result = try await body(server, port)
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

/// A client for the local server at `port`, closed after `body`.
func withClient<Result>(
    port: Int,
    configure: (inout HTTP2Client.Configuration) -> Void = { _ in },
    _ body: (HTTP2Client) async throws -> Result
) async throws -> Result {
    var configuration = HTTP2Client.Configuration(host: "127.0.0.1", port: port)
    configure(&configuration)
    let client = HTTP2Client(configuration: configuration)
    do {
        let result = try await body(client)
        await client.close()
        return result
    } catch {
        await client.close()
        throw error
    }
}

/// A generous deadline: tests await outcomes, the deadline only stops a broken test from hanging.
func testDeadline() -> NIODeadline {
    .now() + .seconds(60)
}

/// The byte at `offset` of the test pattern: varied enough that a dropped, repeated or reordered
/// chunk changes the bytes.
@inline(__always)
func patternByte(_ offset: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: (offset &* 2_654_435_761) >> 13 ^ offset)
}

/// `count` bytes of the test pattern starting at `offset`.
func patternBuffer(offset: Int = 0, count: Int) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.reserveCapacity(count)
    buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { bytes in
        for index in 0..<count {
            bytes[index] = patternByte(offset + index)
        }
        return count
    }
    return buffer
}

/// The pattern as an async sequence of `chunkSize` chunks, produced lazily; counts what it produced.
struct PatternStream: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let total: Int
    let chunkSize: Int
    let produced: NIOLockedValueBox<Int>

    init(total: Int, chunkSize: Int, produced: NIOLockedValueBox<Int> = NIOLockedValueBox(0)) {
        self.total = total
        self.chunkSize = chunkSize
        self.produced = produced
    }

    func makeAsyncIterator() -> Iterator {
        Iterator(total: self.total, chunkSize: self.chunkSize, produced: self.produced)
    }

    struct Iterator: AsyncIteratorProtocol {
        let total: Int
        let chunkSize: Int
        let produced: NIOLockedValueBox<Int>
        var offset = 0

        mutating func next() async throws -> ByteBuffer? {
            guard self.offset < self.total else { return nil }
            let count = Swift.min(self.chunkSize, self.total - self.offset)
            let chunk = patternBuffer(offset: self.offset, count: count)
            self.offset += count
            self.produced.withLockedValue { $0 = self.offset }
            return chunk
        }
    }
}

/// The pattern as a computed body (`HTTPBodyStream(computing:)`) of `chunkSize` chunks, each made in
/// one buffer cleared and refilled; counts what it produced, and the chunks asked for off an event loop.
/// The pattern is made here, beforehand: chunks are copied out of it, because they are made on the
/// event loop, which other tests running at the same time share (a debug build makes the pattern
/// byte by byte, slowly enough to hold up their PINGs).
func computedPattern(
    total: Int, chunkSize: Int, produced: NIOLockedValueBox<Int> = NIOLockedValueBox(0),
    offLoop: NIOLockedValueBox<Int> = NIOLockedValueBox(0)
) -> HTTPBodyStream {
    let whole = patternBuffer(count: total)
    return HTTPBodyStream(computing: {
        var offset = 0
        var buffer = ByteBuffer()
        return {
            if MultiThreadedEventLoopGroup.currentEventLoop == nil { offLoop.withLockedValue { $0 += 1 } }
            guard offset < total else { return nil }
            let count = min(chunkSize, total - offset)
            buffer.clear()
            buffer.writeImmutableBuffer(whole.getSlice(at: offset, length: count)!)
            offset += count
            produced.withLockedValue { $0 = offset }
            return buffer
        }
    })
}

/// Reads `body` and checks it against the pattern; returns the byte count. `onChunk` sees the running total.
func verifyPattern(_ body: HTTPBody, onChunk: (Int) -> Void = { _ in }) async throws -> Int {
    var offset = 0
    switch body {
    case .buffer(let buffer):
        guard buffer == patternBuffer(count: buffer.readableBytes) else {
            throw PatternMismatch(offset: 0)
        }
        return buffer.readableBytes
    case .stream(let stream):
        for try await chunk in stream {
            guard chunk == patternBuffer(offset: offset, count: chunk.readableBytes) else {
                throw PatternMismatch(offset: offset)
            }
            offset += chunk.readableBytes
            onChunk(offset)
        }
        return offset
    }
}

struct PatternMismatch: Error {
    let offset: Int
}

/// A raw TCP peer: writes `bytes`, then collects everything the server sends until it closes.
func rawExchange(port: Int, sending bytes: [UInt8]) async throws -> [UInt8] {
    let received = NIOLockedValueBox<[UInt8]>([])
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(CollectingHandler(received: received))
            }
        }
        .connect(host: "127.0.0.1", port: port)
        .get()
    try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    try await channel.closeFuture.get()
    return received.withLockedValue { $0 }
}

private final class CollectingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let received: NIOLockedValueBox<[UInt8]>

    init(received: NIOLockedValueBox<[UInt8]>) {
        self.received = received
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        self.received.withLockedValue { $0.append(contentsOf: buffer.readableBytesView) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// The HTTP/2 frames in `bytes` (after any preface), as (type, flags, stream, payload).
func parseFrames(_ bytes: [UInt8]) -> [(type: UInt8, flags: UInt8, stream: UInt32, payload: ArraySlice<UInt8>)] {
    var frames: [(UInt8, UInt8, UInt32, ArraySlice<UInt8>)] = []
    var index = 0
    while index + 9 <= bytes.count {
        let length = Int(bytes[index]) << 16 | Int(bytes[index + 1]) << 8 | Int(bytes[index + 2])
        let type = bytes[index + 3]
        let flags = bytes[index + 4]
        let stream =
            (UInt32(bytes[index + 5]) << 24 | UInt32(bytes[index + 6]) << 16 | UInt32(bytes[index + 7]) << 8
                | UInt32(bytes[index + 8])) & 0x7fff_ffff
        let end = min(index + 9 + length, bytes.count)
        frames.append((type, flags, stream, bytes[(index + 9)..<end]))
        index = end
    }
    return frames
}

/// A 9-byte HTTP/2 frame header followed by `payload`.
func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, length: Int? = nil, payload: [UInt8] = []) -> [UInt8] {
    let length = length ?? payload.count
    return [
        UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8),
        UInt8(truncatingIfNeeded: length), type, flags,
        UInt8(truncatingIfNeeded: stream >> 24), UInt8(truncatingIfNeeded: stream >> 16),
        UInt8(truncatingIfNeeded: stream >> 8), UInt8(truncatingIfNeeded: stream),
    ] + payload
}

let clientPreface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

/// Runs an external tool to completion and returns (exit status, stdout, stderr).
///
/// Output goes to temporary files rather than pipes so a chatty tool can never block on a full pipe.
func runTool(_ executable: String, _ arguments: [String]) async throws -> (Int32, Data, String) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flotilla-http2-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let outURL = directory.appendingPathComponent("stdout")
    let errURL = directory.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardOutput = try FileHandle(forWritingTo: outURL)
    process.standardError = try FileHandle(forWritingTo: errURL)
    let status: Int32 = try await withCheckedThrowingContinuation { continuation in
        process.terminationHandler = { process in
            continuation.resume(returning: process.terminationStatus)
        }
        do {
            try process.run()
        } catch {
            continuation.resume(throwing: error)
        }
    }
    let out = try Data(contentsOf: outURL)
    let err = String(decoding: try Data(contentsOf: errURL), as: UTF8.self)
    return (status, out, err)
}

/// The path of an installed tool, or `nil`; scripts/install-deps.sh installs curl, nghttp and h2load.
func toolPath(_ name: String) -> String? {
    for directory in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let path = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// A raw TCP peer whose received bytes can be awaited as they arrive.
final class RawPeer: Sendable {
    let channel: any Channel
    let received: AsyncStream<[UInt8]>

    private init(channel: any Channel, received: AsyncStream<[UInt8]>) {
        self.channel = channel
        self.received = received
    }

    static func connect(port: Int) async throws -> RawPeer {
        let (received, sink) = AsyncStream<[UInt8]>.makeStream()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(StreamingHandler(sink: sink))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        return RawPeer(channel: channel, received: received)
    }

    func send(_ bytes: [UInt8]) async throws {
        try await self.channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    }
}

private final class StreamingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let sink: AsyncStream<[UInt8]>.Continuation

    init(sink: AsyncStream<[UInt8]>.Continuation) {
        self.sink = sink
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.sink.yield(Array(self.unwrapInboundIn(data).readableBytesView))
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.sink.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
