// The client API for the cluster state: nodes, volumes, VMs, migrations, events and metrics.
import ClusterModel
public import ClusterState
public import FlotillaAPI
import Foundation
public import HTTP2
import NIOCore
import RaftCore
import RaftRuntime

extension ClientAPI {
    func addClusterRoutes(to router: inout Router) {
        addReadRoutes(to: &router)
        addVMRoutes(to: &router)
        addVolumeAndNodeRoutes(to: &router)
        addMigrationRoutes(to: &router)
        addDecommissionRoutes(to: &router)
    }

    // MARK: Reads

    private func addReadRoutes(to router: inout Router) {
        router.get("/v1/cluster") { request, _ in
            // Like /v1/status, served by the leader, which alone knows every member's progress.
            if !isStale(request), await driver.status.role != .leader { return try await forwardOrFail(request) }
            let state = try await clusterState(request)
            let reported = reportedMemory.current
            return try json(
                ClusterView(
                    status: await statusView(),
                    nodes: state.nodeViews(reported: reported, membership: await driver.status.membership),
                    volumes: state.volumeViews, vms: state.vmViews(reported: reported),
                    migrations: state.migrationViews(activeOnly: true)))
        }
        // Nodes and VMs carry the memory their nodes report to the leader, which alone has it: a
        // follower forwards these reads (with ?stale=true it answers from its own copy, without).
        router.get("/v1/nodes") { request, _ in
            if !isStale(request), await driver.status.role != .leader { return try await forwardOrFail(request) }
            let state = try await clusterState(request)
            let membership = await driver.status.membership
            return try json(["nodes": state.nodeViews(reported: reportedMemory.current, membership: membership)])
        }
        router.get("/v1/nodes/{id}") { request, parameters in
            if !isStale(request), await driver.status.role != .leader { return try await forwardOrFail(request) }
            let id = try nodeID(parameters)
            let state = try await clusterState(request)
            guard let node = state.nodes[id] else { throw Self.noNode(id, in: state) }
            return try json(
                NodeView(node, in: state, reported: reportedMemory.current, membership: await driver.status.membership))
        }
        router.get("/v1/vms") { request, _ in
            if !isStale(request), await driver.status.role != .leader { return try await forwardOrFail(request) }
            return try json(["vms": try await clusterState(request).vmViews(reported: reportedMemory.current)])
        }
        router.get("/v1/vms/{name}") { request, parameters in
            if !isStale(request), await driver.status.role != .leader { return try await forwardOrFail(request) }
            let state = try await clusterState(request)
            return try json(VMView(try Self.vm(parameters, in: state), in: state, reported: reportedMemory.current))
        }
        router.get("/v1/volumes") { request, _ in
            let state = try await clusterState(request)
            return try json(["volumes": await withAccess(state.volumeViews, in: state)])
        }
        router.get("/v1/volumes/{id}") { request, parameters in
            let state = try await clusterState(request)
            let view = VolumeView(try Self.volume(parameters, in: state), in: state)
            return try json(await withAccess([view], in: state)[0])
        }
        router.get("/v1/migrations") { request, _ in
            let state = try await clusterState(request)
            return try json(["migrations": state.migrationViews(activeOnly: queryFlag("active", request))])
        }
        router.get("/v1/events") { request, _ in
            let since = try Self.sinceParameter(request)
            let state = try await clusterState(request)
            let events = state.events(since: since).map(EventView.init)
            guard queryFlag("follow", request) else { return try json(["events": events]) }
            let follower = EventFollower(
                first: events, after: events.last?.sequence ?? max(since, state.nextEventSequence - 1),
                driver: driver, lifecycle: lifecycle)
            return HTTPResponse(
                status: 200, headers: ["content-type": "application/x-ndjson"], body: .stream(HTTPBodyStream(follower)))
        }
        router.get("/metrics") { _, _ in
            let status = await driver.status
            let state = await driver.staleRead { $0.state }
            return HTTPResponse(
                status: 200, headers: ["content-type": "text/plain; version=0.0.4"],
                body: .string(
                    Metrics.render(
                        node: configuration.nodeID, status: status, state: state, reported: reportedMemory.current,
                        downtime: migrationMetrics.current, allocations: MallocCounter.count)))
        }
    }

