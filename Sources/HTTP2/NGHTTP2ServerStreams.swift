// The server side of a connection: requests routed to handlers, their answers submitted as responses.
import CNghttp2
import NIOCore

extension NGHTTP2Connection {
    func requestHeadersComplete(_ stream: NGHTTP2Stream) {
        if stream.headerListTooLarge {
            stream.inbound = .discarding
            self.submitResponse(stream, HTTPResponse(error: .headersTooLarge(limit: self.maxHeaderListSize)))
            return
        }
        let method = HTTPMethod(rawValue: stream.method.take() ?? "")
        let path = stream.path.take() ?? "/"
        // The header block's values move into the request: the stream keeps no copy of them. Made
        // where it is used, so that it is moved into the call rather than copied and destroyed.
        @inline(__always)
        func request(body: HTTPBody = .empty) -> HTTPRequest {
            HTTPRequest(
                method: method, path: path, query: stream.query.take(), authority: stream.authority.take(),
                headers: stream.takeHeaders(), body: body)
        }
        switch self.router.match(method: method, path: path) {
        case .notFound:
            stream.inbound = .discarding
            self.submitResponse(stream, HTTPResponse(error: .routeNotFound(method: method, path: path)))
        case .methodNotAllowed(let allowed):
            stream.inbound = .discarding
            self.submitResponse(stream, Router.methodNotAllowedResponse(method, path, allowed))
        case .found(let route, let parameters):
            if case .sink(let open) = route.responder {
                self.openSink(stream, open, parameters, request())
                return
            }
            switch route.bodyMode {
            case .collect:
                // A request that ended with its headers has no body to limit (nghttp2 resets one whose
                // content-length then is not 0 before it reaches us): only others are looked up.
                let declared =
                    stream.inboundEnded ? nil : stream.headers.first(lowercasedName: "content-length").flatMap(Int.init)
                if let declared, declared > self.maxRequestBodySize {
                    stream.inbound = .discarding
                    self.submitResponse(stream, HTTPResponse(error: .payloadTooLarge(limit: self.maxRequestBodySize)))
                } else if stream.inboundEnded {
                    stream.inbound = .discarding
                    self.dispatch(stream, route, parameters, request())
                } else {
                    stream.declaredBodyLength = max(declared ?? 0, 0)
                    stream.inbound = .collecting(limit: self.maxRequestBodySize)
                    stream.pendingDispatch = PendingDispatch(route: route, parameters: parameters, request: request())
                }
            case .stream:
                let body = self.makeInboundStream(stream)
                if stream.inboundEnded, case .streaming(let feed) = stream.inbound {
                    feed.continuation.finish()
                }
                self.dispatch(stream, route, parameters, request(body: .stream(body)))
            }
        }
    }

    /// Opens a sink route's sink for `stream`; its DATA then goes to the sink as it arrives.
    func openSink(
        _ stream: NGHTTP2Stream, _ open: Router.SinkOpener, _ parameters: RouteParameters, _ request: HTTPRequest
    ) {
        do {
            let sink = try open(request, parameters)
            stream.inbound = (sink as? any PacedRequestBodySink).map(InboundBody.pacedSink) ?? .sink(sink)
        } catch {
            stream.inbound = .discarding
            self.submitResponse(stream, Router.errorResponse(error))
            self.scheduleFlush()
            return
        }
        if stream.inboundEnded { self.inboundEnded(stream) }
    }

