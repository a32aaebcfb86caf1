// Maps (method, path pattern) to handlers; shared by the HTTP/2 and HTTP/1.1 front ends.
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The values captured by `{name}` segments of a route's path pattern (percent-decoded).
public struct RouteParameters: Sendable, Hashable {
    /// (name, value) in pattern order; a route has a handful at most, so a list beats hashing, and
    /// the commonest route, with one parameter, keeps it inline: no array to allocate per request.
    private enum Pairs {
        case none
        case one(name: String, value: String)
        case many([(name: String, value: String)])
    }

    private var pairs: Pairs

    public init(_ values: [String: String] = [:]) {
        self.init(pairs: values.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) })
    }

    init(pairs: [(name: String, value: String)]) {
        switch pairs.count {
        case 0: self.pairs = .none
        case 1: self.pairs = .one(name: pairs[0].name, value: pairs[0].value)
        default: self.pairs = .many(pairs)
        }
    }

    init(name: String, value: String) {
        self.pairs = .one(name: name, value: value)
    }

    /// Every captured parameter.
    public var values: [String: String] {
        switch self.pairs {
        case .none: [:]
        case .one(let name, let value): [name: value]
        case .many(let pairs):
            Dictionary(pairs.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
        }
    }

    /// The captured value for `{name}`, or `nil` when the pattern has no such parameter.
    public subscript(name: String) -> String? {
        switch self.pairs {
        case .none: nil
        case .one(let only, let value): only == name ? value : nil
        case .many(let pairs): pairs.last { $0.name == name }?.value
        }
    }

    public static func == (lhs: RouteParameters, rhs: RouteParameters) -> Bool {
        lhs.values == rhs.values
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.values)
    }
}

/// How the server delivers a request body to a route's handler.
public enum RequestBodyMode: Sendable, Hashable {
    /// Collect the whole body (up to `HTTP2Server.Configuration.maxRequestBodySize`) before calling the
    /// handler; `request.body` is `.buffer`. A larger body is answered with 413 without calling it.
    case collect
    /// Call the handler as soon as the headers arrive; `request.body` is `.stream` and the peer is
    /// allowed to send more only as the handler reads it. No size limit is applied: the handler decides.
    case stream
}

/// How a deferred handler (`Router.addDeferred`) answers: once, from any thread. Later answers
/// are ignored, and so is an answer to a request whose stream the client has already closed.
public final class HTTPResponder: Sendable {
    private let deliver: @Sendable (HTTPResponse) -> Void
    private let answered = Atomic<Bool>(false)

    init(_ deliver: @escaping @Sendable (HTTPResponse) -> Void) {
        self.deliver = deliver
    }

    /// Answers with `response`.
    public func respond(_ response: HTTPResponse) {
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else { return }
        deliver(response)
    }

    /// Answers with the error, as a thrown one would be: an `HTTPError` with its status and JSON
    /// body, anything else a 500.
    public func fail(_ error: any Error) {
        respond(Router.errorResponse(error))
    }
}

/// Takes a request body as it arrives (`Router.addSink`). Called only on the connection's event
/// loop, one chunk after another; chunk boundaries are arbitrary, so a sink reassembles its own
/// framing. It must be quick and must not block: the connection reads nothing else meanwhile.
/// (Over HTTP/1.1 the body is collected first and handed over in one call, from a task.)
public protocol RequestBodySink: AnyObject {
    /// Takes the next bytes of the body. Throwing ends the request: the error is the response
    /// (an `HTTPError` with its status, anything else a 500) and later bytes are dropped.
    func receive(_ bytes: UnsafeRawBufferPointer) throws
    /// The body ended; returns the response.
    func finish() -> HTTPResponse
}

/// A table of routes: `(method, pattern) → handler`, e.g. `GET /v1/vms/{name}`.
///
/// Patterns are `/`-separated segments; a segment `{name}` matches any one non-empty segment and
/// captures it. Literal segments win over parameters when both match. An unknown path answers 404,
/// a known path with another method answers 405 with an `allow` header, both with a JSON error body.
public struct Router: Sendable {
    /// A route handler; a thrown `HTTPError` becomes its status and JSON body, anything else a 500.
    ///
    /// It starts on the executor of the code that calls it (`nonisolated(nonsending)`): that is
    /// where a plain `@Sendable` async closure would hop to anyway (the connection's event loop,
    /// which handler tasks prefer, or the global pool), but without a switch of executor on every
    /// call, which cost about 300 instructions per request (callgrind, scripts/callgrind-http2.sh).
    public typealias Handler =
        nonisolated(nonsending) @Sendable (HTTPRequest, RouteParameters) async throws
        -> HTTPResponse
    /// A handler that answers without waiting; it runs inline on the connection's event loop, so it
    /// must be quick and must not block (a health check, a read of a lock-protected snapshot).
    public typealias ImmediateHandler = @Sendable (HTTPRequest, RouteParameters) throws -> HTTPResponse

