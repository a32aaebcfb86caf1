// A migration's source side of the page streams: a round's pages over several HTTP/2 streams in parallel.
public import ClusterModel
public import HTTP2
public import NIOCore

/// Sends pages to a migration's target, on its data listener: each batch is split into `streams`
/// requests that run in parallel on one HTTP/2 connection (like QEMU's multifd channels), each
/// body a stream of `PageFrame`s produced as the connection's flow control takes them, so no
/// more than a stream window per stream is ever buffered.
public struct PageSender: Sendable {
    public let client: HTTP2Client
    public let migration: MigrationID
    /// Requests in parallel per batch; at least 1.
    public let streams: Int
    /// Frames per body chunk: 64 frames are 256 KiB and a few, a quarter of a stream window.
    public static let framesPerChunk = 64

    public init(client: HTTP2Client, migration: MigrationID, streams: Int = 4) {
        precondition(streams >= 1, "a page sender needs at least one stream, got \(streams)")
        self.client = client
        self.migration = migration
        self.streams = streams
    }

    /// Sends `pages` and returns the bytes they took on the wire, once the target has every one
    /// of them. Throws `PageSendError` when a request fails or is refused (what the target said).
    public func send(_ pages: [(page: Int, word: UInt64)], deadline: NIODeadline) async throws -> UInt64 {
        guard !pages.isEmpty else { return 0 }
        let parts = min(streams, (pages.count + Self.framesPerChunk - 1) / Self.framesPerChunk)
        let share = (pages.count + parts - 1) / parts
        let path = MigrationWire.pagesPath(migration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for start in stride(from: 0, to: pages.count, by: share) {
                let slice = pages[start..<min(start + share, pages.count)]
                group.addTask {
                    let request = HTTPRequest(
                        method: .post, path: path, headers: ["content-type": "application/octet-stream"],
                        body: .stream(HTTPBodyStream(FrameChunks(pages: slice))))
                    let response: HTTPResponse
                    do {
                        response = try await client.send(request, deadline: deadline)
                    } catch {
                        throw PageSendError("the page request failed: \(error)")
                    }
                    guard response.status == 204 else {
                        let body = (try? await response.body.collect(upTo: 64 << 10)).map { String(buffer: $0) } ?? ""
                        throw PageSendError("the target refused pages with \(response.status): \(body)")
                    }
                }
            }
            try await group.waitForAll()
        }
        return UInt64(pages.count) * UInt64(PageFrame.size)
    }
}

/// Why pages did not reach a migration's target.
public struct PageSendError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}

/// A slice of pages as body chunks of `PageSender.framesPerChunk` frames, made as they are pulled.
private struct FrameChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let pages: ArraySlice<(page: Int, word: UInt64)>

    func makeAsyncIterator() -> Iterator { Iterator(rest: pages) }

    struct Iterator: AsyncIteratorProtocol {
        var rest: ArraySlice<(page: Int, word: UInt64)>

        mutating func next() async throws -> ByteBuffer? {
            guard !rest.isEmpty else { return nil }
            let chunk = rest.prefix(PageSender.framesPerChunk)
            rest = rest.dropFirst(chunk.count)
            var buffer = ByteBuffer()
            PageFrame.append(chunk, to: &buffer)
            return buffer
        }
    }
}