    /// Runs the handler: inline when it is immediate, else in a task whose response comes back here.
    func dispatch(
        _ stream: NGHTTP2Stream, _ route: Router.Route, _ parameters: consuming RouteParameters,
        _ request: consuming HTTPRequest
    ) {
        guard self.context != nil else { return }
        switch route.responder {
        case .immediate(let handler):
            self.submitResponse(stream, Router.invokeImmediately(handler, request, parameters))
            self.scheduleFlush()
        case .deferred(let handler):
            guard let loop = self.context?.eventLoop else { return }
            let connection = NIOLoopBound(self, eventLoop: loop)
            let boundStream = NIOLoopBound(stream, eventLoop: loop)
            handler(
                request, parameters,
                HTTPResponder { response in
                    if loop.inEventLoop {
                        connection.value.handlerResponded(stream: boundStream.value, response)
                    } else {
                        loop.execute { connection.value.handlerResponded(stream: boundStream.value, response) }
                    }
                })
        case .sink(let open):
            // Not reached (requestHeadersComplete opens sinks), but answered all the same: as a
            // handler that feeds the whole body to the sink, the way HTTP/1.1 does.
            self.pendingCalls.append(
                PendingCall(
                    handler: { request, parameters in await Router.invoke(.sink(open), request, parameters) },
                    request: request, parameters: parameters, stream: stream))
            if !self.inSession {
                self.runPendingCalls()
            }
        case .async(let handler):
            if self.pendingCalls.isEmpty {
                // Room for more than the last burst: growing the array copies every call in it.
                self.pendingCalls.reserveCapacity(self.lastPendingCallCount + self.lastPendingCallCount / 2)
            }
            self.pendingCalls.append(
                PendingCall(handler: handler, request: request, parameters: parameters, stream: stream))
            if !self.inSession {
                self.runPendingCalls()
            }
        }
    }

    /// Runs the async handlers dispatched during the last `mem_recv`, sharing tasks between them.
    ///
    /// One `Task.immediate` works through the calls in order on this event loop. A handler that
    /// returns without suspending costs no task of its own; when one suspends, `Task.immediate`
    /// returns here, the suspended task keeps only that call, and a new task takes the rest — so no
    /// call waits for another. Creating a task per request cost about a third of the throughput.
    /// Without an event-loop executor (`runsHandlersOnEventLoop == false`) each call gets its own task.
    func runPendingCalls() {
        guard !self.pendingCalls.isEmpty, let loop = self.context?.eventLoop else { return }
        // Moved, not copied, into the batch: each call is then taken out of it as it starts.
        var calls: [PendingCall?] = []
        swap(&calls, &self.pendingCalls)
        self.lastPendingCallCount = calls.count
        let connection = NIOLoopBound(self, eventLoop: loop)
        guard let executor = self.handlerExecutor else {
            for case let call? in calls {
                let stream = NIOLoopBound(call.stream, eventLoop: loop)
                let (handler, request, parameters) = (call.handler, call.request, call.parameters)
                Task {
                    let response = await Router.invoke(.async(handler), request, parameters)
                    loop.execute { connection.value.handlerResponded(stream: stream.value, response) }
                }
            }
            return
        }
        while true {
            let boundBatch = NIOLoopBound(CallBatch(calls: consume calls), eventLoop: loop)
            Task.immediate(executorPreference: executor) {
                await workThroughCalls(boundBatch, on: loop, connection: connection)
            }
            let batch = boundBatch.value
            // Unless the task suspended inside a handler, it ran every call.
            guard batch.inHandler else {
                // Every call was taken out of the batch: its array, emptied, takes the next burst
                // (allocating one per burst cost ~150 instructions per request).
                if self.pendingCalls.isEmpty {
                    swap(&self.pendingCalls, &batch.calls)
                    self.pendingCalls.removeAll(keepingCapacity: true)
                }
                return
            }
            // It keeps the call it suspended in; the rest go to a new task.
            batch.detached = true
            calls = Array(batch.calls[batch.next...])
            if calls.isEmpty { return }
        }
    }

    /// A handler's answer; the stream may have been reset or closed while the handler ran.
    fileprivate func handlerResponded(stream: NGHTTP2Stream, _ response: HTTPResponse) {
        guard !stream.isClosed, !stream.responseStarted else { return }
        self.submitResponse(stream, response)
        self.scheduleFlush()
    }

    func submitResponse(_ stream: NGHTTP2Stream, _ response: HTTPResponse) {
        guard let session else { return }
        stream.responseStarted = true
        let isHead = stream.isHead
        let producerSource: HTTPBodyStream?
        let hasBody: Bool
        switch response.body {
        case .buffer(let buffer) where buffer.readableBytes == 0 || isHead:
            hasBody = false
            producerSource = nil
        default:
            hasBody = !isHead
            producerSource = self.attachBody(response.body, to: stream)
        }
        let result = session.submitResponse(streamID: stream.id, response, hasBody: hasBody)
        if result != 0 {
            self.resetStream(stream, code: NGHTTP2_INTERNAL_ERROR.rawValue)
            return
        }
        if let producerSource {
            self.startProducer(streamID: stream.id, body: producerSource)
        }
    }

