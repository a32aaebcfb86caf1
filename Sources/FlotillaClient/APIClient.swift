// A client of a node's API, for the CLI and the tests: JSON in, typed values or a clear error out.
public import ClusterModel
public import FlotillaAPI
public import Foundation
public import HTTP2
import NIOCore

/// An error from the API (its JSON body), or from reaching it.
public struct APIError: Error, CustomStringConvertible, Sendable {
    public var status: Int?
    public var message: String
    /// True when the request certainly had no effect: it never reached a node, or a node refused
    /// it before proposing it (a client error, or no leader to take it). Retrying is then safe.
    public var hadNoEffect = false

    public var description: String { message }

    public init(status: Int?, message: String, hadNoEffect: Bool = false) {
        self.status = status
        self.message = message
        self.hadNoEffect = hadNoEffect
    }
}

/// Talks to one node's client API over HTTP/2.
public final class APIClient: Sendable {
    public let endpoint: Endpoint
    private let client: HTTP2Client
    private let timeout: Duration
    /// How long to keep resending a request answered "no_leader" (503, certainly without effect)
    /// while the cluster elects one; zero reports it at once.
    private let noLeaderPatience: Duration

    public init(endpoint: Endpoint, timeout: Duration = .seconds(10), noLeaderPatience: Duration = .zero) {
        self.noLeaderPatience = noLeaderPatience
        self.endpoint = endpoint
        self.client = HTTP2Client(configuration: .init(host: endpoint.host, port: endpoint.port))
        self.timeout = timeout
    }

    public func close() async { await client.close() }

    public func status(stale: Bool = false) async throws -> StatusView {
        try decode(StatusView.self, try await call(.get, "/v1/status" + (stale ? "?stale=true" : "")))
    }

    /// Whether the node serves its API at all (`GET /healthz`: liveness, not readiness).
    public func health() async throws {
        _ = try await call(.get, "/healthz")
    }

    /// `GET /readyz` of this node: its readiness when ready; an `APIError` (503, `not_ready`, with
    /// the reason) when not.
    public func readiness() async throws -> ReadinessView {
        try decode(ReadinessView.self, try await call(.get, "/readyz"))
    }

    public func settings(stale: Bool = false) async throws -> [String: String] {
        struct List: Decodable { var settings: [String: String] }
        return try decode(List.self, try await call(.get, "/v1/config" + (stale ? "?stale=true" : ""))).settings
    }

    public func setting(_ key: String, stale: Bool = false) async throws -> String? {
        try decode(SettingView.self, try await call(.get, "/v1/config/\(escape(key))" + (stale ? "?stale=true" : "")))
            .value
    }

    /// Sets a setting; returns the value it replaced.
    @discardableResult
    public func setSetting(_ key: String, to value: String, requestID: (client: UInt64, sequence: UInt64)? = nil)
        async throws -> String?
    {
        let body = try JSONEncoder().encode(SettingWrite(value: value))
        return try decode(
            SettingView.self, try await call(.put, "/v1/config/\(escape(key))", body: body, requestID: requestID)
        ).previous
    }

    @discardableResult
    public func deleteSetting(_ key: String) async throws -> String? {
        try decode(SettingView.self, try await call(.delete, "/v1/config/\(escape(key))")).previous
    }

    /// Adds a node as a learner (its addresses first, then Raft); returns the new status.
    @discardableResult
    public func addMember(_ id: String, peer: String, client: String) async throws -> StatusView {
        let body = try JSONEncoder().encode(MemberAddition(id: id, peer: peer, client: client))
        return try decode(StatusView.self, try await call(.post, "/v1/members", body: body))
    }

    @discardableResult
    public func promoteMember(_ id: String) async throws -> StatusView {
        try decode(StatusView.self, try await call(.post, "/v1/members/\(escape(id))/promote"))
    }

    @discardableResult
    public func removeMember(_ id: String) async throws -> StatusView {
        try decode(StatusView.self, try await call(.delete, "/v1/members/\(escape(id))"))
    }