    /// Opens the sink for one request of a sink route (see `addSink`). It runs inline on the
    /// connection's event loop when the request's headers arrive; throwing answers with the error.
    public typealias SinkOpener = @Sendable (HTTPRequest, RouteParameters) throws -> any RequestBodySink

    /// A handler that answers later through `responder`, from any thread, without a task: it runs
    /// inline on the connection's event loop, starts its work (handing it the responder) and
    /// returns at once. For answers that wait on a callback, such as a write waiting for its commit.
    public typealias DeferredHandler = @Sendable (HTTPRequest, RouteParameters, HTTPResponder) -> Void

    /// How a route answers.
    enum Responder: Sendable {
        case async(Handler)
        case immediate(ImmediateHandler)
        case sink(SinkOpener)
        case deferred(DeferredHandler)
    }

    /// One registered route; a class so that a match hands it on with one retain, not a field-by-field copy.
    final class Route: Sendable {
        let method: HTTPMethod
        let pattern: String
        let segments: [Segment]
        let bodyMode: RequestBodyMode
        let responder: Responder
        /// The parameters' names and the indices of their segments, in pattern order.
        let parameters: [(name: String, segment: Int)]
        /// Per segment: the literal's UTF-8 bytes, or `nil` for a parameter (what matching compares).
        let literalBytes: [[UInt8]?]

        init(method: HTTPMethod, pattern: String, segments: [Segment], bodyMode: RequestBodyMode, responder: Responder)
        {
            self.method = method
            self.pattern = pattern
            self.segments = segments
            self.bodyMode = bodyMode
            self.responder = responder
            self.parameters = segments.indices.compactMap { index in
                if case .parameter(let name) = segments[index] { return (name, index) }
                return nil
            }
            self.literalBytes = segments.map { segment in
                if case .literal(let literal) = segment { return Array(literal.utf8) }
                return nil
            }
        }
    }

    enum Segment: Sendable, Hashable {
        case literal(String)
        case parameter(String)
    }

    /// What a lookup found.
    enum Match {
        case found(Route, RouteParameters)
        case methodNotAllowed([HTTPMethod])
        case notFound
    }

    private(set) var routes: [Route] = [] {
        didSet { self.routesBySegmentCount = Self.bySegmentCount(self.routes) }
    }
    /// `routes` by their number of segments, in the same order: a path is compared with the routes
    /// of its own length only (a route matches no path of another length), not with every route.
    private var routesBySegmentCount: [[Route]] = []

    public init() {}

    private static func bySegmentCount(_ routes: [Route]) -> [[Route]] {
        var buckets: [[Route]] = Array(repeating: [], count: (routes.map(\.literalBytes.count).max() ?? 0) + 1)
        for route in routes { buckets[route.literalBytes.count].append(route) }
        return buckets
    }

    /// Registers `handler` for `method` on `pattern`; a later registration of the same pair replaces it.
    public mutating func add(
        _ method: HTTPMethod,
        _ pattern: String,
        body: RequestBodyMode = .collect,
        handler: @escaping Handler
    ) {
        self.add(method, pattern, body: body, responder: .async(handler))
    }

    /// Registers a handler that answers without waiting (see `ImmediateHandler`); no task is created
    /// per request, which is the fastest path for trivial answers.
    public mutating func addImmediate(
        _ method: HTTPMethod,
        _ pattern: String,
        handler: @escaping ImmediateHandler
    ) {
        self.add(method, pattern, body: .collect, responder: .immediate(handler))
    }

    /// Registers a handler that answers later through its `HTTPResponder` (see `DeferredHandler`);
    /// the body is collected first, as for `.collect` routes.
    public mutating func addDeferred(_ method: HTTPMethod, _ pattern: String, handler: @escaping DeferredHandler) {
        self.add(method, pattern, body: .collect, responder: .deferred(handler))
    }

