// createVM … setVMOwner and the migration commands: applied and refused, with epochs and timings.
import ClusterModel
import ClusterState
import Testing

@Test func createdVMsGetGrowingIdsAndStartStopped() {
    var cluster = TestCluster.threeNodes()
    let spec = VMSpec(
        name: "Finance", memory: memory(startup: gib), restartPriority: .high, preferredOwners: [2, 1],
        antiAffinityClass: "sql", disk: DiskFile(volume: "csv1", file: "finance/disk.img"))
    guard case .vm(let outcome) = cluster.applied(.createVM(spec)) else { return }
    #expect(outcome == VMOutcome(id: 1, name: "Finance", state: .stopped, owner: nil, epoch: 0, pendingReason: nil))
    let vm = cluster.vm(1)
    #expect(vm?.restartPriority == .high)
    #expect(vm?.preferredOwners == [2, 1])
    #expect(vm?.antiAffinityClass == "sql")
    #expect(vm?.desiredState == .stopped)
    #expect(cluster.createVM("Sales") == 2)
    // Ids are never reused, even after a delete.
    cluster.applied(.deleteVM(2))
    #expect(cluster.createVM("Sales") == 3)
}

@Test func createVMRefusesBadSpecs() {
    var cluster = TestCluster.threeNodes()
    cluster.createVM("Finance")
    func spec(
        name: String = "New", memory settings: MemorySettings = memory(startup: gib), owners: [NodeID] = [],
        antiAffinityClass: String? = nil, disk: DiskFile = DiskFile(volume: "csv1", file: "new.disk")
    ) -> ClusterCommand {
        .createVM(
            VMSpec(
                name: name, memory: settings, preferredOwners: owners, antiAffinityClass: antiAffinityClass, disk: disk)
        )
    }
    cluster.rejected(spec(name: ""), .invalid, "VM name")
    cluster.rejected(spec(name: " padded"), .invalid, "leading/trailing")
    cluster.rejected(spec(name: "Finance"), .conflict, "taken by vm1")
    cluster.rejected(
        spec(memory: MemorySettings(startup: gib, minimum: 2 * gib, maximum: 4 * gib)), .invalid, "minimum ≤ startup")
    cluster.rejected(spec(memory: MemorySettings(startup: gib, minimum: 0, maximum: 4 * gib)), .invalid, "more than 0")
    cluster.rejected(
        spec(memory: MemorySettings(startup: gib, minimum: gib, maximum: gib, bufferPercent: 1)), .invalid, "buffer")
    cluster.rejected(
        spec(memory: MemorySettings(startup: gib, minimum: gib, maximum: gib, priority: 200)), .invalid, "priority")
    cluster.rejected(spec(owners: [1, 1]), .invalid, "twice")
    cluster.rejected(spec(owners: [1, 8]), .notFound, "no node n8")
    cluster.rejected(spec(antiAffinityClass: ""), .invalid, "anti-affinity class")
    cluster.rejected(spec(disk: DiskFile(volume: "csv9", file: "x")), .notFound, "no volume csv9")
    cluster.rejected(spec(disk: DiskFile(volume: "csv1", file: "../escape")), .invalid, "'..'")
    cluster.rejected(spec(disk: DiskFile(volume: "csv1", file: "Finance.disk")), .conflict, "belongs to vm1")
}

@Test func startingOnANamedNodeChecksItAndBumpsTheEpoch() {
    var cluster = TestCluster.threeNodes(usableMemory: 4 * gib)
    let finance = cluster.createVM("Finance", startup: 3 * gib)
    let sales = cluster.createVM("Sales", startup: 2 * gib)
    cluster.rejected(.startVM(99, on: nil), .notFound, "no VM vm99")
    cluster.rejected(.startVM(finance, on: 9), .notFound, "no node n9")
    #expect(cluster.start(finance, on: 2) == 2)
    #expect(cluster.vm(finance)?.epoch == 1)
    #expect(cluster.vm(finance)?.desiredState == .running)
    cluster.rejected(.startVM(finance, on: 3), .conflict, "already running on n2")
    let rejection = cluster.rejected(.startVM(sales, on: 2), .insufficientMemory)
    #expect(
        rejection?.reason
            == "vm2 (Sales) needs 2.0 GiB startup memory; n2 has 1.0 GiB free of 4.0 GiB; pick another node, or stop or move VMs off n2"
    )
    #expect(rejection?.kind.httpStatus == 409)
    cluster.applied(.setNodeState(3, .down))
    cluster.rejected(.startVM(sales, on: 3), .conflict, "n3 is down")
    #expect(cluster.state.events.last { $0.kind == .vmStarted }?.detail == "vm1 (Finance) started on n2, epoch 1")
}

