// A body as an async sequence of ByteBuffer chunks, pulled only as fast as its reader consumes them.
public import NIOCore

/// A streamed message body: an `AsyncSequence` of `ByteBuffer` chunks that can be iterated once.
///
/// Outbound (a request body the client sends, a response body a handler returns) the connection pulls
/// the next chunk only when the peer's flow-control window and the socket have room, so a slow reader
/// pauses the producer instead of growing a buffer. Inbound (a streamed request or response body) the
/// connection returns flow-control credit to the peer only as chunks are taken from this sequence, so
/// at most one stream window (`HTTP2Server.Configuration.initialStreamWindowSize`) is buffered.
public struct HTTPBodyStream: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    private let makeIterator: @Sendable () -> AsyncIterator
    /// For a body made by `init(computing:)`: what makes its chunk function.
    let computing: MakeChunks?

    /// Makes the function that computes a body's chunks, one per call, nil at the end.
    public typealias MakeChunks = @Sendable () -> (() -> ByteBuffer?)

    /// Wraps any sequence of chunks, e.g. a file read lazily or an `AsyncStream` a producer feeds.
    public init<Base: AsyncSequence & Sendable>(_ base: Base) where Base.Element == ByteBuffer {
        self.makeIterator = {
            let box = IteratorBox(base.makeAsyncIterator())
            return AsyncIterator { try await box.next() }
        }
        self.computing = nil
    }

    /// A body computed chunk by chunk rather than awaited, such as a live migration's pages.
    ///
    /// `makeChunks` is called once per send and returns the function that computes the next chunk
    /// (nil at the end). Over HTTP/2 both run on the connection's event loop, and the next chunk is
    /// asked for only when the peer's flow control and the socket take more and the chunk before
    /// has gone into DATA frames: no task and no thread hop per chunk, and a chunk function that
    /// clears and refills one buffer reuses its memory (copy-on-write keeps a chunk still queued
    /// intact). It runs on the loop, so it must not block, and a chunk should take microseconds. A
    /// reader that iterates the body (HTTP/1.1) calls the same functions.
    public init(computing makeChunks: @escaping MakeChunks) {
        self.makeIterator = {
            let next = makeChunks()
            return AsyncIterator { next() }
        }
        self.computing = { makeChunks() }
    }

    /// A stream that yields `chunks` in order (handy for tests and small bodies).
    public init(chunks: [ByteBuffer]) {
        self.init(ChunkSequence(chunks: chunks))
    }

    public func makeAsyncIterator() -> AsyncIterator {
        self.makeIterator()
    }

    /// Iterates the chunks of a body stream.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let nextChunk: () async throws -> ByteBuffer?

        public mutating func next() async throws -> ByteBuffer? {
            try await self.nextChunk()
        }
    }
}

/// Holds a concrete iterator so the type-erased iterator can call its mutating `next()`.
private final class IteratorBox<Base: AsyncIteratorProtocol> where Base.Element == ByteBuffer {
    var base: Base

    init(_ base: Base) {
        self.base = base
    }

    func next() async throws -> ByteBuffer? {
        try await self.base.next()
    }
}

/// A fixed list of chunks as an async sequence.
private struct ChunkSequence: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let chunks: [ByteBuffer]

    func makeAsyncIterator() -> Iterator {
        Iterator(chunks: self.chunks[...])
    }

    struct Iterator: AsyncIteratorProtocol {
        var chunks: ArraySlice<ByteBuffer>

        mutating func next() async throws -> ByteBuffer? {
            self.chunks.popFirst()
        }
    }
}

/// The inbound side of a streamed body: chunks the connection received, reported back as consumed.
///
/// Consumption is reported in batches of `reportThreshold` bytes (and at the end of the body) because
/// each report is a hop to the connection's event loop; the threshold stays well under the stream
/// window so the peer never stalls waiting for credit that is only batched.
struct InboundBodySequence: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    let chunks: AsyncThrowingStream<ByteBuffer, any Error>
    let reportConsumed: @Sendable (Int) -> Void
    let reportThreshold: Int

    func makeAsyncIterator() -> Iterator {
        Iterator(
            base: self.chunks.makeAsyncIterator(),
            reportConsumed: self.reportConsumed,
            reportThreshold: self.reportThreshold
        )
    }

    struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator
        let reportConsumed: @Sendable (Int) -> Void
        let reportThreshold: Int
        var unreported = 0

        mutating func next() async throws -> ByteBuffer? {
            do {
                guard let chunk = try await self.base.next() else {
                    self.flushReport()
                    return nil
                }
                self.unreported += chunk.readableBytes
                if self.unreported >= self.reportThreshold {
                    self.flushReport()
                }
                return chunk
            } catch {
                self.flushReport()
                throw error
            }
        }

        private mutating func flushReport() {
            if self.unreported > 0 {
                self.reportConsumed(self.unreported)
                self.unreported = 0
            }
        }
    }
}
