// Errors that reach an HTTP client: a status code plus the JSON body `{"error": ..., "detail": ...}`.

/// An error a handler throws to answer with a specific status and a JSON error body.
///
/// `error` is a short machine-readable code (`not_found`, `payload_too_large`); `detail` tells a person
/// what was wrong and what to do. Any other error a handler throws becomes a 500 `internal_error`.
public struct HTTPError: Error, Sendable, Hashable, CustomStringConvertible {
    public var status: Int
    public var error: String
    public var detail: String

    public init(status: Int, error: String, detail: String) {
        self.status = status
        self.error = error
        self.detail = detail
    }

    public var description: String { "HTTP \(self.status) \(self.error): \(self.detail)" }

    /// The body sent to the client: `{"error": "...", "detail": "..."}`.
    public var jsonBody: String {
        "{\"error\": \(jsonQuoted(self.error)), \"detail\": \(jsonQuoted(self.detail))}"
    }

    public static func badRequest(_ detail: String) -> HTTPError {
        HTTPError(status: 400, error: "bad_request", detail: detail)
    }

    public static func notFound(_ detail: String) -> HTTPError {
        HTTPError(status: 404, error: "not_found", detail: detail)
    }

    public static func conflict(_ detail: String) -> HTTPError {
        HTTPError(status: 409, error: "conflict", detail: detail)
    }

    public static func serviceUnavailable(_ detail: String) -> HTTPError {
        HTTPError(status: 503, error: "unavailable", detail: detail)
    }

    static func methodNotAllowed(method: HTTPMethod, path: String, allowed: [HTTPMethod]) -> HTTPError {
        let list = allowed.map(\.rawValue).joined(separator: ", ")
        return HTTPError(
            status: 405,
            error: "method_not_allowed",
            detail: "\(method) is not allowed on \(path); allowed: \(list)"
        )
    }

    static func routeNotFound(method: HTTPMethod, path: String) -> HTTPError {
        HTTPError(status: 404, error: "not_found", detail: "no route for \(method) \(path)")
    }

    public static func payloadTooLarge(limit: Int) -> HTTPError {
        HTTPError(
            status: 413,
            error: "payload_too_large",
            detail: "the request body is larger than the limit of \(limit) bytes; send a smaller body"
        )
    }

    static func headersTooLarge(limit: Int) -> HTTPError {
        HTTPError(
            status: 431,
            error: "request_header_fields_too_large",
            detail: "the header list is larger than the limit of \(limit) bytes; send fewer or shorter headers"
        )
    }

    static func requestTimeout(seconds: Double) -> HTTPError {
        HTTPError(
            status: 408,
            error: "request_timeout",
            detail: "the request was not received completely within \(seconds) s of inactivity"
        )
    }

    static func internalError(_ error: any Error) -> HTTPError {
        HTTPError(status: 500, error: "internal_error", detail: String(describing: error))
    }
}

/// Encodes `string` as a JSON string literal, escaping what RFC 8259 requires.
func jsonQuoted(_ string: String) -> String {
    var out = "\""
    out.reserveCapacity(string.utf8.count + 2)
    for scalar in string.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default:
            out.unicodeScalars.append(scalar)
        }
    }
    out += "\""
    return out
}