@Test func stoppingClearsTheOwnerAndBumpsTheEpoch() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance")
    cluster.rejected(.stopVM(finance), .conflict, "already stopped")
    cluster.rejected(.stopVM(42), .notFound)
    cluster.start(finance, on: 1)
    guard case .vm(let outcome) = cluster.applied(.stopVM(finance)) else { return }
    #expect(
        outcome == VMOutcome(id: finance, name: "Finance", state: .stopped, owner: nil, epoch: 2, pendingReason: nil))
    #expect(cluster.state.freeMemory(on: 1) == 8 * gib)
    // A pending VM stops without an owner change, so without a new epoch.
    cluster.applied(.setNodeState(2, .down))
    cluster.applied(.setNodeState(3, .down))
    cluster.applied(.setNodeState(1, .draining))
    cluster.start(finance)
    #expect(cluster.vm(finance)?.state == .pending)
    cluster.applied(.stopVM(finance))
    #expect(cluster.vm(finance)?.epoch == 2)
}

@Test func aVMIsDeletedOnlyWhenStopped() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance")
    cluster.start(finance, on: 1)
    cluster.rejected(.deleteVM(finance), .conflict, "is running; stop it first")
    cluster.rejected(.deleteVM(7), .notFound)
    cluster.applied(.stopVM(finance))
    cluster.applied(.deleteVM(finance))
    #expect(cluster.state.vms.isEmpty)
    // The name is free again.
    #expect(cluster.createVM("Finance") == 2)
}

@Test func memorySettingsChangeWithinTheOwnersCapacity() {
    var cluster = TestCluster.threeNodes(usableMemory: 4 * gib)
    let finance = cluster.createVM("Finance", startup: gib)
    let sales = cluster.createVM("Sales", startup: gib)
    cluster.start(finance, on: 1)
    cluster.start(sales, on: 1)
    let bigger = MemorySettings(
        startup: 3 * gib + 512 * mib, minimum: gib, maximum: 4 * gib, bufferPercent: 50, priority: 80)
    cluster.rejected(.setVMMemory(finance, bigger), .insufficientMemory, "needs 3.5 GiB startup memory; n1 has 3.0 GiB")
    cluster.rejected(.setVMMemory(finance, MemorySettings(startup: gib, minimum: 2 * gib, maximum: gib)), .invalid)
    cluster.rejected(.setVMMemory(9, bigger), .notFound)
    cluster.applied(.stopVM(sales))
    cluster.applied(.setVMMemory(finance, bigger))
    #expect(cluster.vm(finance)?.memory == bigger)
    // A stopped VM's settings change without any capacity check.
    cluster.applied(.setVMMemory(sales, MemorySettings(startup: 16 * gib, minimum: gib, maximum: 16 * gib)))
    cluster.applied(.beginMigration(finance, target: 2))
    cluster.rejected(.setVMMemory(finance, bigger), .conflict, "migrating")
}