    /// Registers a route for a long-lived request whose body is handed to a sink chunk by chunk, on
    /// the connection's event loop, as it arrives: no task, no response per message (a stream of
    /// messages between peers). The response is the sink's `finish()` once the body ends, or the
    /// error a chunk threw. Over HTTP/1.1 the body is collected first and handed over in one piece.
    public mutating func addSink(_ method: HTTPMethod, _ pattern: String, open: @escaping SinkOpener) {
        self.add(method, pattern, body: .stream, responder: .sink(open))
    }

    private mutating func add(_ method: HTTPMethod, _ pattern: String, body: RequestBodyMode, responder: Responder) {
        let segments = Self.parse(pattern)
        self.routes.removeAll { $0.method == method && $0.segments == segments }
        self.routes.append(
            Route(method: method, pattern: pattern, segments: segments, bodyMode: body, responder: responder)
        )
    }

    public mutating func get(_ pattern: String, handler: @escaping Handler) {
        self.add(.get, pattern, handler: handler)
    }

    public mutating func post(_ pattern: String, body: RequestBodyMode = .collect, handler: @escaping Handler) {
        self.add(.post, pattern, body: body, handler: handler)
    }

    public mutating func put(_ pattern: String, body: RequestBodyMode = .collect, handler: @escaping Handler) {
        self.add(.put, pattern, body: body, handler: handler)
    }

    public mutating func patch(_ pattern: String, body: RequestBodyMode = .collect, handler: @escaping Handler) {
        self.add(.patch, pattern, body: body, handler: handler)
    }

    public mutating func delete(_ pattern: String, handler: @escaping Handler) {
        self.add(.delete, pattern, handler: handler)
    }

    /// Finds the route for `method` and `path` (a path without query).
    ///
    /// This runs for every request, so it splits the path once, compares segments without allocating,
    /// and builds the parameter table only for the route that wins.
    func match(method: HTTPMethod, path: String) -> Match {
        var path = path
        return path.withUTF8 { bytes in
            // Split once into segment ranges (on the stack), then compare bytes: no allocation.
            withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: bytes.count / 2 + 1) { ranges in
                let count = splitSegments(bytes, into: ranges)
                return self.match(method: method, bytes: bytes, parts: UnsafeBufferPointer(rebasing: ranges[..<count]))
            }
        }
    }

    private func match(method: HTTPMethod, bytes: UnsafeBufferPointer<UInt8>, parts: UnsafeBufferPointer<Range<Int>>)
        -> Match
    {
        guard parts.count < self.routesBySegmentCount.count else { return .notFound }
        let candidates = self.routesBySegmentCount[parts.count]
        var best: Route?
        var bestLiterals = -1
        for route in candidates {
            guard route.method == method || (method == .head && route.method == .get),
                let literals = route.literalMatches(bytes, parts)
            else { continue }
            if literals > bestLiterals {
                best = route
                bestLiterals = literals
            }
        }
        guard let route = best else {
            // Only now (an error answer) the methods the path does allow, for 405's `allow`.
            var allowed: [HTTPMethod] = []
            for route in candidates where route.literalMatches(bytes, parts) != nil {
                if !allowed.contains(route.method) { allowed.append(route.method) }
            }
            return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed)
        }
        switch route.parameters.count {
        case 0:
            return .found(route, RouteParameters(pairs: []))
        case 1:
            let (name, segment) = route.parameters[0]
            return .found(
                route,
                RouteParameters(name: name, value: percentDecoded(UnsafeBufferPointer(rebasing: bytes[parts[segment]])))
            )
        default:
            break
        }
        var parameters: [(name: String, value: String)] = []
        parameters.reserveCapacity(route.parameters.count)
        for (name, segment) in route.parameters {
            parameters.append((name, percentDecoded(UnsafeBufferPointer(rebasing: bytes[parts[segment]]))))
        }
        return .found(route, RouteParameters(pairs: parameters))
    }

    /// Calls the matching handler; routing failures and thrown errors come back as error responses.
    func respond(to request: HTTPRequest) async -> HTTPResponse {
        switch self.match(method: request.method, path: request.path) {
        case .found(let route, let parameters):
            return await Self.invoke(route.responder, request, parameters)
        case .methodNotAllowed(let allowed):
            return Self.methodNotAllowedResponse(request.method, request.path, allowed)
        case .notFound:
            return HTTPResponse(error: .routeNotFound(method: request.method, path: request.path))
        }
    }

    static func invoke(_ responder: Responder, _ request: HTTPRequest, _ parameters: RouteParameters) async
        -> HTTPResponse
    {
        switch responder {
        case .async(let handler):
            do {
                return try await handler(request, parameters)
            } catch {
                return Self.errorResponse(error)
            }
        case .immediate(let handler):
            return Self.invokeImmediately(handler, request, parameters)
        case .deferred(let handler):
            return await withCheckedContinuation { continuation in
                handler(request, parameters, HTTPResponder { continuation.resume(returning: $0) })
            }
        case .sink(let open):
            // HTTP/1.1 (the HTTP/2 server feeds a sink as DATA arrives, without this): one piece.
            do {
                let sink = try open(request, parameters)
                switch request.body {
                case .buffer(let buffer):
                    try buffer.withUnsafeReadableBytes { try sink.receive($0) }
                case .stream(let chunks):
                    for try await chunk in chunks {
                        try chunk.withUnsafeReadableBytes { try sink.receive($0) }
                    }
                }
                return sink.finish()
            } catch {
                return Self.errorResponse(error)
            }
        }
    }

    static func invokeImmediately(
        _ handler: ImmediateHandler,
        _ request: HTTPRequest,
        _ parameters: RouteParameters
    ) -> HTTPResponse {
        do {
            return try handler(request, parameters)
        } catch {
            return Self.errorResponse(error)
        }
    }

    static func errorResponse(_ error: any Error) -> HTTPResponse {
        switch error {
        case let error as HTTPError:
            HTTPResponse(error: error)
        default:
            HTTPResponse(error: .internalError(error))
        }
    }

    static func methodNotAllowedResponse(_ method: HTTPMethod, _ path: String, _ allowed: [HTTPMethod])
        -> HTTPResponse
    {
        var response = HTTPResponse(error: .methodNotAllowed(method: method, path: path, allowed: allowed))
        response.headers["allow"] = allowed.map(\.rawValue).joined(separator: ", ")
        return response
    }

    static func parse(_ pattern: String) -> [Segment] {
        pattern.split(separator: "/", omittingEmptySubsequences: true).map { part in
            if part.count > 2, part.first == "{", part.last == "}" {
                return .parameter(String(part.dropFirst().dropLast()))
            }
            return .literal(String(part))
        }
    }

}