    /// Answers requests whose body stalled longer than `requestTimeout` with 408.
    func sweepRequestTimeouts() {
        guard case .server(let server) = self.role else { return }
        let now = NIODeadline.now()
        switch self.lifecycle.sweepTimerFired(now: now, setupTimeout: server.connectionSetupTimeout) {
        case .sweepStreams:
            break
        case .closeChannel:
            self.context?.close(promise: nil)
            return
        case .none:
            return
        }
        var expired = false
        for stream in self.streams.all where !stream.inboundEnded && !stream.timedOut {
            // A sink's request is long-lived by design and may idle: its sender decides when it ends.
            switch stream.inbound {
            case .sink, .pacedSink: continue
            default: break
            }
            guard now - stream.lastActivity >= server.requestTimeout else { continue }
            stream.timedOut = true
            expired = true
            let error = HTTPError.requestTimeout(seconds: Double(server.requestTimeout.nanoseconds) / 1e9)
            switch stream.inbound {
            case .streaming(let feed):
                feed.continuation.finish(throwing: error)
            case .collecting, .discarding, .sink, .pacedSink:
                stream.pendingDispatch = nil
                stream.inbound = .discarding
                stream.collectedBody = ByteBuffer()
                if !stream.responseStarted {
                    self.submitResponse(stream, HTTPResponse(error: error))
                }
            }
        }
        if expired {
            self.scheduleFlush()
        }
    }
}

/// The body of a batch task: call handlers in order until one suspends (see `runPendingCalls`).
private func workThroughCalls(
    _ batch: NIOLoopBound<CallBatch>,
    on loop: any EventLoop,
    connection: NIOLoopBound<NGHTTP2Connection>
) async {
    // Unwrapped once, on the loop (`Task.immediate` starts here); used again only after a handler
    // returned on the loop: each unwrapping checks the thread (four per call cost ~100 instructions).
    let state = batch.value
    let handlers = connection.value
    while true {
        guard !state.detached, state.next < state.calls.count else { return }
        // Taken out of the batch (not copied): the batch keeps no reference to a started call.
        guard let call = state.calls[state.next].take() else { return }
        state.next += 1
        state.inHandler = true
        // The handler is called directly (not through Router.invoke): one async frame less per call.
        let response: HTTPResponse
        do {
            response = try await call.handler(call.request, call.parameters)
        } catch {
            response = Router.errorResponse(error)
        }
        guard loop.inEventLoop else {
            // Only a suspended task resumes elsewhere, and then the batch is no longer its own.
            let stream = NIOLoopBound(call.stream, eventLoop: loop)
            loop.execute { connection.value.handlerResponded(stream: stream.value, response) }
            return
        }
        handlers.handlerResponded(stream: call.stream, response)
        if state.detached { return }
        state.inHandler = false
    }
}

/// An async handler call waiting to run (see `NGHTTP2Connection.runPendingCalls`).
struct PendingCall {
    let handler: Router.Handler
    let request: HTTPRequest
    let parameters: RouteParameters
    let stream: NGHTTP2Stream
}

/// The calls one handler task works through; touched only on the connection's event loop.
final class CallBatch {
    /// The calls in order; each is taken out (left nil) when it starts. Unchecked for the reason
    /// given on `NGHTTP2Connection`'s properties.
    @exclusivity(unchecked) var calls: [PendingCall?]
    /// The index of the next call to start.
    var next = 0
    /// The task is inside a handler: if `Task.immediate` returns while this is set, the task suspended.
    var inHandler = false
    /// The dispatcher gave the calls after `next` to another task; this one stops after its current call.
    var detached = false

    init(calls: [PendingCall?]) {
        self.calls = calls
    }
}