@Test func failoverGivesANewOwnerOnlyAtTheExpectedEpoch() {
    var cluster = TestCluster.threeNodes(usableMemory: 4 * gib)
    let finance = cluster.createVM("Finance", startup: 3 * gib)
    let sales = cluster.createVM("Sales", startup: 2 * gib)
    cluster.rejected(.setVMOwner(finance, owner: 1, expectedEpoch: 0, reason: ""), .conflict, "is stopped")
    cluster.start(finance, on: 1)
    cluster.start(sales, on: 2)
    cluster.applied(.setNodeState(1, .down))
    #expect(cluster.vm(finance)?.epoch == 2)
    // A decision made before the node went down is stale.
    cluster.rejected(.setVMOwner(finance, owner: 3, expectedEpoch: 1, reason: "failover"), .conflict, "epoch 2, not 1")
    cluster.rejected(.setVMOwner(finance, owner: 2, expectedEpoch: 2, reason: "failover"), .insufficientMemory)
    cluster.rejected(.setVMOwner(finance, owner: 1, expectedEpoch: 2, reason: "failover"), .conflict, "n1 is down")
    cluster.rejected(.setVMOwner(finance, owner: 9, expectedEpoch: 2, reason: "failover"), .notFound)
    cluster.rejected(.setVMOwner(finance, owner: nil, expectedEpoch: 2, reason: ""), .invalid, "say why")
    guard case .vm(let moved) = cluster.applied(.setVMOwner(finance, owner: 3, expectedEpoch: 2, reason: "n1 down"))
    else { return }
    #expect(moved.owner == 3 && moved.epoch == 3 && moved.state == .running && moved.pendingReason == nil)
    cluster.rejected(.setVMOwner(finance, owner: 3, expectedEpoch: 3, reason: "again"), .conflict, "already owns")
    // No owner: pending with the reason, and a new epoch since the owner changed.
    cluster.applied(.setVMOwner(sales, owner: nil, expectedEpoch: 1, reason: "throttled: 3 failovers this hour"))
    #expect(cluster.vm(sales)?.state == .pending)
    #expect(cluster.vm(sales)?.epoch == 2)
    #expect(cluster.vm(sales)?.pendingReason == "throttled: 3 failovers this hour")
    cluster.rejected(.setVMOwner(99, owner: nil, expectedEpoch: 0, reason: "x"), .notFound)
}

@Test func aMigrationRunsThroughItsPhasesAndSwitchesTheOwner() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance")
    cluster.start(finance, on: 1)
    let begun = cluster.now + 1000
    #expect(cluster.applied(.beginMigration(finance, target: 2)) == .migration(1, vm: finance, phase: .preparing))
    // The target's memory is reserved while the migration runs.
    #expect(cluster.state.freeMemory(on: 2) == 7 * gib)
    cluster.rejected(.beginMigration(finance, target: 3), .conflict, "migrating (mig1 to n2")
    cluster.rejected(.stopVM(finance), .conflict, "migrating")
    cluster.rejected(.finishMigration(1), .conflict, "follows the paused phase")
    cluster.rejected(.advanceMigration(1, to: .paused), .conflict, "only to copying")
    cluster.rejected(.advanceMigration(1, to: .completed), .invalid, "copying or paused")
    cluster.rejected(.advanceMigration(5, to: .copying), .notFound, "no migration mig5")
    #expect(cluster.applied(.advanceMigration(1, to: .copying)) == .migration(1, vm: finance, phase: .copying))
    cluster.applied(.advanceMigration(1, to: .paused))
    let switched = cluster.now + 1000
    #expect(cluster.applied(.finishMigration(1)) == .migration(1, vm: finance, phase: .completed))
    #expect(cluster.vm(finance)?.owner == 2)
    #expect(cluster.vm(finance)?.epoch == 2)
    #expect(cluster.state.freeMemory(on: 1) == 8 * gib)
    let migration = cluster.state.migrations[1]
    #expect(migration?.timings[.preparing] == begun)
    #expect(migration?.timings[.completed] == switched)
    #expect(migration?.timings.count == 4)
    cluster.rejected(.finishMigration(1), .conflict, "already ended")
    cluster.rejected(.abortMigration(1, outcome: .failed, reason: "late"), .conflict, "already ended")
    #expect(cluster.state.events.last?.detail == "mig1: vm1 (Finance) now runs on n2, epoch 2, paused 1000 ms")
}

