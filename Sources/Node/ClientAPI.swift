// The client API: JSON over HTTP/2 and HTTP/1.1; writes and status go through the leader.
import ClusterModel
import ClusterState
import FlotillaAPI
import Foundation
import HTTP2
import NIOCore
import RaftCore
import RaftRuntime
import Synchronization

/// Serves the client API of one node.
///
/// Its parts live in one object: every request's callbacks capture the API, and a copy is then one
/// retain where a copy of the parts themselves (the whole configuration) took dozens.
struct ClientAPI: Sendable {
    private final class Parts: Sendable {
        let configuration: NodeConfiguration
        let driver: ClusterDriver
        let forwarder: LeaderForwarder
        let addressBook: AddressBook
        let lifecycle: APILifecycle
        let reportedMemory: ReportedMemory
        let volumeAccess: VolumeAccessGatherer?
        let migrationMetrics: MigrationMetrics

        init(
            _ configuration: NodeConfiguration, _ driver: ClusterDriver, _ forwarder: LeaderForwarder,
            _ addressBook: AddressBook, _ lifecycle: APILifecycle, _ reportedMemory: ReportedMemory,
            _ volumeAccess: VolumeAccessGatherer?, _ migrationMetrics: MigrationMetrics
        ) {
            self.configuration = configuration
            self.driver = driver
            self.forwarder = forwarder
            self.addressBook = addressBook
            self.lifecycle = lifecycle
            self.reportedMemory = reportedMemory
            self.volumeAccess = volumeAccess
            self.migrationMetrics = migrationMetrics
        }
    }
    private let parts: Parts

    init(
        configuration: NodeConfiguration, driver: ClusterDriver, forwarder: LeaderForwarder,
        addressBook: AddressBook, lifecycle: APILifecycle, reportedMemory: ReportedMemory,
        volumeAccess: VolumeAccessGatherer? = nil, migrationMetrics: MigrationMetrics = MigrationMetrics()
    ) {
        parts = Parts(
            configuration, driver, forwarder, addressBook, lifecycle, reportedMemory, volumeAccess, migrationMetrics)
    }

    var configuration: NodeConfiguration { parts.configuration }
    var driver: ClusterDriver { parts.driver }
    var forwarder: LeaderForwarder { parts.forwarder }
    var addressBook: AddressBook { parts.addressBook }
    var lifecycle: APILifecycle { parts.lifecycle }
    /// The nodes' memory reports, on the leader (empty elsewhere).
    var reportedMemory: ReportedMemory { parts.reportedMemory }
    /// Gathers the nodes' own volume facts (redirected I/O, refusals) into the volume views.
    var volumeAccess: VolumeAccessGatherer? { parts.volumeAccess }
    /// The downtime of the migrations this process saw completed (for `/metrics`).
    var migrationMetrics: MigrationMetrics { parts.migrationMetrics }

    static let forwardedHeader = "flotilla-forwarded-by"
    static let requestIDHeader = "flotilla-request-id"

    var timeoutTicks: UInt64 { UInt64(max(1, 5_000 / configuration.tickMilliseconds)) }