    /// The whole state, read linearizably (or the local copy with `?stale=true`). A copy is cheap:
    /// its collections are copy-on-write and the state machine's next apply copies, not this.
    func clusterState(_ request: HTTPRequest) async throws -> ClusterState {
        try await read(request) { $0.state }
    }

    private static func sinceParameter(_ request: HTTPRequest) throws -> UInt64 {
        for pair in (request.query ?? "").split(separator: "&") where pair.hasPrefix("since=") {
            guard let since = UInt64(pair.dropFirst("since=".count)) else {
                throw HTTPError(
                    status: 400, error: "bad_since",
                    detail: "since must be an event sequence number (a whole number ≥ 0), got \(pair.dropFirst(6))")
            }
            return since
        }
        return 0
    }

    // MARK: VMs

    private static let createVMExample =
        #"send {"name": "Finance", "startup": "1G", "minimum": "512M", "maximum": "4G", "buffer": 20, "priority": 50, "#
        + #""restartPriority": "high", "preferredOwners": ["n1"], "volume": "csv1"}"#

    private func addVMRoutes(to router: inout Router) {
        router.post("/v1/vms") { request, _ in
            try await onLeader(request) {
                let body = try await Self.decode(VMCreation.self, request, example: Self.createVMExample)
                let spec = try VMSpec(creation: body)
                switch try await write(.createVM(spec), request) {
                case .forwarded(let response): return response
                case .applied:
                    let state = await localState()
                    guard let vm = state.vm(named: spec.name) else { throw Self.noVM(spec.name) }
                    return try json(VMView(vm, in: state, reported: reportedMemory.current), status: 201)
                }
            }
        }
        router.post("/v1/vms/{name}/start", body: .collect) { request, parameters in
            try await onLeader(request) {
                let node: NodeID?
                if try await request.body.collect(upTo: 64 << 10).readableBytes == 0 {
                    node = nil
                } else {
                    let text = try await Self.decode(VMStart.self, request, example: #"send {} or {"node": "n2"}"#).node
                    node = try text.map { text in
                        guard let id = NodeID(parsing: text) else {
                            throw HTTPError(
                                status: 400, error: "bad_node_id", detail: "node ids are n1, n2, …, got \(text)")
                        }
                        return id
                    }
                }
                // Placed here, on the leader, where the nodes' memory reports are: the node with
                // the most memory free by report; with none that fits, placement at apply time
                // leaves it pending with the reason.
                let reported = reportedMemory.current
                let state = await localState()
                return try await vmCommand(request, parameters) { vm in
                    if let node { return .startVM(vm.id, on: node) }
                    guard vm.state != .running, case .node(let chosen) = state.placement(for: vm, reported: reported)
                    else { return .startVM(vm.id, on: nil) }
                    return .startVM(vm.id, on: chosen)
                }
            }
        }
        router.post("/v1/vms/{name}/stop") { request, parameters in
            try await onLeader(request) { try await vmCommand(request, parameters) { .stopVM($0.id) } }
        }
        router.patch("/v1/vms/{name}/memory") { request, parameters in
            try await onLeader(request) {
                let body = try await Self.decode(
                    MemoryChange.self, request, example: #"send e.g. {"startup": "2G", "maximum": "8G", "buffer": 25}"#)
                return try await vmCommand(request, parameters) { vm in
                    var memory = vm.memory
                    if let startup = body.startup { memory.startup = startup }
                    if let minimum = body.minimum { memory.minimum = minimum }
                    if let maximum = body.maximum { memory.maximum = maximum }
                    if let buffer = body.buffer { memory.bufferPercent = buffer }
                    if let priority = body.priority { memory.priority = priority }
                    return .setVMMemory(vm.id, memory)
                }
            }
        }
        router.put("/v1/vms/{name}/workload") { request, parameters in
            try await onLeader(request) {
                let body = try await Self.decode(
                    WorkloadView.self, request,
                    example: #"send e.g. {"demand": "2G"} or {"ramp": {"from": "1G", "to": "3G", "seconds": 60}}"#)
                switch body.workload() {
                case .failure(let problem):
                    throw HTTPError(status: 400, error: "bad_request_body", detail: problem.description)
                case .success(let workload):
                    return try await vmCommand(request, parameters) { .setVMWorkload($0.id, workload) }
                }
            }
        }
        router.delete("/v1/vms/{name}") { request, parameters in
            try await onLeader(request) {
                let state = try await clusterState(request)
                let vm = try Self.vm(parameters, in: state)
                switch try await write(.deleteVM(vm.id), request) {
                case .forwarded(let response): return response
                case .applied: return try json(["deleted": vm.id.description, "name": vm.name])
                }
            }
        }
    }

    /// Resolves the VM named in the path, proposes the command made from it, and answers the VM as it is now.
    func vmCommand(
        _ request: HTTPRequest, _ parameters: RouteParameters, _ command: (VMRecord) throws -> ClusterCommand
    ) async throws -> HTTPResponse {
        let vm = try Self.vm(parameters, in: try await clusterState(request))
        switch try await write(try command(vm), request) {
        case .forwarded(let response): return response
        case .applied:
            let state = await localState()
            guard let now = state.vms[vm.id] else { throw Self.noVM(vm.name) }
            return try json(VMView(now, in: state, reported: reportedMemory.current))
        }
    }

    /// The views with what the nodes say about their access to each volume (docs/volumes.md).
    private func withAccess(_ views: [VolumeView], in state: ClusterState) async -> [VolumeView] {
        guard let volumeAccess else { return views }
        return await volumeAccess.annotate(views, in: state)
    }

    /// The reason node and volume commands from the client API record in their events.
    static let byOperator = "by operator"

    /// `Finance` → `finance.vhdx`: a file name any path rule accepts, derived from the VM's name.
    static func defaultDiskFile(for name: String) -> String {
        let safe = name.lowercased().map { character in
            character.isASCII && (character.isLetter || character.isNumber || character == "-" || character == "_")
                ? character : "-"
        }
        return String(safe.isEmpty ? ["d", "i", "s", "k"] : safe) + ".vhdx"
    }

    // MARK: Volumes and nodes

    private func addVolumeAndNodeRoutes(to router: inout Router) {
        router.post("/v1/volumes") { request, _ in
            try await onLeader(request) {
                let body = try await Self.decode(
                    VolumeCreation.self, request,
                    example: #"send {"id": "csv1", "coordinator": "n1", "path": "volumes/csv1"}"#)
                let coordinator = try Self.parseNodeID(body.coordinator, what: "coordinator")
                let id = VolumeID(body.id)
                let command = ClusterCommand.createVolume(
                    id, path: body.path ?? "volumes/\(body.id)", coordinator: coordinator)
                return try await volumeCommand(command, id, request, status: 201)
            }
        }
        router.post("/v1/volumes/{id}/move") { request, parameters in
            try await onLeader(request) {
                let body = try await Self.decode(VolumeMove.self, request, example: #"send {"coordinator": "n2"}"#)
                let coordinator = try Self.parseNodeID(body.coordinator, what: "coordinator")
                let id = VolumeID(parameters["id"] ?? "")
                return try await volumeCommand(
                    .moveVolume(id, coordinator: coordinator, reason: Self.byOperator), id, request)
            }
        }
        router.post("/v1/nodes/{id}/drain") { request, parameters in
            try await onLeader(request) {
                let id = try nodeID(parameters)
                return try await nodeCommand(.setNodeState(id, .draining, reason: Self.byOperator), id, request)
            }
        }
        router.post("/v1/nodes/{id}/pause") { request, parameters in
            try await onLeader(request) {
                let id = try nodeID(parameters)
                return try await nodeCommand(.setNodeState(id, .paused, reason: Self.byOperator), id, request)
            }
        }
        router.post("/v1/nodes/{id}/resume") { request, parameters in
            try await onLeader(request) {
                let id = try nodeID(parameters)
                return try await nodeCommand(.setNodeState(id, .up, reason: Self.byOperator), id, request)
            }
        }
        router.post("/v1/nodes") { request, _ in
            try await onLeader(request) { try await registerNode(request) }
        }
    }

    /// `POST /v1/nodes`: what every node sends (see `NodeRegistrar`) to record itself with its memory.
    func registerNode(_ request: HTTPRequest) async throws -> HTTPResponse {
        let body = try await Self.decode(
            NodeRegistrationRequest.self, request,
            example:
                #"send {"id": "n1", "peer": "host:port", "client": "host:port", "role": "voter", "usableMemory": 8589934592}"#
        )
        guard let id = NodeID(parsing: body.id), let peer = Endpoint(parsing: body.peer),
            let client = Endpoint(parsing: body.client),
            let role = NodeRole.allCases.first(where: { $0.description == body.role })
        else {
            throw HTTPError(
                status: 400, error: "bad_request_body",
                detail: "id is n1, n2, …; peer and client are host:port; role is voter or learner")
        }
        // A node removed from the cluster (or not yet added) gets no record: a removed node that
        // missed its removal must not bring its record back.
        guard await driver.status.membership.contains(id) else {
            throw HTTPError(
                status: 409, error: "conflict",
                detail: "\(id) is not a member of the cluster (removed, or not added yet); add it first: "
                    + "flotilla members add \(id) --peer HOST:PORT --client HOST:PORT")
        }
        let registration = NodeRegistration(
            id: id, addresses: MemberAddresses(peer: peer, client: client), role: role,
            usableMemory: body.usableMemory)
        return try await nodeCommand(.registerNode(registration), id, request)
    }

    private func nodeCommand(_ command: ClusterCommand, _ id: NodeID, _ request: HTTPRequest) async throws
        -> HTTPResponse
    {
        switch try await write(command, request) {
        case .forwarded(let response): return response
        case .applied:
            let state = await localState()
            guard let node = state.nodes[id] else { throw Self.noNode(id, in: state) }
            return try json(
                NodeView(node, in: state, reported: reportedMemory.current, membership: await driver.status.membership))
        }
    }

    private func volumeCommand(_ command: ClusterCommand, _ id: VolumeID, _ request: HTTPRequest, status: Int = 200)
        async throws -> HTTPResponse
    {
        switch try await write(command, request) {
        case .forwarded(let response): return response
        case .applied:
            let state = await localState()
            guard let volume = state.volumes[id] else { throw Self.noVolume(id, in: state) }
            return try json(VolumeView(volume, in: state), status: status)
        }
    }

    // MARK: Shared

    /// Runs a write on the leader, which resolves names on its state; any other node forwards it.
    func onLeader(_ request: HTTPRequest, _ body: () async throws -> HTTPResponse) async throws -> HTTPResponse {
        if await driver.status.role != .leader { return try await forwardOrFail(request) }
        return try await body()
    }

    /// This node's applied state (on the leader right after a write, it includes that write).
    func localState() async -> ClusterState {
        await driver.staleRead { $0.state }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ request: HTTPRequest, example: String) async throws -> T {
        let body = try await request.body.collect(upTo: 64 << 10)
        do {
            return try JSONDecoder().decode(type, from: Data(body.readableBytesView))
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            throw HTTPError(
                status: 400, error: "bad_request_body",
                detail: "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)")
        } catch {
            throw HTTPError(status: 400, error: "bad_request_body", detail: "\(Self.describe(error)); \(example)")
        }
    }

    /// A decoding error in a sentence (Foundation's descriptions are long and generic).
    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "the field \"\(key.stringValue)\" is missing"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "the field \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\" has the wrong type"
        default: "the body is not a JSON object"
        }
    }

    static func parseNodeID(_ text: String, what: String) throws -> NodeID {
        guard let id = NodeID(parsing: text) else {
            throw HTTPError(status: 400, error: "bad_node_id", detail: "\(what) is a node id (n1, n2, …), got \(text)")
        }
        return id
    }

    static func vm(_ parameters: RouteParameters, in state: ClusterState) throws -> VMRecord {
        let name = parameters["name"] ?? ""
        guard let vm = state.vm(named: name) else { throw noVM(name) }
        return vm
    }

    static func noVM(_ name: String) -> HTTPError {
        HTTPError(status: 404, error: "not_found", detail: "no VM is named \(name); list the VMs with GET /v1/vms")
    }

    static func volume(_ parameters: RouteParameters, in state: ClusterState) throws -> VolumeRecord {
        let id = VolumeID(parameters["id"] ?? "")
        guard let volume = state.volumes[id] else { throw noVolume(id, in: state) }
        return volume
    }

    static func noVolume(_ id: VolumeID, in state: ClusterState) -> HTTPError {
        HTTPError(status: 404, error: "not_found", detail: "no volume \(id) exists; list them with GET /v1/volumes")
    }

    static func noNode(_ id: NodeID, in state: ClusterState) -> HTTPError {
        HTTPError(status: 404, error: "not_found", detail: "no node \(id) is registered; list them with GET /v1/nodes")
    }
}

extension CommandOutcome {
    /// The value a settings write replaced.
    var replacedValue: String? {
        if case .previous(let previous) = self { previous } else { nil }
    }
}

/// A JSON response with a status other than 200.
func json(_ value: some Encodable, status: Int) throws -> HTTPResponse {
    var response = try json(value)
    response.status = status
    return response
}

extension VMSpec {
    /// The spec `POST /v1/vms` creates from its body: defaults filled in, names parsed; a body
    /// that says something wrong is a 400 with the reason (the state machine checks the rest).
    public init(creation body: VMCreation) throws(HTTPError) {
        let restart: RestartPriority
        if let text = body.restartPriority {
            guard let priority = RestartPriority.allCases.first(where: { $0.description == text }) else {
                throw HTTPError(
                    status: 400, error: "bad_restart_priority",
                    detail: "restartPriority is high, medium, low or none, got \(text)")
            }
            restart = priority
        } else {
            restart = .medium
        }
        var preferred: [NodeID] = []
        for text in body.preferredOwners ?? [] {
            guard let id = NodeID(parsing: text) else {
                throw HTTPError(
                    status: 400, error: "bad_node_id", detail: "preferredOwners lists node ids (n1, n2, …), got \(text)"
                )
            }
            preferred.append(id)
        }
        var workload: Workload?
        if let view = body.workload {
            switch view.workload() {
            case .success(let described): workload = described
            case .failure(let problem):
                throw HTTPError(status: 400, error: "bad_request_body", detail: "workload: \(problem)")
            }
        }
        let memory = MemorySettings(
            startup: body.startup, minimum: body.minimum ?? body.startup, maximum: body.maximum ?? body.startup,
            bufferPercent: body.buffer ?? MemorySettings.defaultBufferPercent,
            priority: body.priority ?? MemorySettings.defaultPriority)
        let disk = DiskFile(
            volume: VolumeID(body.volume), file: body.diskFile ?? ClientAPI.defaultDiskFile(for: body.name))
        self.init(
            name: body.name, memory: memory, restartPriority: restart, preferredOwners: preferred,
            antiAffinityClass: body.antiAffinityClass, disk: disk, workload: workload,
            autoConverge: body.autoConverge ?? false, driver: try body.driver?.driver(diskFile: disk.file) ?? .simulated
        )
    }
}