@Test func beginMigrationChecksTheVMTheTargetAndTheLimit() {
    var cluster = TestCluster.threeNodes(usableMemory: 4 * gib)
    cluster.registerNodes([4], usableMemory: 4 * gib)
    let big = cluster.createVM("Big", startup: 3 * gib)
    let vms = (1...3).map { cluster.createVM("Small\($0)", startup: 512 * mib) }
    cluster.rejected(.beginMigration(big, target: 2), .conflict, "stopped, not running")
    cluster.rejected(.beginMigration(77, target: 2), .notFound)
    cluster.start(big, on: 1)
    cluster.start(vms[0], on: 2)
    cluster.rejected(.beginMigration(big, target: 9), .notFound, "no node n9")
    cluster.rejected(.beginMigration(big, target: 1), .conflict, "already runs on n1")
    cluster.applied(.setNodeState(3, .paused))
    cluster.rejected(.beginMigration(big, target: 3), .conflict, "n3 is paused")
    cluster.start(vms[1], on: 2)
    cluster.start(vms[2], on: 2)
    cluster.rejected(.beginMigration(big, target: 2), .insufficientMemory, "n2 has 2.5 GiB free")
    // The limit (2 by default) counts a node as source and as target; past it a migration queues.
    cluster.applied(.beginMigration(vms[0], target: 1))
    cluster.applied(.beginMigration(vms[1], target: 4))
    cluster.applied(.beginMigration(vms[2], target: 4))
    let queued = cluster.state.migrations.values.first { $0.vm == vms[2] }!
    #expect(queued.phase == .queued && queued.reason?.hasPrefix("n2 takes part in 2 migrations") == true)
    cluster.rejected(
        .setSetting(key: Setting.migrationLimitKey, value: "1"), .conflict, "set migration.max-per-node to at least 2")
    cluster.rejected(.deleteSetting(key: Setting.migrationLimitKey), .notFound)
    // A raised limit starts it.
    cluster.applied(.setSetting(key: Setting.migrationLimitKey, value: "3"))
    #expect(cluster.state.migrations[queued.id]?.phase == .preparing)
}

@Test func queuedMigrationsStartInTheirTurnAndFailWhenTheirVMLeftTheSource() {
    var cluster = TestCluster.threeNodes()
    let vms = ["A", "B", "C"].map { cluster.createVM($0, startup: gib) }
    for vm in vms { cluster.start(vm, on: 1) }
    cluster.applied(.setSetting(key: Setting.migrationLimitKey, value: "1"))
    cluster.applied(.beginMigration(vms[0], target: 2))
    cluster.applied(.beginMigration(vms[1], target: 3))
    cluster.applied(.beginMigration(vms[2], target: 3))
    let ids = cluster.state.migrations.keys.sorted()
    #expect(ids.map { cluster.state.migrations[$0]!.phase } == [.preparing, .queued, .queued])
    // The first ends: the oldest queued one starts; the other waits on.
    cluster.applied(.abortMigration(ids[0], outcome: .cancelled, reason: "by operator"))
    #expect(ids.map { cluster.state.migrations[$0]!.phase } == [.cancelled, .preparing, .queued])
    // The cluster-wide limit queues too.
    cluster.applied(.setSetting(key: Setting.migrationLimitKey, value: "4"))
    #expect(cluster.state.migrations[ids[2]]?.phase == .preparing)
    cluster.applied(.setSetting(key: Setting.clusterMigrationLimitKey, value: "1"))
    cluster.applied(.beginMigration(vms[0], target: 2))
    let last = cluster.state.migrations.keys.max()!
    #expect(cluster.state.migrations[last]?.phase == .queued)
    #expect(cluster.state.migrations[last]?.reason?.contains("migration.max-per-cluster = 1") == true)
    // Its source goes down: its queued migration fails with the others.
    cluster.applied(.setNodeState(1, .down))
    #expect(cluster.state.migrations.values.allSatisfy { !$0.phase.isActive })
}

@Test func anAbortedMigrationLeavesTheVMOnItsSource() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance")
    cluster.start(finance, on: 1)
    cluster.applied(.beginMigration(finance, target: 2))
    cluster.rejected(.abortMigration(1, outcome: .completed, reason: "x"), .invalid, "failed or cancelled")
    cluster.rejected(.abortMigration(1, outcome: .failed, reason: ""), .invalid, "say why")
    cluster.rejected(.abortMigration(3, outcome: .failed, reason: "x"), .notFound)
    #expect(
        cluster.applied(.abortMigration(1, outcome: .failed, reason: "did not converge in 60 s"))
            == .migration(1, vm: finance, phase: .failed))
    #expect(cluster.vm(finance)?.owner == 1)
    #expect(cluster.vm(finance)?.epoch == 1)
    #expect(cluster.state.migrations[1]?.reason == "did not converge in 60 s")
    #expect(cluster.state.freeMemory(on: 2) == 8 * gib)
    // The VM may migrate again.
    #expect(cluster.applied(.beginMigration(finance, target: 3)) == .migration(2, vm: finance, phase: .preparing))
}