    func addRoutes(to router: inout Router) {
        router.get("/healthz") { _, _ in
            try json(["status": "ok", "node": configuration.nodeID.description])
        }
        // Readiness (docs/api.md): this node's own Raft status, never forwarded.
        router.get("/readyz") { _, _ in
            let status = await driver.status
            let readiness = Readiness.of(status)
            return try json(
                readiness.view(node: configuration.nodeID, status: status), status: readiness.httpStatus)
        }
        router.get("/v1/status") { request, _ in
            if isStale(request) { return try json(await statusView()) }
            if await driver.status.role != .leader { return try await forwardOrFail(request) }
            return try json(await statusView())
        }
        router.get("/v1/config") { request, _ in
            let settings = try await read(request) { $0.state.settings }
            return try json(["settings": settings])
        }
        // The hottest read: answered from the read's callback, with no task per request.
        router.addDeferred(.get, "/v1/config/{key}") { request, parameters, responder in
            let key = parameters["key"] ?? ""
            let answer: @Sendable (String?) -> Void = { value in
                guard let value else {
                    return responder.fail(
                        HTTPError(
                            status: 404, error: "no_such_setting",
                            detail: "no setting named \(key); list them with GET /v1/config"))
                }
                responder.respond(.json(SettingJSON.encode(SettingView(key: key, value: value, previous: nil))))
            }
            if isStale(request) {
                Task { answer(await driver.staleRead { $0.state.settings[key] }) }
                return
            }
            driver.linearizableRead(timeoutTicks: timeoutTicks, lease: true, read: { $0.state.settings[key] }) {
                switch $0 {
                case .success(let value): answer(value)
                case .failure(let error as RaftDriverError): responder.fail(httpError(error))
                case .failure(let error): responder.fail(error)
                }
            }
        }
        // The hottest write: answered from the commit's callback, with no task per request.
        router.addDeferred(.put, "/v1/config/{key}") { request, parameters, responder in
            let key = parameters["key"] ?? ""
            let limit = Setting.maxValueBytes + 1024
            guard case .buffer(let body) = request.body, body.readableBytes <= limit else {
                return responder.fail(HTTPError.payloadTooLarge(limit: limit))
            }
            guard
                let value = SettingJSON.simpleValue(in: body.readableBytesView)
                    ?? (try? JSONDecoder().decode(SettingWrite.self, from: Data(body.readableBytesView)).value)
            else {
                return responder.fail(
                    HTTPError(
                        status: 400, error: "bad_request_body", detail: "send a JSON object {\"value\": \"...\"}"))
            }
            write(.setSetting(key: key, value: value), request, responder) { outcome in
                .json(SettingJSON.encode(SettingView(key: key, value: value, previous: outcome?.replacedValue)))
            }
        }
        router.delete("/v1/config/{key}") { request, parameters in
            let key = parameters["key"] ?? ""
            switch try await write(.deleteSetting(key: key), request) {
            case .applied(let outcome):
                return .json(SettingJSON.encode(SettingView(key: key, value: nil, previous: outcome?.replacedValue)))
            case .forwarded(let response): return response
            }
        }
    }

    /// Membership and leadership: add a node (as a learner), promote it, remove one, move the leader.
    func addMembershipRoutes(to router: inout Router) {
        router.post("/v1/members", body: .collect) { request, _ in
            let body = try await request.body.collect(upTo: 64 << 10)
            guard let member = try? JSONDecoder().decode(MemberAddition.self, from: Data(body.readableBytesView)),
                let id = NodeID(parsing: member.id), let peer = Endpoint(parsing: member.peer),
                let client = Endpoint(parsing: member.client)
            else {
                throw HTTPError(
                    status: 400, error: "bad_request_body",
                    detail: "send {\"id\": \"n4\", \"peer\": \"host:port\", \"client\": \"host:port\"}")
            }
            // First the addresses, so every node can reach the new member; then Raft adds it.
            let register = ClusterCommand.registerMember(id: id, addresses: MemberAddresses(peer: peer, client: client))
            if case .forwarded(let response) = try await write(register, request) { return response }
            return try await changeMembership(.addLearner(id), request)
        }
        router.post("/v1/members/{id}/promote") { request, parameters in
            try await changeMembership(.promote(try nodeID(parameters)), request)
        }
        router.delete("/v1/members/{id}") { request, parameters in
            try await removeMember(try nodeID(parameters), request)
        }
        router.post("/v1/leader/transfer", body: .collect) { request, _ in
            let body = try await request.body.collect(upTo: 64 << 10)
            guard
                let target = try? JSONDecoder().decode(LeadershipTransfer.self, from: Data(body.readableBytesView)).to,
                let id = NodeID(parsing: target)
            else {
                throw HTTPError(status: 400, error: "bad_request_body", detail: "send {\"to\": \"n2\"}")
            }
            do {
                try await driver.transferLeadership(to: id)
            } catch let error as TransferError {
                if case .notLeader = error { return try await forwardOrFail(request) }
                throw HTTPError(status: 409, error: "cannot_transfer_leadership", detail: error.description)
            }
            return try json(["transferring-to": id.description])
        }
    }

    func nodeID(_ parameters: RouteParameters) throws -> NodeID {
        guard let text = parameters["id"], let id = NodeID(parsing: text) else {
            throw HTTPError(status: 400, error: "bad_node_id", detail: "node ids are n1, n2, …")
        }
        return id
    }

    /// Proposes a membership change and answers with the new status once it is committed.
    private func changeMembership(_ change: MembershipChange, _ request: HTTPRequest) async throws -> HTTPResponse {
        if case .forwarded(let response) = try await proposeMembershipChange(change, request) { return response }
        return try json(await statusView())
    }

    /// Proposes a membership change and waits for its commit; on a node that is not the leader,
    /// the leader's answer to the request instead.
    func proposeMembershipChange(_ change: MembershipChange, _ request: HTTPRequest) async throws -> WriteOutcome {
        do {
            try await driver.changeMembership(change, timeoutTicks: timeoutTicks)
        } catch let error as MembershipChangeError {
            if case .notLeader = error { return .forwarded(try await forwardOrFail(request)) }
            throw HTTPError(status: 409, error: "membership_change_refused", detail: error.description)
        } catch let error as RaftDriverError {
            throw httpError(error)
        }
        return .applied(nil)
    }

