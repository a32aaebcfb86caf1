// Applying the VM commands: create, delete, start (placed or on a named node), stop, memory, owner.
import ClusterModel

extension ClusterState {
    mutating func createVM(_ spec: VMSpec, _ context: ApplyContext) throws(Rejection) -> CommandOutcome {
        if let problem = VMSpec.labelProblem(spec.name, what: "VM name") { throw .invalid(problem) }
        if let problem = spec.memory.problem { throw .invalid("\(spec.name): \(problem)") }
        if let problem = spec.workload.problem { throw .invalid("\(spec.name): \(problem)") }
        if let antiAffinityClass = spec.antiAffinityClass,
            let problem = VMSpec.labelProblem(antiAffinityClass, what: "anti-affinity class")
        {
            throw .invalid(problem)
        }
        if let problem = SharedPath.problem(spec.disk.file, what: "disk file") { throw .invalid(problem) }
        if case .qemu(let qemu) = spec.driver {
            if let problem = qemu.problem(memory: spec.memory) { throw .invalid("\(spec.name): \(problem)") }
            for volume in qemu.volumes { _ = try knownVolume(volume) }
        }
        guard Set(spec.preferredOwners).count == spec.preferredOwners.count else {
            throw .invalid("preferred owners \(spec.preferredOwners.map(\.description)) name a node twice")
        }
        if let other = vms.values.first(where: { $0.name == spec.name }) {
            throw .conflict("the name \(spec.name) is taken by \(other.id); pick another name")
        }
        for node in spec.preferredOwners { _ = try knownNode(node) }
        _ = try knownVolume(spec.disk.volume)
        if let other = vms.values.sorted(by: { $0.id < $1.id }).first(where: { $0.disk == spec.disk }) {
            throw .conflict("disk file \(spec.disk) belongs to \(other.id) (\(other.name)); give \(spec.name) its own")
        }
        let vm = VMRecord(id: nextVMID, spec: spec)
        vms[vm.id] = vm
        nextVMID = VMID(nextVMID.rawValue + 1)
        record(
            .vmCreated, context, volume: spec.disk.volume, vm: vm.id,
            "\(vm.id) (\(vm.name)) created: \(ByteCount(vm.memory.startup)) startup, disk \(vm.disk)")
        return .vm(VMOutcome(vm))
    }

    mutating func deleteVM(_ id: VMID, _ context: ApplyContext) throws(Rejection) -> CommandOutcome {
        let vm = try knownVM(id)
        guard vm.state == .stopped else { throw .conflict("\(id) (\(vm.name)) is \(vm.state); stop it first") }
        vms[id] = nil
        record(.vmDeleted, context, vm: id, "\(id) (\(vm.name)) deleted")
        return .vm(VMOutcome(vm))
    }

    mutating func startVM(_ id: VMID, on requested: NodeID?, _ context: ApplyContext) throws(Rejection)
        -> CommandOutcome
    {
        var vm = try knownVM(id)
        if vm.state == .running, let owner = vm.owner {
            throw .conflict("\(id) (\(vm.name)) is already running on \(owner)")
        }
        let target: NodeID
        if let requested {
            let node = try knownNode(requested)
            try checkTakesNewWork(node, for: "new VMs")
            try checkFits(vm, on: node)
            target = requested
        } else {
            switch placement(for: vm) {
            case .node(let node):
                target = node
            case .pending(let reason):
                let wasPending = vm.state == .pending
                vm.desiredState = .running
                vm.state = .pending
                vm.pendingReason = reason
                vms[id] = vm
                record(
                    .vmPending, context, vm: id,
                    "\(id) (\(vm.name)) \(wasPending ? "is still" : "is") pending: \(reason)")
                return .vm(VMOutcome(vm))
            }
        }
        vm.desiredState = .running
        vm.state = .running
        vm.owner = target
        vm.epoch = vm.epoch.next
        vm.pendingReason = nil
        vms[id] = vm
        record(.vmStarted, context, node: target, vm: id, "\(id) (\(vm.name)) started on \(target), epoch \(vm.epoch)")
        return .vm(VMOutcome(vm))
    }

    mutating func stopVM(_ id: VMID, _ context: ApplyContext) throws(Rejection) -> CommandOutcome {
        var vm = try knownVM(id)
        guard vm.state != .stopped else { throw .conflict("\(id) (\(vm.name)) is already stopped") }
        try checkNotMigrating(vm)
        let previousOwner = vm.owner
        if previousOwner != nil { vm.epoch = vm.epoch.next }
        vm.owner = nil
        vm.desiredState = .stopped
        vm.state = .stopped
        vm.pendingReason = nil
        vms[id] = vm
        record(
            .vmStopped, context, node: previousOwner, vm: id,
            "\(id) (\(vm.name)) stopped" + (previousOwner.map { " on \($0)" } ?? ""))
        return .vm(VMOutcome(vm))
    }

