// The invariants apply keeps (DESIGN.md §7), as a check tests and the simulator run after every command.
import ClusterModel

extension ClusterState {
    /// Every invariant the state breaks, described; empty when it keeps them all.
    ///
    /// With `previous` (the state before the last command) it also checks what must hold across a
    /// change: epochs never go down, an owner change bumps the epoch, ids and sequences only grow.
    public func invariantViolations(since previous: ClusterState? = nil) -> [String] {
        var violations: [String] = []
        let reserved = reservedMemory()

        for vm in vms.values.sorted(by: { $0.id < $1.id }) {
            if let owner = vm.owner {
                if let node = nodes[owner] {
                    if !node.state.canOwnVMs {
                        violations.append("\(vm.id) is owned by \(owner), which is \(node.state)")
                    }
                } else {
                    violations.append("\(vm.id) is owned by \(owner), which is not a known node")
                }
            }
            if (vm.owner != nil) != (vm.state == .running) {
                violations.append("\(vm.id) is \(vm.state) with owner \(vm.owner?.description ?? "none")")
            }
            if (vm.state == .stopped) != (vm.desiredState == .stopped) {
                violations.append("\(vm.id) is \(vm.state) but desired \(vm.desiredState)")
            }
            if (vm.state == .pending) != (vm.pendingReason != nil) {
                violations.append("\(vm.id) is \(vm.state) with pending reason \(vm.pendingReason ?? "none")")
            }
            if vm.id >= nextVMID { violations.append("\(vm.id) is not below the next VM id \(nextVMID)") }
            if volumes[vm.disk.volume] == nil {
                violations.append("\(vm.id)'s disk is on \(vm.disk.volume), which does not exist")
            }
            if let missing = vm.preferredOwners.first(where: { nodes[$0] == nil }) {
                violations.append("\(vm.id) prefers \(missing), which is not a known node")
            }
            if vm.memory.problem != nil { violations.append("\(vm.id) has inconsistent memory settings") }
        }
        let names = vms.values.map(\.name)
        if Set(names).count != names.count { violations.append("two VMs share a name") }

        for node in nodes.values.sorted(by: { $0.id < $1.id }) {
            let used = reserved[node.id] ?? 0
            if used > node.usableMemory {
                violations.append(
                    "\(node.id) has \(ByteCount(used)) startup memory reserved, more than its "
                        + "\(ByteCount(node.usableMemory)) usable")
            }
            let involved = activeMigrations(involving: node.id)
            if involved > migrationLimitPerNode {
                violations.append(
                    "\(node.id) takes part in \(involved) migrations, above the limit \(migrationLimitPerNode)")
            }
        }
        if let stray = reserved.keys.sorted().first(where: { nodes[$0] == nil }) {
            violations.append("memory is reserved on \(stray), which is not a known node")
        }

        var migratingVMs: Set<VMID> = []
        for migration in migrations.values.sorted(by: { $0.id < $1.id }) where migration.phase.isActive {
            if !migratingVMs.insert(migration.vm).inserted {
                violations.append("\(migration.vm) has more than one active migration")
            }
            guard let vm = vms[migration.vm] else {
                violations.append("\(migration.id) moves \(migration.vm), which does not exist")
                continue
            }
            if vm.owner != migration.source || vm.state != .running {
                violations.append(
                    "\(migration.id) moves \(vm.id) from \(migration.source), but it is \(vm.state) there")
            }
            if nodes[migration.target].map({ !$0.state.canOwnVMs }) ?? true {
                violations.append("\(migration.id)'s target \(migration.target) is not a node that can own VMs")
            }
        }
        for migration in migrations.values where migration.id >= nextMigrationID {
            violations.append("\(migration.id) is not below the next migration id \(nextMigrationID)")
        }

        for volume in volumes.values.sorted(by: { $0.id < $1.id }) {
            guard let coordinator = nodes[volume.coordinator] else {
                violations.append("\(volume.id)'s coordinator \(volume.coordinator) is not a known node")
                continue
            }
            if volume.state == .online && coordinator.state == .down {
                violations.append("\(volume.id) is online but its coordinator \(coordinator.id) is down")
            }
        }

        if events.count > Self.eventHistoryLimit + Self.eventHistorySlack {
            violations.append("\(events.count) events kept")
        }
        if zip(events, events.dropFirst()).contains(where: { $0.sequence + 1 != $1.sequence }) {
            violations.append("event sequences have gaps or go back")
        }
        if let last = events.last, last.sequence + 1 != nextEventSequence {
            violations.append("the last event is \(last.sequence) but the next sequence is \(nextEventSequence)")
        }

        if let previous {
            for vm in vms.values.sorted(by: { $0.id < $1.id }) {
                guard let before = previous.vms[vm.id] else { continue }
                if vm.epoch < before.epoch {
                    violations.append("\(vm.id)'s epoch went down: \(before.epoch) → \(vm.epoch)")
                }
                if vm.owner != before.owner && vm.epoch <= before.epoch {
                    violations.append("\(vm.id)'s owner changed without a new epoch")
                }
            }
            if nextVMID < previous.nextVMID || nextMigrationID < previous.nextMigrationID
                || nextEventSequence < previous.nextEventSequence
            {
                violations.append("an id counter or the event sequence went down")
            }
        }
        return violations
    }
}