    func isStale(_ request: HTTPRequest) -> Bool { queryFlag("stale", request) }

    /// Whether the query has `name=true`.
    func queryFlag(_ name: String, _ request: HTTPRequest) -> Bool {
        (request.query ?? "").split(separator: "&").contains("\(name)=true")
    }

    /// A linearizable read by ReadIndex (or the local copy with `?stale=true`).
    func read<T: Sendable>(
        _ request: HTTPRequest, _ body: @Sendable (ClusterStateMachine) -> T
    ) async throws -> T {
        if isStale(request) { return await driver.staleRead(body) }
        do {
            return try await driver.linearizableRead(timeoutTicks: timeoutTicks, lease: true, body)
        } catch let error as RaftDriverError {
            throw httpError(error)
        }
    }

    enum WriteOutcome {
        /// Committed and applied here; what it did (nil for a retried request applied before).
        case applied(CommandOutcome?)
        /// This node is not the leader: the leader's answer, to pass through.
        case forwarded(HTTPResponse)
    }

    /// Proposes a command and answers through `responder`, from the commit's callback: with
    /// `answer(outcome)` once applied, with the refusal's error, or with the leader's answer when
    /// this node is not the leader (forwarded, the one path that needs a task).
    func write(
        _ command: ClusterCommand, _ request: HTTPRequest, _ responder: HTTPResponder,
        answer: @escaping @Sendable (CommandOutcome?) -> HTTPResponse
    ) {
        propose(command, request) { result in
            switch result {
            case .success(let outcome):
                responder.respond(answer(outcome))
            case .failure(let error as RaftDriverError) where error.isNotLeader:
                Task {
                    do {
                        responder.respond(try await self.forwardOrFail(request))
                    } catch {
                        responder.fail(error)
                    }
                }
            case .failure(let error):
                responder.fail(error)
            }
        }
    }

    /// Proposes a command, or forwards the request to the leader when this node is not it.
    func write(_ command: ClusterCommand, _ request: HTTPRequest) async throws -> WriteOutcome {
        do {
            return .applied(
                try await withCheckedThrowingContinuation { continuation in
                    propose(command, request) { continuation.resume(with: $0) }
                })
        } catch let error as RaftDriverError where error.isNotLeader {
            return .forwarded(try await forwardOrFail(request))
        }
    }

    /// Proposes `command` for `request` and tells `completion` what became of it: the outcome once
    /// applied; a `RaftDriverError` that `isNotLeader` (the caller forwards); or an `HTTPError`.
    private func propose(
        _ command: ClusterCommand, _ request: HTTPRequest,
        completion: @escaping @Sendable (Result<CommandOutcome?, any Error>) -> Void
    ) {
        let requestID: RequestID?
        do {
            requestID = try self.requestID(request)
        } catch {
            return completion(.failure(error))
        }
        // The state machine reads no clock: the time it records is this proposal's.
        let proposedAt = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        driver.propose(
            CommandEnvelope(proposedAt: proposedAt, command: command).encoded, requestID: requestID,
            timeoutTicks: timeoutTicks
        ) { result in
            switch result {
            case .success(let bytes):
                completion(Result { try Self.outcome(of: bytes) })
            case .failure(let error as RaftDriverError) where !error.isNotLeader:
                completion(.failure(self.httpError(error)))
            case .failure(let error):
                completion(.failure(error))
            }
        }
    }

    /// The state machine's answer to a write: its outcome, or the refusal as an `HTTPError`. An
    /// empty answer is a retried request already applied: success without an outcome.
    private static func outcome(of answer: [UInt8]) throws -> CommandOutcome? {
        guard !answer.isEmpty else { return nil }
        switch try CommandResult(decoding: answer) {
        case .applied(let outcome): return outcome
        case .rejected(let rejection):
            throw HTTPError(
                status: rejection.kind.httpStatus, error: rejection.kind.apiName, detail: rejection.reason)
        }
    }

    private func requestID(_ request: HTTPRequest) throws -> RequestID? {
        guard let text = request.headers[Self.requestIDHeader] else { return nil }
        let parts = text.split(separator: ":")
        guard parts.count == 2, let client = UInt64(parts[0]), let sequence = UInt64(parts[1]), client != 0 else {
            throw HTTPError(
                status: 400, error: "bad_request_id",
                detail: "write it as <client>:<sequence>, two numbers, the sequence growing with each new request")
        }
        return RequestID(client: client, sequence: sequence)
    }

