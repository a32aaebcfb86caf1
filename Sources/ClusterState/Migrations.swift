// Applying the migration commands: begin (with the target's admission, queued past the limits), advance, finish (switchover), abort, stats.
public import ClusterModel

extension ClusterState {
    mutating func beginMigration(_ id: VMID, to target: NodeID, reason: String?, _ context: ApplyContext)
        throws(Rejection) -> CommandOutcome
    {
        try Self.checkReason(reason, of: "beginMigration")
        let vm = try knownVM(id)
        guard vm.state == .running, let source = vm.owner else {
            throw .conflict("\(id) (\(vm.name)) is \(vm.state), not running; only a running VM migrates")
        }
        try checkNotMigrating(vm)
        let node = try knownNode(target)
        guard target != source else { throw .conflict("\(id) (\(vm.name)) already runs on \(target)") }
        try checkTakesNewWork(node, for: "incoming migrations")
        try checkFits(vm, on: node)
        // Past a limit it waits its turn: it starts when a running migration ends.
        let busy = slotProblem(source: source, target: target)
        let phase: MigrationPhase = busy == nil ? .preparing : .queued
        let migration = MigrationRecord(
            id: nextMigrationID, vm: id, source: source, target: target, phase: phase,
            timings: [phase: context.time], reason: busy)
        migrations[migration.id] = migration
        nextMigrationID = MigrationID(nextMigrationID.rawValue + 1)
        record(
            .migrationStarted, context, node: target, vm: id, migration: migration.id,
            "\(migration.id): \(id) (\(vm.name)) \(source) → \(target)" + Self.because(reason)
                + (busy.map { ", queued: \($0)" } ?? ""))
        return .migration(migration.id, vm: id, phase: phase)
    }

    /// Why a migration between the two nodes must wait for a slot, or nil when it may run now.
    private func slotProblem(source: NodeID, target: NodeID) -> String? {
        let limit = migrationLimitPerNode
        for party in [source, target] where activeMigrations(involving: party) >= limit {
            return "\(party) takes part in \(activeMigrations(involving: party)) migrations, the limit "
                + "(\(Setting.migrationLimitKey) = \(limit))"
        }
        if runningMigrations >= migrationLimitPerCluster {
            return "\(runningMigrations) migrations run in the cluster, the limit "
                + "(\(Setting.clusterMigrationLimitKey) = \(migrationLimitPerCluster))"
        }
        return nil
    }

    /// Starts queued migrations, oldest first, while the limits allow: a migration that ends (or
    /// a node that goes down) frees a slot. A queued migration whose VM no longer runs on its
    /// source, or whose target no longer takes new work, fails instead.
    mutating func startQueuedMigrations(_ context: ApplyContext) {
        for id in migrations.keys.sorted() {
            guard var migration = migrations[id], migration.phase == .queued else { continue }
            let vm = vms[migration.vm]
            let problem: String? =
                vm?.owner != migration.source || vm?.state != .running
                ? "\(migration.vm) no longer runs on \(migration.source)"
                : nodes[migration.target].map { $0.state.takesNewWork } != true
                    ? "\(migration.target) no longer takes incoming migrations" : nil
            if let problem {
                migration.phase = .failed
                migration.timings[.failed] = context.time
                migration.reason = problem
                migrations[id] = migration
                record(
                    .migrationAborted, context, node: migration.source, vm: migration.vm, migration: id,
                    "\(id) failed while queued: \(problem)")
                continue
            }
            guard slotProblem(source: migration.source, target: migration.target) == nil else { continue }
            migration.phase = .preparing
            migration.timings[.preparing] = context.time
            migration.reason = nil
            migrations[id] = migration
            record(
                .migrationAdvanced, context, node: migration.target, vm: migration.vm, migration: id,
                "\(id) is preparing (its turn came)")
        }
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
        migration.reason = nil
        migrations[id] = migration
        let downtime = migration.timings[.paused].map { context.time >= $0 ? ", paused \(context.time - $0) ms" : "" }
        record(
            .migrationFinished, context, node: migration.target, vm: vm.id, migration: id,
            "\(id): \(vm.id) (\(vm.name)) now runs on \(migration.target), epoch \(vm.epoch)\(downtime ?? "")")
        startQueuedMigrations(context)
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
        startQueuedMigrations(context)
        trimFinishedMigrations()
        return .migration(id, vm: migration.vm, phase: outcome)
    }

    /// Stats from the source (after each round, and final when it gives up) or the target (final,
    /// once the guest runs there) replace what was recorded, unless that is final already. The
    /// target's final stats of a completed migration are its announcement: an event says where the
    /// VM runs now and how long it was paused.
    mutating func recordMigrationStats(_ id: MigrationID, _ stats: MigrationStats, _ context: ApplyContext)
        throws(Rejection) -> CommandOutcome
    {
        var migration = try knownMigration(id)
        guard stats.rounds.count <= MigrationStats.maxRounds else {
            throw .invalid("\(stats.rounds.count) rounds; a record keeps at most \(MigrationStats.maxRounds)")
        }
        if migration.stats?.totalMilliseconds != nil {
            throw .conflict("\(id) already has its final stats")
        }
        migration.stats = stats
        migrations[id] = migration
        if migration.phase == .completed, stats.totalMilliseconds != nil, let downtime = stats.downtimeMicroseconds {
            let name = vms[migration.vm].map { " (\($0.name))" } ?? ""
            record(
                .migrationAnnounced, context, node: migration.target, vm: migration.vm, migration: id,
                "\(id): \(migration.vm)\(name) runs on \(migration.target) and announced it; paused "
                    + "\(Self.milliseconds(downtime)), \(stats.totalMilliseconds!) ms in all, "
                    + "\(ByteCount(stats.totalBytes)) sent in \(stats.rounds.count) rounds and the last copy")
        }
        return .migration(id, vm: migration.vm, phase: migration.phase)
    }

    /// `12.345 ms` from microseconds.
    static func milliseconds(_ microseconds: UInt64) -> String {
        let fraction = String(microseconds % 1000)
        return "\(microseconds / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction) ms"
    }

    private func checkActive(_ migration: MigrationRecord) throws(Rejection) {
        guard migration.phase.isActive else { throw .conflict("\(migration.id) already ended: \(migration.phase)") }
    }
}

extension ClusterState {
    /// Whether migration `id` has ended as far as this state knows: its record says so, or the
    /// state allocated it and has since trimmed its record. One this state has not allocated yet
    /// has not ended: the state is older than it (a node may answer a migration's prepare from a
    /// newer state than a pass of its agent began with, and must keep what it made for it).
    public func migrationHasEnded(_ id: MigrationID) -> Bool {
        if let record = migrations[id] { return !record.phase.isActive }
        return id < nextMigrationID
    }
}
