// The request and response values that handlers, the router and the client exchange.
public import NIOCore

/// An HTTP request method such as `GET` or `POST`.
public struct HTTPMethod: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String

    public init(rawValue: String) {
        self.rawValue = rawValue
    }

    public var description: String { self.rawValue }

    public static let get = HTTPMethod(rawValue: "GET")
    public static let head = HTTPMethod(rawValue: "HEAD")
    public static let post = HTTPMethod(rawValue: "POST")
    public static let put = HTTPMethod(rawValue: "PUT")
    public static let patch = HTTPMethod(rawValue: "PATCH")
    public static let delete = HTTPMethod(rawValue: "DELETE")
    public static let options = HTTPMethod(rawValue: "OPTIONS")
}

/// An ordered list of header fields; names are stored lower-cased, as HTTP/2 requires on the wire.
public struct HTTPFields: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    /// One header field.
    public struct Field: Sendable, Hashable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = HTTPFields.lowercased(name)
            self.value = value
        }
    }

    /// `name` lower-cased. Names are nearly always lower-case already (HTTP/2 sends them so, and
    /// code writes them so); checking the bytes first spares a response or a lookup the case
    /// mapping, which showed in profiles of the settings write path.
    static func lowercased(_ name: String) -> String {
        let needsMapping = name.utf8.contains { ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z")) || $0 >= 0x80 }
        return needsMapping ? name.lowercased() : name
    }

    public private(set) var fields: [Field] = []

    public init() {}

    public init(dictionaryLiteral elements: (String, String)...) {
        self.fields = elements.map { Field(name: $0.0, value: $0.1) }
    }

    public var count: Int { self.fields.count }

    public func makeIterator() -> IndexingIterator<[Field]> {
        self.fields.makeIterator()
    }

    /// The first value of the named field, or `nil`; setting replaces every field of that name.
    public subscript(name: String) -> String? {
        get {
            let lowered = HTTPFields.lowercased(name)
            return self.fields.first { $0.name == lowered }?.value
        }
        set {
            let lowered = HTTPFields.lowercased(name)
            self.fields.removeAll { $0.name == lowered }
            if let newValue {
                self.fields.append(Field(name: lowered, value: newValue))
            }
        }
    }

    /// Every value of the named field, in order.
    public func values(for name: String) -> [String] {
        let lowered = HTTPFields.lowercased(name)
        return self.fields.filter { $0.name == lowered }.map(\.value)
    }

    /// Appends a field, keeping any earlier field of the same name.
    public mutating func append(name: String, value: String) {
        self.fields.append(Field(name: name, value: value))
    }

    /// The first value of a field whose name is given lower-case (no case folding on the hot path).
    func first(lowercasedName name: String) -> String? {
        self.fields.first { $0.name == name }?.value
    }

    /// Appends a field whose name is already lower-case (the decoders' fast path).
    mutating func appendLowercased(name: String, value: String) {
        var field = Field(name: "", value: value)
        field.name = name
        self.fields.append(field)
    }
}

/// A message body: either complete in memory or a stream of chunks read with backpressure.
public enum HTTPBody: Sendable {
    /// The whole body, already in memory.
    case buffer(ByteBuffer)
    /// A body that arrives (or is produced) chunk by chunk; it can be iterated once.
    case stream(HTTPBodyStream)

    /// An empty body.
    public static var empty: HTTPBody { .buffer(ByteBuffer()) }

    /// A body holding the UTF-8 bytes of `string`.
    public static func string(_ string: String) -> HTTPBody {
        .buffer(ByteBuffer(string: string))
    }

    /// Reads the whole body into memory, failing with a 413 `HTTPError` once it exceeds `maxBytes`.
    public func collect(upTo maxBytes: Int) async throws -> ByteBuffer {
        switch self {
        case .buffer(let buffer):
            guard buffer.readableBytes <= maxBytes else {
                throw HTTPError.payloadTooLarge(limit: maxBytes)
            }
            return buffer
        case .stream(let stream):
            var collected = ByteBuffer()
            for try await chunk in stream {
                guard collected.readableBytes + chunk.readableBytes <= maxBytes else {
                    throw HTTPError.payloadTooLarge(limit: maxBytes)
                }
                var chunk = chunk
                collected.writeBuffer(&chunk)
            }
            return collected
        }
    }
}

/// A request as a handler sees it (server side) or as the client sends it.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    /// The path without the query, e.g. `/v1/vms/web-1`.
    public var path: String
    /// The raw query string after `?`, without the `?`; `nil` when the target had none.
    public var query: String?
    /// The `:authority` (HTTP/2) or `Host` (HTTP/1.1), when the peer sent one.
    public var authority: String?
    public var headers: HTTPFields
    public var body: HTTPBody

    public init(
        method: HTTPMethod,
        path: String,
        query: String? = nil,
        authority: String? = nil,
        headers: HTTPFields = HTTPFields(),
        body: HTTPBody = .empty
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.authority = authority
        self.headers = headers
        self.body = body
    }

    /// Builds a request from a request target such as `/v1/vms?owner=n1`, splitting off the query.
    public init(
        method: HTTPMethod,
        target: String,
        authority: String? = nil,
        headers: HTTPFields = HTTPFields(),
        body: HTTPBody = .empty
    ) {
        let (path, query) = splitTarget(target)
        self.init(method: method, path: path, query: query, authority: authority, headers: headers, body: body)
    }

    /// The request target as sent on the wire: path plus `?query` when there is one.
    public var target: String {
        if let query { return self.path + "?" + query }
        return self.path
    }
}

/// A response as a handler returns it (server side) or as the client receives it.
public struct HTTPResponse: Sendable {
    /// The status code, e.g. 200.
    public var status: Int
    public var headers: HTTPFields
    public var body: HTTPBody

    public init(status: Int = 200, headers: HTTPFields = HTTPFields(), body: HTTPBody = .empty) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A response carrying `json` (already encoded) with `content-type: application/json`.
    public static func json(status: Int = 200, _ json: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["content-type": "application/json"], body: .string(json))
    }

    /// The response a client sees for `error`: its status and the JSON body `{"error": ..., "detail": ...}`.
    public init(error: HTTPError) {
        self.init(
            status: error.status,
            headers: ["content-type": "application/json"],
            body: .buffer(ByteBuffer(string: error.jsonBody))
        )
    }
}

/// Splits a request target into path and query at the first `?`.
func splitTarget(_ target: String) -> (path: String, query: String?) {
    guard let mark = target.utf8.firstIndex(of: UInt8(ascii: "?")) else {
        return (target, nil)
    }
    let path = String(target[..<mark])
    let query = String(target[target.index(after: mark)...])
    return (path, query)
}