    public func transferLeadership(to id: String) async throws {
        _ = try await call(.post, "/v1/leader/transfer", body: try JSONEncoder().encode(LeadershipTransfer(to: id)))
    }

    /// A consistent snapshot of the replicated state, taken by the leader: the bytes of a snapshot
    /// file (`flotilla snapshot save` checks them before writing them anywhere).
    public func snapshot() async throws -> [UInt8] {
        [UInt8](try await call(.get, "/v1/snapshot"))
    }

    /// Sends a request and returns the body of a 2xx answer; anything else becomes an `APIError`.
    public func call(
        _ method: HTTPMethod, _ target: String, body: Data? = nil, requestID: (client: UInt64, sequence: UInt64)? = nil
    ) async throws -> Data {
        let deadline = ContinuousClock.now + noLeaderPatience
        while true {
            do {
                return try await callOnce(method, target, body: body, requestID: requestID)
            } catch let error as APIError where error.status == 503 && error.hadNoEffect {
                // No leader took it, so resending cannot apply it twice.
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    private func callOnce(
        _ method: HTTPMethod, _ target: String, body: Data?, requestID: (client: UInt64, sequence: UInt64)?
    ) async throws -> Data {
        var headers: HTTPFields = ["accept": "application/json"]
        if body != nil { headers.append(name: "content-type", value: "application/json") }
        if let requestID {
            headers.append(name: "flotilla-request-id", value: "\(requestID.client):\(requestID.sequence)")
        }
        let request = HTTPRequest(
            method: method, target: target, headers: headers,
            body: body.map { .buffer(ByteBuffer(bytes: $0)) } ?? .empty)
        let response: HTTPResponse
        do {
            response = try await client.send(request, timeout: timeout)
        } catch {
            throw APIError(
                status: nil, message: "cannot reach the Flotilla API at \(endpoint): \(error)",
                hadNoEffect: (error as? HTTP2ClientError)?.requestWasNotProcessed ?? false)
        }
        let bytes = try await response.body.collect(upTo: 64 << 20)
        let data = Data(bytes.readableBytesView)
        guard (200..<300).contains(response.status) else {
            throw Self.error(status: response.status, body: data, from: endpoint)
        }
        return data
    }

    /// The `APIError` for a non-2xx answer: the JSON error body's name and detail.
    static func error(status: Int, body: Data, from endpoint: Endpoint) -> APIError {
        if let problem = try? JSONDecoder().decode(APIProblem.self, from: body) {
            // "no_leader" is answered before anything is proposed (see ClientAPI.forwardOrFail).
            let refused = (400..<500).contains(status) || problem.error == APIProblem.noLeader
            return APIError(status: status, message: "\(problem.error): \(problem.detail)", hadNoEffect: refused)
        }
        return APIError(status: status, message: "HTTP \(status) from \(endpoint)")
    }

    func decoded<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T { try decode(type, data) }

    /// Sends a request and returns as soon as a 2xx answer's headers arrive, its body still streaming.
    func stream(_ method: HTTPMethod, _ target: String) async throws -> HTTPResponse {
        let request = HTTPRequest(method: method, target: target, headers: ["accept": "application/x-ndjson"])
        let response: HTTPResponse
        do {
            response = try await client.stream(request, deadline: .distantFuture)
        } catch {
            throw APIError(
                status: nil, message: "cannot reach the Flotilla API at \(endpoint): \(error)",
                hadNoEffect: (error as? HTTP2ClientError)?.requestWasNotProcessed ?? false)
        }
        guard (200..<300).contains(response.status) else {
            let data = Data(try await response.body.collect(upTo: 1 << 20).readableBytesView)
            throw Self.error(status: response.status, body: data, from: endpoint)
        }
        return response
    }

    func pathSegment(_ text: String) -> String { escape(text) }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw APIError(status: nil, message: "unexpected answer from \(endpoint): \(error)")
        }
    }

    private func escape(_ key: String) -> String {
        key.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/")))
            ?? key
    }
}