@Test func finishedMigrationsAndEventsAreBounded() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance")
    cluster.start(finance, on: 1)
    let rounds = ClusterState.finishedMigrationsKept + 5
    for round in 1...rounds {
        cluster.applied(.beginMigration(finance, target: round % 2 == 1 ? 2 : 3))
        cluster.applied(.abortMigration(MigrationID(UInt64(round)), outcome: .cancelled, reason: "test"))
    }
    #expect(cluster.state.migrations.count == ClusterState.finishedMigrationsKept)
    #expect(cluster.state.migrations.keys.min() == MigrationID(6))
    let (limit, slack) = (ClusterState.eventHistoryLimit, ClusterState.eventHistorySlack)
    var counts: [Int] = []
    for index in 0..<(limit + 2 * slack) {
        cluster.applied(.setSetting(key: "k", value: "\(index)"))
        counts.append(cluster.state.events.count)
    }
    // Never fewer than the limit once that many happened, never more than limit + slack, and the
    // oldest are dropped in batches.
    #expect(counts.dropFirst(limit).allSatisfy { (limit...(limit + slack)).contains($0) })
    #expect(counts.contains(limit + slack) && counts.last! < limit + slack)
    let last = cluster.state.nextEventSequence - 1
    #expect(cluster.state.events.last?.sequence == last)
    #expect(cluster.state.events.first?.sequence == last - UInt64(cluster.state.events.count) + 1)
    #expect(cluster.state.events(since: last - 3).map(\.sequence) == [last - 2, last - 1, last])
    #expect(cluster.state.events(since: 0).count == cluster.state.events.count)
    #expect(cluster.state.events(since: last).isEmpty)
}

@Test func statsReplaceEachOtherUntilFinalAndTheTargetsFinalStatsAnnounceTheVM() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance")
    cluster.start(finance, on: 1)
    cluster.applied(.beginMigration(finance, target: 2, reason: "by operator"))
    #expect(cluster.state.events.last?.detail == "mig1: vm1 (Finance) n1 → n2 (by operator)")
    cluster.rejected(.beginMigration(finance, target: 3, reason: ""), .invalid, "reason of beginMigration is empty")
    cluster.applied(.advanceMigration(1, to: .copying))
    let round = MigrationStats.Round(bytes: 64 << 20, milliseconds: 80, dirtyBytes: 1 << 20, throttlePercent: 0)
    // The source records each round as it ends; the latest replaces the earlier.
    cluster.applied(.recordMigrationStats(1, MigrationStats(rounds: [round], memoryBytes: gib, totalBytes: 64 << 20)))
    cluster.applied(
        .recordMigrationStats(1, MigrationStats(rounds: [round, round], memoryBytes: gib, totalBytes: 128 << 20)))
    #expect(cluster.state.migrations[1]?.stats?.rounds.count == 2)
    cluster.applied(.advanceMigration(1, to: .paused))
    cluster.applied(.finishMigration(1))
    let final = MigrationStats(
        rounds: [round, round], memoryBytes: gib, totalBytes: 130 << 20, downtimeMicroseconds: 12_345,
        totalMilliseconds: 900)
    cluster.applied(.recordMigrationStats(1, final))
    let announced = cluster.state.events.last
    #expect(announced?.kind == .migrationAnnounced)
    #expect(
        announced?.detail
            == "mig1: vm1 (Finance) runs on n2 and announced it; paused 12.345 ms, 900 ms in all, 130 MiB sent in 2 rounds and the last copy"
    )
    // A late round from the source cannot undo the final stats.
    cluster.rejected(
        .recordMigrationStats(1, MigrationStats(rounds: [round], memoryBytes: gib, totalBytes: 64 << 20)), .conflict,
        "already has its final stats")
    #expect(cluster.state.migrations[1]?.stats == final)
}