    /// A running VM's owner must still fit it with the new startup memory.
    mutating func setVMMemory(_ id: VMID, _ memory: MemorySettings, _ context: ApplyContext) throws(Rejection)
        -> CommandOutcome
    {
        var vm = try knownVM(id)
        if let problem = memory.problem { throw .invalid("\(vm.name): \(problem)") }
        try checkNotMigrating(vm)
        if let owner = vm.owner {
            guard let node = nodes[owner] else { throw .conflict("\(id)'s owner \(owner) is not a known node") }
            try checkFits(vm, startup: memory.startup, on: node)
        }
        let previous = vm.memory
        vm.memory = memory
        vms[id] = vm
        record(
            .vmMemoryChanged, context, node: vm.owner, vm: id,
            "\(id) (\(vm.name)) memory: startup \(ByteCount(previous.startup)) → \(ByteCount(memory.startup)), "
                + "minimum \(ByteCount(memory.minimum)), maximum \(ByteCount(memory.maximum)), "
                + "buffer \(memory.bufferPercent) %, priority \(memory.priority)")
        return .vm(VMOutcome(vm))
    }

    /// A new workload for the VM's guest; a running guest follows it from its next beat.
    mutating func setVMWorkload(_ id: VMID, _ workload: Workload, _ context: ApplyContext) throws(Rejection)
        -> CommandOutcome
    {
        var vm = try knownVM(id)
        if let problem = workload.problem { throw .invalid("\(vm.name): \(problem)") }
        vm.workload = workload
        vms[id] = vm
        record(.vmWorkloadChanged, context, node: vm.owner, vm: id, "\(id) (\(vm.name)) workload: \(workload)")
        return .vm(VMOutcome(vm))
    }

    mutating func setVMAutoConverge(_ id: VMID, _ on: Bool, _ context: ApplyContext) throws(Rejection)
        -> CommandOutcome
    {
        var vm = try knownVM(id)
        vm.autoConverge = on
        vms[id] = vm
        record(
            .vmAutoConvergeChanged, context, node: vm.owner, vm: id,
            "\(id) (\(vm.name)) auto-converge \(on ? "on" : "off")")
        return .vm(VMOutcome(vm))
    }

    /// What failover proposes: a new owner (epoch + 1), or none (pending) with the reason.
    mutating func setVMOwner(
        _ id: VMID, owner newOwner: NodeID?, expectedEpoch: Epoch, reason: String, _ context: ApplyContext
    ) throws(Rejection) -> CommandOutcome {
        var vm = try knownVM(id)
        guard vm.epoch == expectedEpoch else {
            throw .conflict(
                "\(id) (\(vm.name)) is at epoch \(vm.epoch), not \(expectedEpoch): the state changed since this was "
                    + "decided; decide again from the current state")
        }
        guard vm.desiredState == .running else {
            throw .conflict("\(id) (\(vm.name)) is stopped; start it instead of giving it an owner")
        }
        try checkNotMigrating(vm)
        let previousOwner = vm.owner
        if let newOwner {
            guard newOwner != previousOwner else { throw .conflict("\(newOwner) already owns \(id) (\(vm.name))") }
            let node = try knownNode(newOwner)
            try checkTakesNewWork(node, for: "new VMs")
            try checkFits(vm, on: node)
            vm.owner = newOwner
            vm.epoch = vm.epoch.next
            vm.state = .running
            vm.pendingReason = nil
            vms[id] = vm
            record(
                .vmOwnerChanged, context, node: newOwner, vm: id,
                "\(id) (\(vm.name)) owner \(previousOwner?.description ?? "none") → \(newOwner), epoch \(vm.epoch)"
                    + (reason.isEmpty ? "" : ": \(reason)"))
        } else {
            guard !reason.isEmpty else {
                throw .invalid("say why \(id) (\(vm.name)) is left without an owner; the reason is shown to operators")
            }
            if previousOwner != nil { vm.epoch = vm.epoch.next }
            vm.owner = nil
            vm.state = .pending
            vm.pendingReason = reason
            vms[id] = vm
            record(
                .vmPending, context, node: previousOwner, vm: id,
                "\(id) (\(vm.name)) owner \(previousOwner?.description ?? "none") → none: \(reason)")
        }
        return .vm(VMOutcome(vm))
    }

    func checkNotMigrating(_ vm: VMRecord) throws(Rejection) {
        if let migration = activeMigration(of: vm.id) {
            throw .conflict(
                "\(vm.id) (\(vm.name)) is migrating (\(migration.id) to \(migration.target), \(migration.phase)); "
                    + "wait for it to end or abort it first")
        }
    }
}
