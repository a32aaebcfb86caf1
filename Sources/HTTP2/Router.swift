// Maps (method, path pattern) to handlers; shared by the HTTP/2 and HTTP/1.1 front ends.

/// The values captured by `{name}` segments of a route's path pattern (percent-decoded).
public struct RouteParameters: Sendable, Hashable {
    public private(set) var values: [String: String] = [:]

    public init(_ values: [String: String] = [:]) {
        self.values = values
    }

    /// The captured value for `{name}`, or `nil` when the pattern has no such parameter.
    public subscript(name: String) -> String? { self.values[name] }
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

/// A table of routes: `(method, pattern) → handler`, e.g. `GET /v1/vms/{name}`.
///
/// Patterns are `/`-separated segments; a segment `{name}` matches any one non-empty segment and
/// captures it. Literal segments win over parameters when both match. An unknown path answers 404,
/// a known path with another method answers 405 with an `allow` header, both with a JSON error body.
public struct Router: Sendable {
    /// A route handler; a thrown `HTTPError` becomes its status and JSON body, anything else a 500.
    public typealias Handler = @Sendable (HTTPRequest, RouteParameters) async throws -> HTTPResponse
    /// A handler that answers without waiting; it runs inline on the connection's event loop, so it
    /// must be quick and must not block (a health check, a read of a lock-protected snapshot).
    public typealias ImmediateHandler = @Sendable (HTTPRequest, RouteParameters) throws -> HTTPResponse

    /// How a route answers.
    enum Responder: Sendable {
        case async(Handler)
        case immediate(ImmediateHandler)
    }

    /// One registered route; a class so that a match hands it on with one retain, not a field-by-field copy.
    final class Route: Sendable {
        let method: HTTPMethod
        let pattern: String
        let segments: [Segment]
        let bodyMode: RequestBodyMode
        let responder: Responder

        init(method: HTTPMethod, pattern: String, segments: [Segment], bodyMode: RequestBodyMode, responder: Responder)
        {
            self.method = method
            self.pattern = pattern
            self.segments = segments
            self.bodyMode = bodyMode
            self.responder = responder
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

    private(set) var routes: [Route] = []

    public init() {}

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

    public mutating func delete(_ pattern: String, handler: @escaping Handler) {
        self.add(.delete, pattern, handler: handler)
    }

    /// Finds the route for `method` and `path` (a path without query).
    ///
    /// This runs for every request, so it splits the path once, compares segments without allocating,
    /// and builds the parameter table only for the route that wins.
    func match(method: HTTPMethod, path: String) -> Match {
        var bestIndex = -1
        var bestLiterals = -1
        var allowed: [HTTPMethod] = []
        self.routes.withUnsafeBufferPointer { routes in
            for index in routes.indices {
                guard let literals = Self.literalMatches(routes[index].segments, path) else { continue }
                let routeMethod = routes[index].method
                guard routeMethod == method || (method == .head && routeMethod == .get) else {
                    if !allowed.contains(routeMethod) { allowed.append(routeMethod) }
                    continue
                }
                if literals > bestLiterals {
                    bestIndex = index
                    bestLiterals = literals
                }
            }
        }
        guard bestIndex >= 0 else {
            return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed)
        }
        let route = self.routes[bestIndex]
        var parameters: [String: String] = [:]
        var parts = PathSegments(path)
        for segment in route.segments {
            guard let part = parts.next() else { break }
            if case .parameter(let name) = segment {
                parameters[name] = percentDecoded(Substring(part))
            }
        }
        return .found(route, RouteParameters(parameters))
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

    /// The number of literal segments when `segments` match the path's segments, else `nil`.
    private static func literalMatches(_ segments: [Segment], _ path: String) -> Int? {
        var parts = PathSegments(path)
        var literals = 0
        for segment in segments {
            guard let part = parts.next() else { return nil }
            if case .literal(let literal) = segment {
                guard part.elementsEqual(literal.utf8) else { return nil }
                literals += 1
            }
        }
        return parts.next() == nil ? literals : nil
    }
}

/// The non-empty `/`-separated segments of a path, as slices (no allocation).
private struct PathSegments {
    private let utf8: Substring.UTF8View
    private var position: Substring.UTF8View.Index

    init(_ path: String) {
        self.utf8 = Substring(path).utf8
        self.position = self.utf8.startIndex
    }

    mutating func next() -> Substring.UTF8View? {
        let slash = UInt8(ascii: "/")
        while self.position < self.utf8.endIndex && self.utf8[self.position] == slash {
            self.utf8.formIndex(after: &self.position)
        }
        guard self.position < self.utf8.endIndex else { return nil }
        let start = self.position
        while self.position < self.utf8.endIndex && self.utf8[self.position] != slash {
            self.utf8.formIndex(after: &self.position)
        }
        return self.utf8[start..<self.position]
    }
}

/// Decodes `%XX` escapes; a malformed escape is kept as written rather than rejected.
func percentDecoded(_ text: Substring) -> String {
    guard text.utf8.contains(UInt8(ascii: "%")) else { return String(text) }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(text.utf8.count)
    var iterator = Array(text.utf8)[...]
    while let byte = iterator.popFirst() {
        if byte == UInt8(ascii: "%"), iterator.count >= 2,
            let high = hexValue(iterator[iterator.startIndex]),
            let low = hexValue(iterator[iterator.startIndex + 1])
        {
            bytes.append(high << 4 | low)
            iterator = iterator.dropFirst(2)
        } else {
            bytes.append(byte)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}