@Test func migrationPolicySettingsAreWholeNumbersInRangeAndRebalancingIsOnOrOff() {
    var cluster = TestCluster.threeNodes()
    cluster.applied(.setSetting(key: Setting.migrationDowntimeKey, value: "300"))
    #expect(Setting.wholeNumber(Setting.migrationDowntimeKey, in: cluster.state.settings) == 300)
    cluster.rejected(.setSetting(key: Setting.migrationDowntimeKey, value: "0"), .invalid, "1...60000")
    cluster.rejected(.setSetting(key: Setting.migrationRoundsKey, value: "ten"), .invalid, "the default is 10")
    cluster.rejected(.setSetting(key: Setting.migrationStreamsKey, value: "17"), .invalid, "1...16")
    cluster.rejected(.setSetting(key: Setting.migrationBandwidthKey, value: "-1"), .invalid, "0...1000000")
    #expect(Setting.wholeNumber(Setting.migrationBandwidthKey, in: [:]) == 0, "no limit unless one is set")
    cluster.applied(.setSetting(key: Setting.migrationBandwidthKey, value: "100"))
    #expect(Setting.wholeNumber(Setting.migrationBandwidthKey, in: cluster.state.settings) == 100)
    cluster.rejected(.setSetting(key: Setting.rebalanceMemoryKey, value: "yes"), .invalid, "on or off")
    cluster.applied(.setSetting(key: Setting.rebalanceMemoryKey, value: "on"))
    #expect(Setting.rebalancesMemory(cluster.state.settings))
    #expect(Setting.wholeNumber(Setting.migrationTimeLimitKey, in: [:]) == 60)
    #expect(Setting.wholeNumber(Setting.migrationTimeLimitKey, in: [Setting.migrationTimeLimitKey: "-5"]) == 60)
}

/// VMs whose guests run in QEMU: what they boot is checked when they are created, they survive
/// the log's and the snapshot's formats, and they live-migrate as simulated guests do.
@Suite struct QEMUVMCommandTests {
    static let mib: UInt64 = 1 << 20

    func spec(_ name: String, memory: UInt64 = 256 << 20, qemu: QEMUGuestSpec) -> VMSpec {
        VMSpec(
            name: name, memory: MemorySettings(startup: memory, minimum: memory, maximum: memory),
            disk: DiskFile(volume: "csv1", file: "\(name).disk"), driver: .qemu(qemu))
    }

    let boot = QEMUGuestSpec(
        vcpus: 2, kernel: DiskFile(volume: "csv1", file: "boot/vmlinuz"),
        initrd: DiskFile(volume: "csv1", file: "boot/initramfs.cpio.gz"), kernelArguments: "quiet")

    @Test func aQEMUVMIsCreatedWithWhatItBootsAndItsRecordSurvivesTheSnapshot() throws {
        var cluster = TestCluster.threeNodes()
        guard case .vm(let outcome) = cluster.applied(.createVM(spec("web", qemu: boot))) else { return }
        #expect(cluster.vm(outcome.id)?.driver == .qemu(boot))
        #expect(try ClusterState(snapshot: cluster.state.snapshot) == cluster.state)
    }

    @Test func whatAQEMUVMBootsIsCheckedWhenItIsCreated() {
        var cluster = TestCluster.threeNodes()
        var bad = boot
        bad.vcpus = 0
        cluster.rejected(.createVM(spec("a", qemu: bad)), .invalid, "vcpus must be 1 to 64, not 0")
        cluster.rejected(
            .createVM(spec("b", memory: 256 * Self.mib + 1, qemu: boot)), .invalid, "a whole number of MiB")
        cluster.rejected(.createVM(spec("c", memory: 16 * Self.mib, qemu: boot)), .invalid, "at least 32 MiB")
        bad = boot
        bad.kernelArguments = "quiet\ninit=/bin/sh"
        cluster.rejected(.createVM(spec("d", qemu: bad)), .invalid, "without control characters")
        bad = boot
        bad.kernel = DiskFile(volume: "csv1", file: "../../etc/passwd")
        cluster.rejected(.createVM(spec("e", qemu: bad)), .invalid, "kernel")
        bad = boot
        bad.initrd = DiskFile(volume: "csv9", file: "boot/initrd")
        cluster.rejected(.createVM(spec("f", qemu: bad)), .notFound, "csv9")
    }

