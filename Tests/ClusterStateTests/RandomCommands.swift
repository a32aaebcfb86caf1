// A seeded generator of command sequences that mostly make sense and sometimes do not.
import ClusterModel
import ClusterState

/// Draws commands against the current state: ids are mostly ones the state knows (so commands
/// often apply), sometimes unknown, and values are sometimes out of their rules (so rejections
/// are exercised too).
struct RandomCommands {
    var random: SeededGenerator

    init(seed: UInt64) { random = SeededGenerator(seed: seed) }

    private static let names = ["Finance", "Engineering", "Sales", "DC1", "DC2", "Web", "Mail", "Build"]
    private static let sizes: [UInt64] = [256 * mib, 512 * mib, gib, 2 * gib, 3 * gib]

    private mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &random) < percent }

    private mutating func pick<T>(_ values: [T]) -> T { values.randomElement(using: &random)! }

    private mutating func node(_ state: ClusterState) -> NodeID {
        if !state.nodes.isEmpty && chance(90) { return pick(state.nodes.keys.sorted()) }
        return NodeID(UInt64.random(in: 1...6, using: &random))
    }

    private mutating func vm(_ state: ClusterState) -> VMID {
        if !state.vms.isEmpty && chance(90) { return pick(state.vms.keys.sorted()) }
        return VMID(UInt64.random(in: 1...(state.nextVMID.rawValue + 1), using: &random))
    }

    private mutating func migration(_ state: ClusterState) -> MigrationRecord? {
        let active = state.migrations.values.filter(\.phase.isActive).sorted { $0.id < $1.id }
        if !active.isEmpty && chance(90) { return pick(active) }
        return state.migrations.isEmpty || chance(30) ? nil : pick(state.migrations.values.sorted { $0.id < $1.id })
    }

    private mutating func migrationID(_ migration: MigrationRecord?, _ state: ClusterState) -> MigrationID {
        migration?.id ?? MigrationID(UInt64.random(in: 1...(state.nextMigrationID.rawValue + 1), using: &random))
    }

    private mutating func volume(_ state: ClusterState) -> VolumeID {
        if !state.volumes.isEmpty && chance(85) { return pick(state.volumes.keys.sorted()) }
        return chance(95) ? pick(["csv1", "csv2", "csv3"]) : "Bad_Volume"
    }

    private mutating func memory() -> MemorySettings {
        let startup = pick(Self.sizes)
        if chance(10) { return MemorySettings(startup: startup, minimum: startup * 2, maximum: startup) }
        return MemorySettings(
            startup: startup, minimum: chance(50) ? startup : startup / 2, maximum: startup * pick([1, 2, 4]),
            bufferPercent: chance(95) ? pick([5, 20, 100, 2000]) : 3, priority: chance(95) ? pick([0, 50, 100]) : 101)
    }

    /// A workload, valid or (rarely) not: each demand shape, dirtying rates from none to the limit.
    private mutating func workload() -> Workload {
        let size = pick(Self.sizes)
        let demand: Workload.Demand
        switch Int.random(in: 0..<4, using: &random) {
        case 0: demand = .constant(chance(97) ? size : MemorySettings.largestBytes + 1)
        case 1: demand = .ramp(from: size, to: pick(Self.sizes), over: .seconds(chance(97) ? 60 : 0))
        case 2: demand = .periodic(low: size / 2, high: chance(97) ? size : size / 4, period: .seconds(30))
        default:
            let times: [Int64] = chance(95) ? [0, 10, 30] : [0, 30, 10]
            demand = .trace(times.map { Workload.TracePoint(at: .seconds($0), demand: pick(Self.sizes)) })
        }
        return Workload(demand: demand, dirtyPagesPerSecond: pick([0, 500, Workload.maxDirtyPagesPerSecond]))
    }

    /// The optional reason of node and volume commands: mostly given, sometimes absent, rarely empty.
    private mutating func reason() -> String? {
        chance(95) ? pick([nil, "by operator", "failover: its coordinator n1 is down"]) : ""
    }

    mutating func next(for state: ClusterState) -> ClusterCommand {
        var roll = Int.random(in: 0..<100, using: &random)
        // Commands about VMs or migrations mostly need one to exist; create one first more often.
        if (30..<74).contains(roll) && state.vms.isEmpty && chance(70) { roll = 20 }
        if (74..<96).contains(roll) && !state.migrations.values.contains(where: \.phase.isActive) && chance(70) {
            roll = 62
        }
        switch roll {
        case 0..<3:
            let id = node(state)
            return .registerNode(
                NodeRegistration(
                    id: id, addresses: addresses(chance(95) ? id.rawValue : UInt64.random(in: 1...4, using: &random)),
                    role: pick(NodeRole.allCases), usableMemory: pick([2 * gib, 4 * gib, 8 * gib, 100])))
        case 3..<12:
            return .setNodeState(
                node(state), pick([.up, .up, .down, .draining, .paused]), reason: reason(),
                expected: pick([nil, nil, .draining, .up]))
        case 12..<13: return .removeNode(node(state))
        case 13..<17:
            let id: VolumeID = chance(95) ? pick(["csv1", "csv2", "csv3"]) : "Bad_Volume"
            return .createVolume(
                id, path: chance(90) ? "volumes/\(id)" : pick(["/abs", "a/../b", "volumes"]), coordinator: node(state))
        case 17..<19: return .moveVolume(volume(state), coordinator: node(state), reason: reason())
        case 19..<20: return .deleteVolume(volume(state))
        case 20..<30:
            let owners = (0..<Int.random(in: 0...2, using: &random)).map { _ in node(state) }
            let name = pick(Self.names)
            return .createVM(
                VMSpec(
                    name: name, memory: memory(), restartPriority: pick(RestartPriority.allCases),
                    preferredOwners: owners, antiAffinityClass: pick([nil, nil, "dc", "web"]),
                    disk: DiskFile(volume: volume(state), file: chance(95) ? "\(name).disk" : "../\(name)"),
                    workload: chance(50) ? nil : workload()))
        case 30..<32: return .deleteVM(vm(state))
        case 32..<46: return .startVM(vm(state), on: chance(50) ? nil : node(state))
        case 46..<52: return .stopVM(vm(state))
        case 52..<54: return .setVMMemory(vm(state), memory())
        case 54..<55: return .setVMWorkload(vm(state), workload())
        case 55..<62:
            let id = vm(state)
            let epoch = state.vms[id].map { chance(85) ? $0.epoch : $0.epoch.next } ?? 0
            return .setVMOwner(
                id, owner: chance(75) ? node(state) : nil, expectedEpoch: epoch, reason: chance(95) ? "failover" : "")
        case 62..<74:
            return .beginMigration(
                vm(state), target: node(state), reason: pick([nil, "by operator", "drain of n2", "", nil]))
        case 74..<84:
            let migration = migration(state)
            let phase = migration?.phase.next.flatMap { chance(85) ? $0 : nil }
            return .advanceMigration(migrationID(migration, state), to: phase ?? pick([.copying, .paused, .completed]))
        case 84..<92: return .finishMigration(migrationID(migration(state), state))
        case 92..<95:
            return .abortMigration(
                migrationID(migration(state), state), outcome: pick([.failed, .cancelled, .cancelled, .copying]),
                reason: chance(95) ? "did not converge" : "")
        case 95..<96:
            if chance(50) { return .setVMAutoConverge(vm(state), chance(50)) }
            let rounds = (0..<Int.random(in: 0...3, using: &random)).map { _ in
                MigrationStats.Round(bytes: pick(Self.sizes), milliseconds: 20, dirtyBytes: 4096, throttlePercent: 0)
            }
            return .recordMigrationStats(
                migrationID(migration(state), state),
                MigrationStats(
                    rounds: rounds, memoryBytes: pick(Self.sizes), totalBytes: pick(Self.sizes),
                    downtimeMicroseconds: chance(50) ? 3000 : nil, totalMilliseconds: chance(50) ? 900 : nil))
        case 96..<98:
            return .setSetting(
                key: pick([
                    Setting.migrationLimitKey, Setting.clusterMigrationLimitKey, Setting.migrationDowntimeKey,
                    Setting.rebalanceMemoryKey,
                ]),
                value: pick(["1", "2", "3", "0", "on", "off", "70000"]))
        default: return .deleteSetting(key: pick([Setting.migrationLimitKey, "other"]))
        }
    }
}
