// The client API of live migration: migrate a VM, cancel a migration, read one, and the VM's auto-converge.
import ClusterModel
import ClusterState
import FlotillaAPI
import HTTP2
import LiveMigration
import NIOCore

extension ClientAPI {
    func addMigrationRoutes(to router: inout Router) {
        router.post("/v1/vms/{name}/migrate", body: .collect) { request, parameters in
            try await onLeader(request) {
                let body: VMMigration
                if try await request.body.collect(upTo: 64 << 10).readableBytes == 0 {
                    body = VMMigration()
                } else {
                    body = try await Self.decode(VMMigration.self, request, example: #"send {} or {"to": "n2"}"#)
                }
                let state = try await clusterState(request)
                let vm = try Self.vm(parameters, in: state)
                let target = try migrationTarget(of: vm, asked: body.to, in: state)
                switch try await write(.beginMigration(vm.id, target: target, reason: Self.byOperator), request) {
                case .forwarded(let response): return response
                case .applied(let outcome):
                    guard case .migration(let id, _, _) = outcome, let record = await localState().migrations[id] else {
                        throw HTTPError(status: 500, error: "internal", detail: "the migration was not recorded")
                    }
                    return try json(MigrationView(record, in: await localState()), status: 202)
                }
            }
        }
        router.put("/v1/vms/{name}/auto-converge") { request, parameters in
            try await onLeader(request) {
                let body = try await Self.decode(AutoConvergeChange.self, request, example: #"send {"enabled": true}"#)
                return try await vmCommand(request, parameters) { .setVMAutoConverge($0.id, body.enabled) }
            }
        }
        router.get("/v1/migrations/{id}") { request, parameters in
            let id = try Router.migrationID(parameters)
            let state = try await clusterState(request)
            guard let record = state.migrations[id] else { throw Self.noMigration(id) }
            return try json(MigrationView(record, in: state))
        }
        router.post("/v1/migrations/{id}/cancel") { request, parameters in
            try await onLeader(request) {
                let id = try Router.migrationID(parameters)
                let state = try await clusterState(request)
                guard let record = state.migrations[id] else { throw Self.noMigration(id) }
                guard record.phase.isActive else {
                    throw HTTPError(
                        status: 409, error: "conflict",
                        detail: "\(id) already ended: \(record.phase)\(record.reason.map { " (\($0))" } ?? "")")
                }
                switch try await write(
                    .abortMigration(id, outcome: .cancelled, reason: "cancelled by operator"), request)
                {
                case .forwarded(let response): return response
                case .applied:
                    let now = await localState()
                    return try json(MigrationView(now.migrations[id] ?? record, in: now))
                }
            }
        }
    }

    /// The node a migration of `vm` goes to: the one asked for, checked, or the one placement
    /// picks among the others. Each problem is a 4xx that says what to do.
    private func migrationTarget(of vm: VMRecord, asked: String?, in state: ClusterState) throws -> NodeID {
        guard vm.state == .running, let source = vm.owner else {
            throw HTTPError(
                status: 409, error: "conflict",
                detail: "\(vm.id) (\(vm.name)) is \(vm.state); only a running VM migrates — start it first")
        }
        if let migration = state.activeMigration(of: vm.id) {
            throw HTTPError(
                status: 409, error: "conflict",
                detail: "\(vm.id) (\(vm.name)) is already migrating (\(migration.id) to \(migration.target), "
                    + "\(migration.phase)); wait for it, or cancel it with flotilla migration cancel \(migration.id)")
        }
        let reported = reportedMemory.current
        let target: NodeID
        if let asked {
            target = try Self.parseNodeID(asked, what: "to")
            guard let node = state.nodes[target] else { throw Self.noNode(target, in: state) }
            guard target != source else {
                throw HTTPError(
                    status: 409, error: "conflict", detail: "\(vm.id) (\(vm.name)) already runs on \(target)")
            }
            guard node.state.takesNewWork else {
                throw HTTPError(
                    status: 409, error: "conflict",
                    detail:
                        "\(target) is \(node.state) and takes no incoming migrations; resume it or pick a node that is up"
                )
            }
        } else {
            switch state.placement(for: vm, reported: reported, excluding: [source]) {
            case .node(let chosen): target = chosen
            case .pending(let reason):
                throw HTTPError(
                    status: 409, error: "insufficient_memory",
                    detail: "no other node can take \(vm.id) (\(vm.name)): \(reason)")
            }
        }
        if let problem = state.memoryProblem(migrating: vm, to: target, reported: reported) {
            throw HTTPError(status: 409, error: "insufficient_memory", detail: problem)
        }
        return target
    }

    static func noMigration(_ id: MigrationID) -> HTTPError {
        HTTPError(
            status: 404, error: "not_found",
            detail: "no migration \(id) is known (the state keeps the last \(ClusterState.finishedMigrationsKept) "
                + "ended ones); list them with GET /v1/migrations")
    }
}
