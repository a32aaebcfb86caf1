// Applying the migration commands: begin (with the target's admission), advance, finish (switchover), abort.
import ClusterModel

extension ClusterState {
    mutating func beginMigration(_ id: VMID, to target: NodeID, _ context: ApplyContext) throws(Rejection)
        -> CommandOutcome
    {
        let vm = try knownVM(id)
        guard vm.state == .running, let source = vm.owner else {
            throw .conflict("\(id) (\(vm.name)) is \(vm.state), not running; only a running VM migrates")
        }
        try checkNotMigrating(vm)
        let node = try knownNode(target)
        guard target != source else { throw .conflict("\(id) (\(vm.name)) already runs on \(target)") }
        try checkTakesNewWork(node, for: "incoming migrations")
        let limit = migrationLimitPerNode
        for party in [source, target] where activeMigrations(involving: party) >= limit {
            throw .conflict(
                "\(party) already takes part in \(activeMigrations(involving: party)) migrations, the limit "
                    + "(\(Setting.migrationLimitKey) = \(limit)); wait for one to end")
        }
        try checkFits(vm, on: node)
        let migration = MigrationRecord(
            id: nextMigrationID, vm: id, source: source, target: target, phase: .preparing,
            timings: [.preparing: context.time], reason: nil)
        migrations[migration.id] = migration
        nextMigrationID = MigrationID(nextMigrationID.rawValue + 1)
        record(
            .migrationStarted, context, node: target, vm: id, migration: migration.id,
            "\(migration.id): \(id) (\(vm.name)) \(source) → \(target)")
        return .migration(migration.id, vm: id, phase: .preparing)
    }

    mutating func advanceMigration(_ id: MigrationID, to phase: MigrationPhase, _ context: ApplyContext)
        throws(Rejection) -> CommandOutcome
    {
        guard phase == .copying || phase == .paused else {
            throw .invalid("a migration advances to copying or paused, not \(phase); finish or abort it to end it")
        }
        var migration = try knownMigration(id)
        try checkActive(migration)
        guard migration.phase.next == phase else {
            throw .conflict(
                "\(id) is \(migration.phase); it can advance only to \(migration.phase.next?.description ?? "nothing")")
        }
        migration.phase = phase
        migration.timings[phase] = context.time
        migrations[id] = migration
        record(
            .migrationAdvanced, context, node: migration.target, vm: migration.vm, migration: id, "\(id) is \(phase)")
        return .migration(id, vm: migration.vm, phase: phase)
    }

    /// The switchover commit: from here the target owns the VM and the source frees its memory.
    mutating func finishMigration(_ id: MigrationID, _ context: ApplyContext) throws(Rejection) -> CommandOutcome {
        var migration = try knownMigration(id)
        try checkActive(migration)
        guard migration.phase == .paused else {
            throw .conflict("\(id) is \(migration.phase); the switchover follows the paused phase")
        }
        guard var vm = vms[migration.vm], vm.owner == migration.source else {
            throw .conflict("\(migration.vm) no longer runs on \(migration.source); abort \(id)")
        }
        vm.owner = migration.target
        vm.epoch = vm.epoch.next
        vms[vm.id] = vm
        migration.phase = .completed
        migration.timings[.completed] = context.time
        migrations[id] = migration
        let downtime = migration.timings[.paused].map { context.time >= $0 ? ", paused \(context.time - $0) ms" : "" }
        record(
            .migrationFinished, context, node: migration.target, vm: vm.id, migration: id,
            "\(id): \(vm.id) (\(vm.name)) now runs on \(migration.target), epoch \(vm.epoch)\(downtime ?? "")")
        trimFinishedMigrations()
        return .migration(id, vm: vm.id, phase: .completed)
    }

    mutating func abortMigration(
        _ id: MigrationID, outcome: MigrationPhase, reason: String, _ context: ApplyContext
    ) throws(Rejection) -> CommandOutcome {
        guard outcome == .failed || outcome == .cancelled else {
            throw .invalid("a migration is aborted as failed or cancelled, not \(outcome)")
        }
        guard !reason.isEmpty else { throw .invalid("say why \(id) is \(outcome); the reason is shown to operators") }
        var migration = try knownMigration(id)
        try checkActive(migration)
        migration.phase = outcome
        migration.timings[outcome] = context.time
        migration.reason = reason
        migrations[id] = migration
        record(
            .migrationAborted, context, node: migration.source, vm: migration.vm, migration: id,
            "\(id) \(outcome): \(reason); \(migration.vm) stays on \(migration.source)")
        trimFinishedMigrations()
        return .migration(id, vm: migration.vm, phase: outcome)
    }

    private func checkActive(_ migration: MigrationRecord) throws(Rejection) {
        guard migration.phase.isActive else { throw .conflict("\(migration.id) already ended: \(migration.phase)") }
    }
}
