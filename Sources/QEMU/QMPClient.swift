// QMP, QEMU's JSON control protocol, over the UNIX socket a guest's process listens on.
public import NIOCore
import NIOPosix

/// What went wrong talking to a QEMU process.
public enum QMPError: Error, CustomStringConvertible, Equatable {
    /// QEMU answered the command with an error (its class and text).
    case command(String, errorClass: String, description: String)
    /// The connection closed (the process exited or was killed) before the answer.
    case closed
    /// A line that is not QMP's JSON.
    case malformed(String)
    /// The socket did not accept a connection.
    case connect(String)

    public var description: String {
        switch self {
        case .command(let command, let errorClass, let text): "QEMU refused \(command): \(errorClass): \(text)"
        case .closed: "QEMU's control connection closed"
        case .malformed(let line): "QEMU sent something that is not QMP: \(line.prefix(200))"
        case .connect(let reason): "cannot reach QEMU's control socket: \(reason)"
        }
    }
}

/// A QMP connection: commands answered in order of their ids, events as a stream.
public final class QMPClient: Sendable {
    private let channel: any Channel
    private let handler: NIOLoopBound<QMPHandler>
    /// Events QEMU sends on its own (`STOP`, `RESUME`, `BALLOON_CHANGE`, `MIGRATION`, `SHUTDOWN`, …).
    public let events: AsyncStream<QMPEvent>

    private init(channel: any Channel, handler: NIOLoopBound<QMPHandler>, events: AsyncStream<QMPEvent>) {
        self.channel = channel
        self.handler = handler
        self.events = events
    }

    /// Connects to `socketPath`, reads QEMU's greeting and enters command mode (`qmp_capabilities`).
    public static func connect(socketPath: String, group: any EventLoopGroup) async throws -> QMPClient {
        let (events, eventSink) = AsyncStream.makeStream(of: QMPEvent.self, bufferingPolicy: .bufferingNewest(256))
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(QMPHandler(events: eventSink))
                    }
                }
                .connect(unixDomainSocketPath: socketPath).get()
        } catch {
            eventSink.finish()
            throw QMPError.connect("\(socketPath): \(error)")
        }
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(
                try channel.pipeline.syncOperations.handler(type: QMPHandler.self), eventLoop: channel.eventLoop)
        }.get()
        let client = QMPClient(channel: channel, handler: handler, events: events)
        do {
            _ = try await channel.eventLoop.flatSubmit { handler.value.greeting! }.get()
            _ = try await client.execute("qmp_capabilities")
        } catch {
            client.close()
            throw error
        }
        return client
    }

    /// Runs `command` and returns its `return` value; a QEMU error becomes `QMPError.command`.
    @discardableResult
    public func execute(_ command: String, _ arguments: [String: QMPValue] = [:]) async throws -> QMPValue {
        let handler = self.handler
        let channel = self.channel
        let answer = try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<QMPValue> in
            let (id, promise) = handler.value.register(channel.eventLoop)
            var request: [String: QMPValue] = ["execute": .string(command), "id": .number(Double(id))]
            if !arguments.isEmpty { request["arguments"] = .object(arguments) }
            var line: [UInt8] = []
            QMPValue.object(request).write(to: &line)
            line.append(UInt8(ascii: "\n"))
            channel.writeAndFlush(channel.allocator.buffer(bytes: line), promise: nil)
            return promise.futureResult
        }.get()
        if let error = answer["error"] {
            throw QMPError.command(
                command, errorClass: error["class"]?.string ?? "?", description: error["desc"]?.string ?? "")
        }
        return answer["return"] ?? .null
    }

    /// How many events named `name` arrived so far: the mark `waitForEvent` counts from.
    public func eventCount(_ name: String) async throws -> UInt64 {
        let handler = self.handler
        return try await channel.eventLoop.submit { handler.value.eventCount(name) }.get()
    }

    /// Waits until more than `seen` events named `name` arrived, or `timeout` passed; returns the
    /// count then. A caller that reads QEMU's state between waits takes the count before it reads,
    /// so an event that arrives while it reads is not missed. Throws when the connection closes.
    public func waitForEvent(_ name: String, after seen: UInt64, timeout: Duration) async throws -> UInt64 {
        let handler = self.handler
        let loop = channel.eventLoop
        return try await loop.flatSubmit { handler.value.waitForEvent(name, after: seen, timeout: timeout, on: loop) }
            .get()
    }

    /// Closes the connection; commands waiting for answers fail with `.closed`.
    public func close() {
        channel.close(promise: nil)
    }
}

