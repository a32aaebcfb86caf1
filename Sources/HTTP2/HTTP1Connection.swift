// HTTP/1.1 on the client-API port: NIO's HTTP/1 codec in front of the same Router the HTTP/2 side uses.
import NIOCore
import NIOHTTP1

/// Serves HTTP/1.1 requests (keep-alive, one at a time; NIO's pipelining handler orders them).
///
/// The body is collected up to the server's `maxRequestBodySize` (also for `.stream` routes, which get
/// it as a one-chunk stream); a larger body is answered 413 and the connection is closed, since the
/// rest of that body would otherwise have to be read and thrown away.
final class HTTP1Connection: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        case receiving(HTTPRequestHead, ByteBuffer)
        case bodyTooLarge(HTTPRequestHead)
        case responding
    }

    private let router: Router
    private let maxRequestBodySize: Int
    private var state = State.idle
    private var context: ChannelHandlerContext?

    init(router: Router, maxRequestBodySize: Int) {
        self.router = router
        self.maxRequestBodySize = maxRequestBodySize
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A parse error has already been answered 400 by NIO's protocol error handler; as the last
        // handler we close the connection, which affects no other connection.
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (self.unwrapInboundIn(data), self.state) {
        case (.head(let head), _):
            self.state = .receiving(head, context.channel.allocator.buffer(capacity: 0))
        case (.body(var chunk), .receiving(let head, var body)):
            if body.readableBytes + chunk.readableBytes > self.maxRequestBodySize {
                self.state = .bodyTooLarge(head)
            } else {
                self.state = .responding  // release the reference so the append does not copy
                body.writeBuffer(&chunk)
                self.state = .receiving(head, body)
            }
        case (.end, .receiving(let head, let body)):
            self.state = .responding
            self.dispatch(head: head, body: body, context: context)
        case (.end, .bodyTooLarge(let head)):
            self.state = .responding
            let response = HTTPResponse(error: .payloadTooLarge(limit: self.maxRequestBodySize))
            self.write(response, for: head, keepAlive: false)
        case (.body, _), (.end, _):
            break
        }
    }

    private func dispatch(head: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {
        var headers = HTTPFields()
        for (name, value) in head.headers {
            headers.append(name: name, value: value)
        }
        let method = HTTPMethod(rawValue: head.method.rawValue)
        var request = HTTPRequest(
            method: method,
            target: head.uri,
            authority: head.headers.first(name: "host"),
            headers: headers,
            body: .buffer(body)
        )
        if case .found(let route, _) = self.router.match(method: method, path: request.path),
            route.bodyMode == .stream
        {
            request.body = .stream(HTTPBodyStream(chunks: body.readableBytes > 0 ? [body] : []))
        }
        let router = self.router
        let loop = context.eventLoop
        let loopBound = NIOLoopBound(self, eventLoop: loop)
        let keepAlive = head.isKeepAlive
        Task {
            let response = await router.respond(to: request)
            loop.execute { loopBound.value.write(response, for: head, keepAlive: keepAlive) }
        }
    }

    private func write(_ response: HTTPResponse, for request: HTTPRequestHead, keepAlive: Bool) {
        guard let context else { return }
        var headers = HTTPHeaders()
        for field in response.headers {
            headers.add(name: field.name, value: field.value)
        }
        if !keepAlive {
            headers.replaceOrAdd(name: "connection", value: "close")
        }
        let head = HTTPResponseHead(
            version: request.version,
            status: HTTPResponseStatus(statusCode: response.status),
            headers: headers
        )
        switch response.body {
        case .buffer(let buffer):
            if !head.headers.contains(name: "content-length") {
                var head = head
                head.headers.add(name: "content-length", value: String(buffer.readableBytes))
                context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            } else {
                context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            }
            if buffer.readableBytes > 0 && request.method != .HEAD {
                context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
            self.finish(context: context, keepAlive: keepAlive)
        case .stream(let stream):
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            self.pump(stream, keepAlive: keepAlive)
        }
    }

    /// Writes a streamed body chunk by chunk, awaiting each write so a slow reader pauses the producer.
    private func pump(_ stream: HTTPBodyStream, keepAlive: Bool) {
        guard let context else { return }
        let loop = context.eventLoop
        let loopBound = NIOLoopBound(self, eventLoop: loop)
        Task {
            do {
                for try await chunk in stream {
                    try await loop.flatSubmit { loopBound.value.writeChunk(chunk, on: loop) }.get()
                }
                loop.execute {
                    guard let context = loopBound.value.context else { return }
                    loopBound.value.finish(context: context, keepAlive: keepAlive)
                }
            } catch {
                // A truncated chunked body must not look complete: close without the final chunk.
                loop.execute { loopBound.value.context?.close(promise: nil) }
            }
        }
    }

    private func writeChunk(_ chunk: ByteBuffer, on loop: any EventLoop) -> EventLoopFuture<Void> {
        guard let context else {
            return loop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        let promise = loop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(chunk))), promise: promise)
        return promise.futureResult
    }

    private func finish(context: ChannelHandlerContext, keepAlive: Bool) {
        self.state = .idle
        let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}
