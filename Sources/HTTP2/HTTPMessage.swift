// The request and response values that handlers, the router and the client exchange.
public import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

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
        // Over the contiguous bytes: through `utf8`'s iterator this cost ~35 instructions a byte.
        var copy = name
        let needsMapping = copy.withUTF8 { bytes in
            bytes.contains { ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z")) || $0 >= 0x80 }
        }
        return needsMapping ? name.lowercased() : name
    }

    // The fields are either Strings (made through this API), or, for fields a peer sent, the
    // bytes they arrived in, decoded into Strings only when read. Most requests' fields are never
    // read; a String and an array entry for each, made and destroyed per request, cost about
    // 1,000 instructions (callgrind, scripts/callgrind-http2.sh). Any change through the API
    // decodes received fields first. One stored reference either way: a copy retains once.
    private enum Storage {
        case strings([Field])
        case received(SharedReceivedFields)
    }

    private var storage = Storage.strings([])

    public init() {}

    public init(dictionaryLiteral elements: (String, String)...) {
        self.storage = .strings(elements.map { Field(name: $0.0, value: $0.1) })
    }

    /// Every field, in order.
    public var fields: [Field] {
        switch self.storage {
        case .strings(let strings): strings
        case .received(let received): Array(received.fields)
        }
    }

    public var count: Int {
        switch self.storage {
        case .strings(let strings): strings.count
        case .received(let received): received.fields.header.count
        }
    }

    public func makeIterator() -> Iterator {
        switch self.storage {
        case .strings(let strings): Iterator(strings: strings.makeIterator())
        case .received(let received): Iterator(received: received.fields)
        }
    }

    /// Iterates the fields in order (those received decoded as they are reached).
    public struct Iterator: IteratorProtocol {
        private var strings: IndexingIterator<[Field]>
        private var received: ReceivedFields.Iterator?

        init(strings: IndexingIterator<[Field]>) {
            self.strings = strings
            self.received = nil
        }

        init(received: ReceivedFields) {
            self.strings = [Field]().makeIterator()
            self.received = received.makeIterator()
        }

        public mutating func next() -> Field? {
            if self.received != nil { return self.received!.next() }
            return self.strings.next()
        }
    }

    /// The first value of the named field, or `nil`; setting replaces every field of that name.
    public subscript(name: String) -> String? {
        get {
            self.first(lowercasedName: HTTPFields.lowercased(name))
        }
        set {
            let lowered = HTTPFields.lowercased(name)
            self.changeStrings { strings in
                strings.removeAll { $0.name == lowered }
                if let newValue {
                    strings.append(Field(name: lowered, value: newValue))
                }
            }
        }
    }

    /// Every value of the named field, in order.
    public func values(for name: String) -> [String] {
        let lowered = HTTPFields.lowercased(name)
        return self.filter { $0.name == lowered }.map(\.value)
    }

    /// Appends a field, keeping any earlier field of the same name.
    public mutating func append(name: String, value: String) {
        self.changeStrings { $0.append(Field(name: name, value: value)) }
    }

    /// The first value of a field whose name is given lower-case (no case folding on the hot path).
    func first(lowercasedName name: String) -> String? {
        switch self.storage {
        case .strings(let strings): strings.first { $0.name == name }?.value
        case .received(let received): received.fields.firstValue(named: name)
        }
    }

    /// Appends a field as a peer sent it (HTTP/2: its name already lower-case), keeping its bytes
    /// until it is read (the decoders' fast path).
    mutating func appendReceived(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        let needed = ReceivedFields.entrySize(name: name.count, value: value.count)
        switch self.storage {
        case .strings(let strings) where !strings.isEmpty:
            // Fields made through the API come first: keep them all as Strings (not reached by
            // the decoders, which start from empty fields).
            self.changeStrings { strings in
                var field = Field(name: "", value: String(decoding: value, as: UTF8.self))
                field.name = String(decoding: name, as: UTF8.self)
                strings.append(field)
            }
        case .strings:
            let made = ReceivedFields.make(copying: nil, room: needed)
            made.append(name: name, value: value)
            self.storage = .received(SharedReceivedFields(fields: made))
        case .received(var received):
            self.storage = .strings([])  // this copy is then the only reference, if no other value shares it
            if isKnownUniquelyReferenced(&received.fields), received.fields.hasRoom(for: needed) {
                received.fields.append(name: name, value: value)
            } else {
                received.fields = ReceivedFields.make(copying: received.fields, room: needed)
                received.fields.append(name: name, value: value)
            }
            self.storage = .received(received)
        }
    }

    /// Changes the fields as Strings (decoding received ones first).
    private mutating func changeStrings(_ change: (inout [Field]) -> Void) {
        var strings: [Field]
        switch self.storage {
        case .strings(let current): strings = current
        case .received(let received): strings = Array(received.fields)
        }
        self.storage = .strings([])  // so that `strings` is the only reference and changes in place
        change(&strings)
        self.storage = .strings(strings)
    }

    public static func == (lhs: HTTPFields, rhs: HTTPFields) -> Bool {
        lhs.count == rhs.count && lhs.elementsEqual(rhs)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.count)
        for field in self { hasher.combine(field) }
    }
}

