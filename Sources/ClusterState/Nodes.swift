// Applying the node commands: register, change state (drain, pause, resume, down, up), remove.
import ClusterModel

extension ClusterState {
    mutating func registerNode(_ registration: NodeRegistration, _ context: ApplyContext) throws(Rejection)
        -> CommandOutcome
    {
        let id = registration.id
        guard (1 << 20)...MemorySettings.largestBytes ~= registration.usableMemory else {
            throw .invalid(
                "usable memory of \(id) must be 1 MiB–\(ByteCount(MemorySettings.largestBytes)), "
                    + "got \(registration.usableMemory) bytes")
        }
        for other in nodes.values.sorted(by: { $0.id < $1.id }) where other.id != id {
            if other.addresses.peer == registration.addresses.peer {
                throw .conflict(
                    "peer address \(registration.addresses.peer) already belongs to \(other.id); give \(id) its own")
            }
            if other.addresses.client == registration.addresses.client {
                throw .conflict(
                    "client address \(registration.addresses.client) already belongs to \(other.id); give \(id) its own"
                )
            }
        }
        if var node = nodes[id] {
            let reserved = reservedMemory()[id] ?? 0
            guard registration.usableMemory >= reserved else {
                throw .insufficientMemory(
                    "\(id) has \(ByteCount(reserved)) reserved by its VMs and incoming migrations; usable memory of "
                        + "\(ByteCount(registration.usableMemory)) is too little; move VMs off it first")
            }
            node.addresses = registration.addresses
            node.role = registration.role
            node.usableMemory = registration.usableMemory
            nodes[id] = node
            record(
                .nodeRegistered, context, node: id,
                "\(id) re-registered: \(node.role), \(ByteCount(node.usableMemory)) usable, peer "
                    + "\(node.addresses.peer), client \(node.addresses.client)")
            return .node(id, node.state)
        }
        nodes[id] = NodeRecord(
            id: id, addresses: registration.addresses, role: registration.role,
            usableMemory: registration.usableMemory, state: .up)
        record(
            .nodeRegistered, context, node: id,
            "\(id) registered: \(registration.role), \(ByteCount(registration.usableMemory)) usable, peer "
                + "\(registration.addresses.peer), client \(registration.addresses.client)")
        return .node(id, .up)
    }

    /// Draining, pausing and resuming change nothing else: the controllers move VMs away from a
    /// draining node. Declaring a node down takes effect at once, since the node no longer runs
    /// anything the cluster can count on: its VMs go pending (epoch + 1) until failover gives
    /// them new owners, its migrations fail, and its volumes go offline until their coordinator moves.
    mutating func setNodeState(
        _ id: NodeID, _ state: NodeState, reason: String?, expected: NodeState?, _ context: ApplyContext
    ) throws(Rejection) -> CommandOutcome {
        try Self.checkReason(reason, of: "setNodeState")
        var node = try knownNode(id)
        if let expected, node.state != expected {
            throw .conflict(
                "\(id) is \(node.state), not \(expected) as expected; the change was decided on an older state")
        }
        guard node.state != state else { throw .conflict("\(id) is already \(state)") }
        guard node.state.allowedNext.contains(state) else {
            throw .conflict(
                "\(id) is \(node.state) and cannot become \(state) directly; from \(node.state) it can become "
                    + node.state.allowedNext.map(\.description).joined(separator: " or "))
        }
        let previous = node.state
        node.state = state
        nodes[id] = node
        record(.nodeStateChanged, context, node: id, "\(id): \(previous) → \(state)" + Self.because(reason))
        if state == .down {
            takeDown(id, context)
            startQueuedMigrations(context)
        }
        return .node(id, state)
    }

    private mutating func takeDown(_ id: NodeID, _ context: ApplyContext) {
        for var migration in migrations.values.sorted(by: { $0.id < $1.id })
        where migration.phase.isActive && (migration.source == id || migration.target == id) {
            migration.phase = .failed
            migration.timings[.failed] = context.time
            migration.reason = "\(id) went down"
            migrations[migration.id] = migration
            record(
                .migrationAborted, context, node: id, vm: migration.vm, migration: migration.id,
                "\(migration.id) of \(migration.vm) failed: \(id) went down")
        }
        for var vm in vms.values.sorted(by: { $0.id < $1.id }) where vm.owner == id {
            vm.owner = nil
            vm.epoch = vm.epoch.next
            vm.state = .pending
            vm.pendingReason = "its owner \(id) went down; waiting for failover"
            vms[vm.id] = vm
            record(
                .vmPending, context, node: id, vm: vm.id, "\(vm.id) (\(vm.name)) lost its owner \(id), which went down")
        }
        for var volume in volumes.values.sorted(by: { $0.id < $1.id })
        where volume.coordinator == id && volume.state == .online {
            volume.state = .offline
            volumes[volume.id] = volume
            record(
                .volumeOffline, context, node: id, volume: volume.id,
                "\(volume.id) is offline: its coordinator \(id) went down")
        }
        trimFinishedMigrations()
    }

    mutating func removeNode(_ id: NodeID, _ context: ApplyContext) throws(Rejection) -> CommandOutcome {
        let node = try knownNode(id)
        let owned = vms.values.filter { $0.owner == id }.map(\.id)
        guard owned.isEmpty else {
            throw .conflict("\(id) owns \(Self.listed(owned)); stop or move them before removing it")
        }
        let coordinated = volumes.values.filter { $0.coordinator == id }.map(\.id)
        guard coordinated.isEmpty else {
            throw .conflict("\(id) coordinates \(Self.listed(coordinated)); move their coordinators first")
        }
        let migrating = migrations.values.filter { $0.phase.isActive && $0.target == id }.map(\.id)
        guard migrating.isEmpty else {
            throw .conflict("\(id) is the target of \(Self.listed(migrating)); abort them or wait for them to end")
        }
        nodes[id] = nil
        // A VM's preferred owners are known nodes; a removed node drops out of every list.
        for var vm in vms.values.sorted(by: { $0.id < $1.id }) where vm.preferredOwners.contains(id) {
            vm.preferredOwners.removeAll { $0 == id }
            vms[vm.id] = vm
        }
        record(.nodeRemoved, context, node: id, "\(id) removed (it was \(node.state))")
        return .node(id, node.state)
    }

    /// Drops the oldest finished migrations beyond `finishedMigrationsKept`.
    mutating func trimFinishedMigrations() {
        let finished = migrations.values.filter { !$0.phase.isActive }.map(\.id).sorted()
        for id in finished.dropLast(Self.finishedMigrationsKept) { migrations[id] = nil }
    }
}