/// Writes the ranges of the non-empty `/`-separated segments of `bytes` into `ranges`; returns how many.
private func splitSegments(_ bytes: UnsafeBufferPointer<UInt8>, into ranges: UnsafeMutableBufferPointer<Range<Int>>)
    -> Int
{
    let slash = UInt8(ascii: "/")
    var count = 0
    var index = 0
    while index < bytes.count {
        while index < bytes.count && bytes[index] == slash { index += 1 }
        guard index < bytes.count else { break }
        let start = index
        while index < bytes.count && bytes[index] != slash { index += 1 }
        ranges[count] = start..<index
        count += 1
    }
    return count
}

extension Router.Route {
    /// The number of literal segments when this route matches the path's segments, else `nil`.
    fileprivate func literalMatches(_ bytes: UnsafeBufferPointer<UInt8>, _ parts: UnsafeBufferPointer<Range<Int>>)
        -> Int?
    {
        guard self.literalBytes.count == parts.count else { return nil }
        var literals = 0
        for index in 0..<parts.count {
            guard let literal = self.literalBytes[index] else { continue }
            let part = parts[index]
            guard literal.count == part.count,
                literal.withUnsafeBufferPointer({
                    memcmp($0.baseAddress!, bytes.baseAddress! + part.lowerBound, part.count) == 0
                })
            else { return nil }
            literals += 1
        }
        return literals
    }
}

/// Decodes `%XX` escapes; a malformed escape is kept as written rather than rejected.
func percentDecoded(_ text: Substring) -> String {
    var text = text
    return text.withUTF8 { percentDecoded($0) }
}

/// Decodes `%XX` escapes in UTF-8 bytes; a malformed escape is kept as written.
func percentDecoded(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
    guard bytes.contains(UInt8(ascii: "%")) else { return String(decoding: bytes, as: UTF8.self) }
    var decoded: [UInt8] = []
    decoded.reserveCapacity(bytes.count)
    var index = 0
    while index < bytes.count {
        let byte = bytes[index]
        if byte == UInt8(ascii: "%"), index + 2 < bytes.count,
            let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
        {
            decoded.append(high << 4 | low)
            index += 3
        } else {
            decoded.append(byte)
            index += 1
        }
    }
    return String(decoding: decoded, as: UTF8.self)
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}