/// Received fields shared between copies of an `HTTPFields`: safe to send because a block is
/// changed only while one `HTTPFields` alone holds it (copy on write), and only read once shared.
struct SharedReceivedFields: @unchecked Sendable {
    var fields: ReceivedFields
}

/// Header fields as a peer sent them, in one allocation: per field, the name's and the value's
/// byte counts (UInt32 each), then the name's bytes and the value's, back to back.
///
/// Changed only while uniquely referenced (`HTTPFields` copies on write).
final class ReceivedFields: ManagedBuffer<ReceivedFields.Header, UInt8>, Sequence {
    struct Header {
        /// The number of fields.
        var count: Int
        /// The bytes in use.
        var byteCount: Int
        /// The bytes allocated.
        var capacity: Int
    }

    /// The bytes one field takes.
    static func entrySize(name: Int, value: Int) -> Int { 8 + name + value }

    /// The first block's capacity: room for a typical request's fields. (With 256 a block fell in
    /// the same malloc size class as a server stream, created and freed in the same bursts, and
    /// the two competed for glibc's per-size cache: ~170 instructions more per request, callgrind.)
    static let initialCapacity = 192

    /// A new block holding `previous`'s fields (if any) with room for `room` more bytes.
    static func make(copying previous: ReceivedFields?, room: Int) -> ReceivedFields {
        let used = previous?.header.byteCount ?? 0
        let made = unsafeDowncast(
            ReceivedFields.create(minimumCapacity: Swift.max(used + room, 2 * used, Self.initialCapacity)) { block in
                Header(count: previous?.header.count ?? 0, byteCount: used, capacity: block.capacity)
            },
            to: ReceivedFields.self
        )
        if let previous {
            previous.withUnsafeMutablePointerToElements { source in
                made.withUnsafeMutablePointerToElements { $0.update(from: source, count: used) }
            }
        }
        return made
    }

    func hasRoom(for bytes: Int) -> Bool {
        self.withUnsafeMutablePointerToHeader { $0.pointee.capacity - $0.pointee.byteCount >= bytes }
    }

    /// Appends one field; the caller made sure there is room (`hasRoom`).
    func append(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        // Through the pointers: a change of `header` itself is checked for exclusive access at run
        // time (~75 instructions).
        self.withUnsafeMutablePointers { header, elements in
            let offset = header.pointee.byteCount
            let start = UnsafeMutableRawPointer(elements + offset)
            start.storeBytes(of: UInt32(name.count), as: UInt32.self)
            (start + 4).storeBytes(of: UInt32(value.count), as: UInt32.self)
            if let base = name.baseAddress { (start + 8).copyMemory(from: base, byteCount: name.count) }
            if let base = value.baseAddress { (start + 8 + name.count).copyMemory(from: base, byteCount: value.count) }
            header.pointee.byteCount = offset + Self.entrySize(name: name.count, value: value.count)
            header.pointee.count += 1
        }
    }

    /// Calls `body` with the name and value bytes of the field at `offset`; returns its answer and
    /// the offset of the next field.
    private func withField<Result>(
        at offset: Int,
        _ body: (_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Result
    ) -> (Result, next: Int) {
        self.withUnsafeMutablePointerToElements { elements in
            let start = UnsafeRawPointer(elements + offset)
            let nameCount = Int(start.loadUnaligned(as: UInt32.self))
            let valueCount = Int((start + 4).loadUnaligned(as: UInt32.self))
            let name = UnsafeBufferPointer(start: UnsafePointer(elements + offset + 8), count: nameCount)
            let value = UnsafeBufferPointer(start: UnsafePointer(elements + offset + 8 + nameCount), count: valueCount)
            return (body(name, value), offset + Self.entrySize(name: nameCount, value: valueCount))
        }
    }

    /// The value of the first field whose name's bytes are `name`'s.
    func firstValue(named name: String) -> String? {
        var name = name
        return name.withUTF8 { wanted in
            var offset = 0
            while offset < self.header.byteCount {
                let (value, next) = self.withField(at: offset) { fieldName, value -> String? in
                    guard fieldName.count == wanted.count,
                        wanted.isEmpty || memcmp(fieldName.baseAddress!, wanted.baseAddress!, wanted.count) == 0
                    else { return nil }
                    return String(decoding: value, as: UTF8.self)
                }
                if let value { return value }
                offset = next
            }
            return nil
        }
    }

    func makeIterator() -> Iterator { Iterator(fields: self) }

    struct Iterator: IteratorProtocol {
        let fields: ReceivedFields
        var offset = 0

        mutating func next() -> HTTPFields.Field? {
            guard self.offset < self.fields.header.byteCount else { return nil }
            let (field, next) = self.fields.withField(at: self.offset) { name, value in
                var field = HTTPFields.Field(name: "", value: String(decoding: value, as: UTF8.self))
                field.name = String(decoding: name, as: UTF8.self)
                return field
            }
            self.offset = next
            return field
        }
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
        HTTPResponse(status: status, headers: jsonHeaders, body: .string(json))
    }

    /// Made once: a response's copy shares the fields' storage rather than building them again.
    private static let jsonHeaders: HTTPFields = ["content-type": "application/json"]

    /// The response a client sees for `error`: its status and the JSON body `{"error": ..., "detail": ...}`.
    public init(error: HTTPError) {
        self.init(
            status: error.status,
            headers: Self.jsonHeaders,
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