    @Test func aQEMUVMWithoutAKernelBootsItsDiskWhoseFormatSurvivesTheLogAndTheSnapshot() throws {
        var cluster = TestCluster.threeNodes()
        let image = QEMUGuestSpec(vcpus: 1, diskFormat: .qcow2, devices: ["virtio-rng", "watchdog"])
        guard case .vm(let outcome) = cluster.applied(.createVM(spec("img", qemu: image))) else { return }
        #expect(cluster.vm(outcome.id)?.driver == .qemu(image))
        #expect(try ClusterState(snapshot: cluster.state.snapshot) == cluster.state)
        let entry = CommandEnvelope(proposedAt: 3, command: .createVM(spec("img", qemu: image)))
        #expect(try CommandEnvelope(decoding: entry.encoded) == entry)
        cluster.rejected(
            .createVM(spec("a", qemu: QEMUGuestSpec(initrd: DiskFile(volume: "csv1", file: "initrd")))), .invalid,
            "go with a kernel")
        cluster.rejected(
            .createVM(spec("b", qemu: QEMUGuestSpec(kernelArguments: "quiet"))), .invalid, "go with a kernel")
        cluster.rejected(
            .createVM(spec("c", qemu: QEMUGuestSpec(devices: ["virtio-net"]))), .invalid,
            "device virtio-net is not one a guest may have (virtio-rng, watchdog)")
        cluster.rejected(
            .createVM(spec("d", qemu: QEMUGuestSpec(devices: ["watchdog", "watchdog"]))), .invalid, "named twice")
    }

    /// Before entry version 9 a QEMU driver always had a kernel and a raw disk (layout 1).
    @Test func aVersionEightEntryWithAQEMUDriverReadsAsAKernelGuestOnARawDisk() throws {
        let today = CommandEnvelope(proposedAt: 3, command: .createVM(spec("web", qemu: boot)))
        let entry = today.encoded
        // Today: layout 2, vcpus (2), 1 (it has a kernel), the kernel, …, the arguments, 0 (raw)
        // last of all. Layout 1 has neither the kernel's flag nor the format.
        var kernel = ByteWriter()
        kernel.write(Array("csv1".utf8))
        kernel.write(Array("boot/vmlinuz".utf8))
        let start = try #require(entry.indices.first { entry[$0...].starts(with: [2, 2, 1] + kernel.bytes) })
        #expect(Array(entry.suffix(2)) == [0, 0], "raw, no devices")
        var old = Array(entry.dropLast(2))
        old.remove(at: start + 2)
        old[start] = 1
        old[0] = 8
        #expect(try CommandEnvelope(decoding: old) == today)
    }

    @Test func aQEMUVMLiveMigratesThroughTheSamePhasesAndTheSwitchoverGivesItTheNextEpoch() throws {
        var cluster = TestCluster.threeNodes()
        guard case .vm(let outcome) = cluster.applied(.createVM(spec("web", qemu: boot))) else { return }
        cluster.start(outcome.id, on: 1)
        let epoch = try #require(cluster.vm(outcome.id)).epoch
        guard
            case .migration(let id, _, .preparing) = cluster.applied(
                .beginMigration(outcome.id, target: 2, reason: nil))
        else { return }
        cluster.applied(.advanceMigration(id, to: .copying))
        cluster.applied(.advanceMigration(id, to: .paused))
        cluster.applied(.finishMigration(id))
        #expect(cluster.vm(outcome.id)?.owner == 2)
        #expect(cluster.vm(outcome.id)?.epoch == epoch.next)
        #expect(cluster.vm(outcome.id)?.driver == .qemu(boot))
    }
}

@Test func aMigrationHasEndedByItsRecordOrOnceItsTrimmedNeverBeforeTheStateKnowsIt() {
    var cluster = TestCluster.threeNodes()
    let finance = cluster.createVM("Finance")
    cluster.start(finance, on: 1)
    let before = cluster.state
    cluster.applied(.beginMigration(finance, target: 2))
    // A state from before mig1 was begun does not take it for over: a target that answered its
    // prepare from a newer state keeps what it made for it.
    #expect(!before.migrationHasEnded(1))
    #expect(!cluster.state.migrationHasEnded(1))
    cluster.applied(.abortMigration(1, outcome: .failed, reason: "the test"))
    #expect(cluster.state.migrationHasEnded(1))
    // Trimmed from the history (its record gone), it still counts as ended.
    for _ in 0..<ClusterState.finishedMigrationsKept {
        let id = cluster.state.nextMigrationID
        cluster.applied(.beginMigration(finance, target: 2))
        cluster.applied(.abortMigration(id, outcome: .failed, reason: "the test"))
    }
    #expect(cluster.state.migrations[1] == nil)
    #expect(cluster.state.migrationHasEnded(1))
    #expect(!cluster.state.migrationHasEnded(cluster.state.nextMigrationID))
}