    func forwardOrFail(_ request: HTTPRequest) async throws -> HTTPResponse {
        let status = await driver.status
        guard request.headers[Self.forwardedHeader] == nil else {
            throw HTTPError(
                status: 503, error: "no_leader",
                detail: "forwarded here as the leader, but \(configuration.nodeID) is not; retry in a moment")
        }
        guard let leader = status.leader, leader != configuration.nodeID,
            let address = addressBook.addresses(of: leader)?.client
        else {
            throw HTTPError(
                status: 503, error: "no_leader", detail: "no leader is elected right now; retry in a moment")
        }
        var forwarded = request
        forwarded.headers.append(name: Self.forwardedHeader, value: configuration.nodeID.description)
        do {
            return try await forwarder.send(forwarded, to: address, timeout: .milliseconds(5_000))
        } catch let error as HTTP2ClientError where error.requestWasNotProcessed {
            // The request never reached the leader: nothing happened, as when no leader is known.
            throw HTTPError(
                status: 503, error: "no_leader",
                detail: "the leader \(leader) at \(address) is unreachable (\(error.kind)); retry in a moment")
        } catch {
            // It may have reached the leader: the outcome is unknown.
            throw HTTPError(
                status: 503, error: "leader_unreachable", detail: "the leader \(leader) at \(address): \(error)")
        }
    }

    func statusView() async -> StatusView {
        let status = await driver.status
        var members: [StatusView.Member] = []
        for id in status.membership.members.sorted() {
            let address = addressBook.addresses(of: id)
            let state: String
            var match: UInt64?
            if id == status.leader {
                state = "leader"
                match = id == configuration.nodeID ? status.lastIndex.rawValue : nil
            } else if let progress = status.progress[id] {
                match = progress.match.rawValue
                switch progress.mode {
                case _ where progress.ticksSinceHeard > configuration.electionTicks: state = "unreachable"
                case .replicate: state = "follower"
                case .probe: state = "probing"
                case .snapshot: state = "snapshot"
                }
            } else {
                state = "follower"
            }
            members.append(
                StatusView.Member(
                    id: id.description, role: status.membership.learners.contains(id) ? "learner" : "voter",
                    state: state, matchIndex: match, peerAddress: address?.peer.description,
                    clientAddress: address?.client.description))
        }
        return StatusView(
            cluster: configuration.clusterID, servedBy: configuration.nodeID.description,
            leader: status.leader?.description, term: status.term.rawValue, commitIndex: status.commit.rawValue,
            appliedIndex: status.applied.rawValue, lastIndex: status.lastIndex.rawValue, members: members)
    }

    func httpError(_ error: RaftDriverError) -> HTTPError {
        switch error.kind {
        case .notLeader: HTTPError(status: 503, error: "no_leader", detail: error.description)
        case .dropped: HTTPError(status: 503, error: "leader_changed", detail: error.description)
        case .timedOut: HTTPError(status: 504, error: "timed_out", detail: error.description)
        case .stopped: HTTPError(status: 503, error: "shutting_down", detail: error.description)
        case .refused: HTTPError(status: 429, error: "overloaded", detail: error.description)
        }
    }
}

/// Keeps one HTTP/2 connection to each node's client API, for forwarding to the leader.
final class LeaderForwarder: Sendable {
    private let clients = Mutex<[Endpoint: HTTP2Client]>([:])

    func send(_ request: HTTPRequest, to endpoint: Endpoint, timeout: Duration) async throws -> HTTPResponse {
        let client = clients.withLock { clients in
            if let client = clients[endpoint] { return client }
            let client = HTTP2Client(configuration: .init(host: endpoint.host, port: endpoint.port))
            clients[endpoint] = client
            return client
        }
        return try await client.send(request, timeout: timeout)
    }

    func close() async {
        for client in clients.withLock({ $0.values }) { await client.close() }
    }
}

/// A JSON response from an encodable value, keys sorted so output is stable.
func json(_ value: some Encodable) throws -> HTTPResponse {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return HTTPResponse.json(String(decoding: try encoder.encode(value), as: UTF8.self))
}

extension Rejection.Kind {
    /// The `error` name of the API's answer (docs/api.md): lower-case words joined by underscores.
    var apiName: String {
        switch self {
        case .invalid: "invalid"
        case .notFound: "not_found"
        case .conflict: "conflict"
        case .insufficientMemory: "insufficient_memory"
        }
    }
}
