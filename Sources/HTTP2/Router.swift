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

    struct Route: Sendable {
        let method: HTTPMethod
        let pattern: String
        let segments: [Segment]
        let bodyMode: RequestBodyMode
        let handler: Handler
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
        let segments = Self.parse(pattern)
        self.routes.removeAll { $0.method == method && $0.segments == segments }
        self.routes.append(
            Route(method: method, pattern: pattern, segments: segments, bodyMode: body, handler: handler)
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
    func match(method: HTTPMethod, path: String) -> Match {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        var best: (route: Route, parameters: [String: String], literals: Int)?
        var allowed: [HTTPMethod] = []
        for route in self.routes {
            guard let (parameters, literals) = Self.bind(route.segments, to: parts) else { continue }
            guard route.method == method || (method == .head && route.method == .get) else {
                if !allowed.contains(route.method) { allowed.append(route.method) }
                continue
            }
            if best == nil || literals > best!.literals {
                best = (route, parameters, literals)
            }
        }
        if let best {
            return .found(best.route, RouteParameters(best.parameters))
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed)
    }

    /// Calls the matching handler; routing failures and thrown errors come back as error responses.
    func respond(to request: HTTPRequest) async -> HTTPResponse {
        switch self.match(method: request.method, path: request.path) {
        case .found(let route, let parameters):
            return await Self.invoke(route.handler, request, parameters)
        case .methodNotAllowed(let allowed):
            return Self.methodNotAllowedResponse(request.method, request.path, allowed)
        case .notFound:
            return HTTPResponse(error: .routeNotFound(method: request.method, path: request.path))
        }
    }

    static func invoke(_ handler: Handler, _ request: HTTPRequest, _ parameters: RouteParameters) async
        -> HTTPResponse
    {
        do {
            return try await handler(request, parameters)
        } catch let error as HTTPError {
            return HTTPResponse(error: error)
        } catch {
            return HTTPResponse(error: .internalError(error))
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

    private static func bind(_ segments: [Segment], to parts: [Substring]) -> ([String: String], Int)? {
        guard segments.count == parts.count else { return nil }
        var parameters: [String: String] = [:]
        var literals = 0
        for (segment, part) in zip(segments, parts) {
            switch segment {
            case .literal(let literal):
                guard part == literal else { return nil }
                literals += 1
            case .parameter(let name):
                parameters[name] = percentDecoded(part)
            }
        }
        return (parameters, literals)
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
