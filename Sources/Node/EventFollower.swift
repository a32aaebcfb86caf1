// `GET /v1/events?follow=true`: the event history, then each new event as it is applied, one JSON line each.
import ClusterState
import FlotillaAPI
import Foundation
import NIOCore
import RaftCore
import RaftRuntime
import Synchronization

/// Whether the client API is shutting down, so long-lived answers (event follows) end instead of
/// holding the server's graceful shutdown open for its whole grace period.
final class APILifecycle: Sendable {
    private let stopping = Atomic<Bool>(false)

    var isStopping: Bool { stopping.load(ordering: .relaxed) }
    func stop() { stopping.store(true, ordering: .relaxed) }
}

/// The chunks of a followed event stream: newline-delimited JSON, one event per line.
///
/// Pulled by the connection only as the client reads, so a slow client never makes it buffer.
/// It polls this node's applied state (events only ever grow, so a poll never goes back), and
/// sends an empty line after `keepalive` without events: writing is how a closed connection is
/// noticed, which ends the stream.
struct EventFollower: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    let first: [EventView]
    /// The sequence of the last event already sent (or skipped by `since`).
    let after: UInt64
    let driver: ClusterDriver
    let lifecycle: APILifecycle
    var pollInterval: Duration = .milliseconds(200)
    var keepalive: Duration = .seconds(5)

    func makeAsyncIterator() -> Iterator { Iterator(follower: self, pending: first, after: after) }

    struct Iterator: AsyncIteratorProtocol {
        let follower: EventFollower
        var pending: [EventView]
        var after: UInt64

        mutating func next() async throws -> ByteBuffer? {
            if !pending.isEmpty {
                defer { pending = [] }
                return try Self.lines(pending)
            }
            var quiet: Duration = .zero
            while !follower.lifecycle.isStopping, !Task.isCancelled {
                try? await Task.sleep(for: follower.pollInterval)
                let since = after
                let new = await follower.driver.staleRead {
                    $0.state.events(since: since).map(EventView.init)
                }
                if let last = new.last {
                    after = last.sequence
                    return try Self.lines(new)
                }
                quiet += follower.pollInterval
                if quiet >= follower.keepalive { return ByteBuffer(string: "\n") }
            }
            return nil
        }

        static func lines(_ events: [EventView]) throws -> ByteBuffer {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            var buffer = ByteBuffer()
            for event in events {
                buffer.writeBytes(try encoder.encode(event))
                buffer.writeString("\n")
            }
            return buffer
        }
    }
}