/// An event QEMU sent: its name and data.
public struct QMPEvent: Sendable, Hashable {
    public var name: String
    public var data: QMPValue

    public init(name: String, data: QMPValue) {
        self.name = name
        self.data = data
    }
}

/// Splits the socket's bytes into lines of JSON and hands each answer to the command waiting for it.
final class QMPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var buffered = ByteBuffer()
    private var pending: [UInt64: EventLoopPromise<QMPValue>] = [:]
    private var nextID: UInt64 = 1
    private let events: AsyncStream<QMPEvent>.Continuation
    private var greetingPromise: EventLoopPromise<QMPValue>?
    private var closed = false
    /// Events so far, by name, and who waits for the next one.
    private var eventCounts: [String: UInt64] = [:]
    private var eventWaiters: [UInt64: (name: String, promise: EventLoopPromise<UInt64>)] = [:]
    private var nextWaiter: UInt64 = 0

    init(events: AsyncStream<QMPEvent>.Continuation) {
        self.events = events
    }

    /// QEMU's first line (`{"QMP": {...}}`); set when the handler joins its pipeline.
    private(set) var greeting: EventLoopFuture<QMPValue>?

    func handlerAdded(context: ChannelHandlerContext) {
        let promise = context.eventLoop.makePromise(of: QMPValue.self)
        greetingPromise = promise
        greeting = promise.futureResult
    }

    func register(_ eventLoop: any EventLoop) -> (UInt64, EventLoopPromise<QMPValue>) {
        let promise = eventLoop.makePromise(of: QMPValue.self)
        if closed {
            promise.fail(QMPError.closed)
            return (0, promise)
        }
        let id = nextID
        nextID += 1
        pending[id] = promise
        return (id, promise)
    }

    func eventCount(_ name: String) -> UInt64 { eventCounts[name, default: 0] }

    func waitForEvent(_ name: String, after seen: UInt64, timeout: Duration, on loop: any EventLoop)
        -> EventLoopFuture<UInt64>
    {
        if closed { return loop.makeFailedFuture(QMPError.closed) }
        let count = eventCounts[name, default: 0]
        if count > seen { return loop.makeSucceededFuture(count) }
        let promise = loop.makePromise(of: UInt64.self)
        let waiter = nextWaiter
        nextWaiter += 1
        eventWaiters[waiter] = (name, promise)
        let bound = NIOLoopBound(self, eventLoop: loop)
        let timer = loop.scheduleTask(in: TimeAmount(timeout)) {
            guard let (name, promise) = bound.value.eventWaiters.removeValue(forKey: waiter) else { return }
            promise.succeed(bound.value.eventCounts[name, default: 0])
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        return promise.futureResult
    }

    func fail(_ id: UInt64, _ error: any Error) {
        pending.removeValue(forKey: id)?.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffered.writeBuffer(&bytes)
        while let newline = buffered.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - buffered.readerIndex
            let line = buffered.readSlice(length: length)!
            buffered.moveReaderIndex(forwardBy: 1)
            guard line.readableBytes > 0 else { continue }
            handle(line: line, context: context)
        }
        buffered.discardReadBytes()
    }

    private func handle(line: ByteBuffer, context: ChannelHandlerContext) {
        guard let value = try? line.withUnsafeReadableBytes({ bytes in try QMPValue(json: bytes) })
        else {
            let text = String(buffer: line)
            failAll(QMPError.malformed(text))
            context.close(promise: nil)
            return
        }
        if value["QMP"] != nil {
            greetingPromise?.succeed(value)
            greetingPromise = nil
        } else if let name = value["event"]?.string {
            events.yield(QMPEvent(name: name, data: value["data"] ?? .null))
            eventCounts[name, default: 0] += 1
            let count = eventCounts[name]!
            for (key, waiter) in eventWaiters where waiter.name == name {
                eventWaiters.removeValue(forKey: key)
                waiter.promise.succeed(count)
            }
        } else if let id = value["id"]?.count, let promise = pending.removeValue(forKey: id) {
            promise.succeed(value)
        }
    }

    /// A channel that never connected is torn down without going inactive: nothing may wait on.
    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(QMPError.closed)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(QMPError.closed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(QMPError.closed)
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        closed = true
        greetingPromise?.fail(error)
        greetingPromise = nil
        let waiting = pending
        pending = [:]
        for promise in waiting.values { promise.fail(error) }
        let waiters = eventWaiters
        eventWaiters = [:]
        for waiter in waiters.values { waiter.promise.fail(error) }
        events.finish()
    }
}
