// The replicated state machine every node applies committed commands to (DESIGN.md §7).
public import ClusterModel

/// The cluster's replicated state: named settings, member addresses, nodes, volumes, VMs,
/// migrations and a bounded event history.
///
/// Pure and deterministic: `apply` depends only on the state and the command, so every node that
/// applies the same log reaches the same state. Commands are validated here, at apply time,
/// against the committed state — never only by the node that proposed them.
public struct ClusterState: Hashable, Sendable {
    /// Named settings (`flotilla config set/get/list`); keys are `Setting.validate`d.
    public internal(set) var settings: [String: String] = [:]
    /// Where each member added through the API is reached. (The founding members' addresses come
    /// from their configuration; Raft's own log holds who votes.)
    public internal(set) var memberAddresses: [NodeID: MemberAddresses] = [:]
    /// The nodes that run VMs, by id.
    public internal(set) var nodes: [NodeID: NodeRecord] = [:]
    /// The Cluster Shared Volumes, by id.
    public internal(set) var volumes: [VolumeID: VolumeRecord] = [:]
    /// The VMs, by id.
    public internal(set) var vms: [VMID: VMRecord] = [:]
    /// The active migrations and the most recent finished ones (`finishedMigrationsKept`).
    public internal(set) var migrations: [MigrationID: MigrationRecord] = [:]
    /// The most recent events, oldest first: at least the last `eventHistoryLimit` (all of them while
    /// fewer happened), at most `eventHistoryLimit + eventHistorySlack`; sequences grow by one.
    public internal(set) var events: [ClusterEvent] = []
    /// The id the next created VM gets; greater than every id ever given.
    public internal(set) var nextVMID: VMID = 1
    /// The id the next migration gets; greater than every id ever given.
    public internal(set) var nextMigrationID: MigrationID = 1
    /// The sequence number of the next event; greater than every sequence ever given.
    public internal(set) var nextEventSequence: UInt64 = 1

    /// How many events the state keeps at least; older ones are dropped (their sequence numbers are
    /// not reused).
    public static let eventHistoryLimit = 1000
    /// How far the history may grow past `eventHistoryLimit` before the oldest are dropped in one
    /// go: dropping one event per command moved the whole array on every write (a measurable share
    /// of a node's CPU under load); dropping a batch every `eventHistorySlack` commands does not.
    public static let eventHistorySlack = 250
    /// How many finished migrations the state keeps for inspection; older ones are dropped.
    public static let finishedMigrationsKept = 100

    public init() {}

    /// Applies one committed log entry and returns the answer for its client.
    public mutating func apply(_ envelope: CommandEnvelope) -> CommandResult {
        apply(envelope.command, proposedAt: envelope.proposedAt)
    }

    /// Applies one committed command, proposed at `proposedAt` (the proposer's wall clock,
    /// milliseconds since 1970, which is all `apply` knows of time), and returns the answer.
    ///
    /// Every handler validates before it changes anything, so a rejected command leaves the
    /// state exactly as it was.
    public mutating func apply(_ command: ClusterCommand, proposedAt: UInt64) -> CommandResult {
        let context = ApplyContext(time: proposedAt, command: command.kind)
        do throws(Rejection) {
            return .applied(try execute(command, context))
        } catch {
            return .rejected(error)
        }
    }

    private mutating func execute(_ command: ClusterCommand, _ context: ApplyContext) throws(Rejection)
        -> CommandOutcome
    {
        switch command {
        case .setSetting(let key, let value): return try setSetting(key, value, context)
        case .deleteSetting(let key): return try deleteSetting(key, context)
        case .registerMember(let id, let addresses): return try registerMember(id, addresses, context)
        case .registerNode(let registration): return try registerNode(registration, context)
        case .setNodeState(let node, let state, let reason, let expected):
            return try setNodeState(node, state, reason: reason, expected: expected, context)
        case .removeNode(let node): return try removeNode(node, context)
        case .createVolume(let volume, let path, let coordinator):
            return try createVolume(volume, path: path, coordinator: coordinator, context)
        case .moveVolume(let volume, let coordinator, let reason):
            return try moveVolume(volume, to: coordinator, reason: reason, context)
        case .deleteVolume(let volume): return try deleteVolume(volume, context)
        case .createVM(let spec): return try createVM(spec, context)
        case .deleteVM(let vm): return try deleteVM(vm, context)
        case .startVM(let vm, let node): return try startVM(vm, on: node, context)
        case .stopVM(let vm): return try stopVM(vm, context)
        case .setVMMemory(let vm, let memory): return try setVMMemory(vm, memory, context)
        case .setVMOwner(let vm, let owner, let expectedEpoch, let reason):
            return try setVMOwner(vm, owner: owner, expectedEpoch: expectedEpoch, reason: reason, context)
        case .setVMWorkload(let vm, let workload): return try setVMWorkload(vm, workload, context)
        case .setVMAutoConverge(let vm, let on): return try setVMAutoConverge(vm, on, context)
        case .recordMigrationStats(let migration, let stats): return try recordMigrationStats(migration, stats, context)
        case .beginMigration(let vm, let target, let reason):
            return try beginMigration(vm, to: target, reason: reason, context)
        case .advanceMigration(let migration, let phase): return try advanceMigration(migration, to: phase, context)
        case .finishMigration(let migration): return try finishMigration(migration, context)
        case .abortMigration(let migration, let outcome, let reason):
            return try abortMigration(migration, outcome: outcome, reason: reason, context)
        }
    }

    // MARK: Settings and member addresses

    private mutating func setSetting(_ key: String, _ value: String, _ context: ApplyContext) throws(Rejection)
        -> CommandOutcome
    {
        if let problem = Setting.problem(key: key, value: value) { throw .invalid(problem) }
        if key == Setting.migrationLimitKey {
            guard let limit = Int(value), Setting.migrationLimitRange.contains(limit) else {
                throw .invalid(
                    "\(key) must be a whole number in \(Setting.migrationLimitRange), got \"\(value)\"")
            }
            try checkMigrationLimit(limit, key: key)
        }
        if key == Setting.clusterMigrationLimitKey {
            guard let limit = Int(value), Setting.clusterMigrationLimitRange.contains(limit) else {
                throw .invalid(
                    "\(key) must be a whole number in \(Setting.clusterMigrationLimitRange), got \"\(value)\"")
            }
        }
        if let rule = Setting.wholeNumbers[key], Int(value).map(rule.range.contains) != true {
            throw .invalid(
                "\(key) must be a whole number in \(rule.range), got \"\(value)\" (the default is \(rule.default))")
        }
        if key == Setting.rebalanceMemoryKey, value != "on", value != "off" {
            throw .invalid("\(key) is on or off, got \"\(value)\" (the default is off)")
        }
        if key == Setting.balanceIntervalKey, Setting.balanceInterval(value) == nil {
            throw .invalid(
                "\(key) must be a whole number of milliseconds in \(Setting.balanceIntervalRange), got \"\(value)\"")
        }
        let previous = settings.updateValue(value, forKey: key)
        // Worded when read: a long value's text is not kept with it (`EventDetail`).
        record(.settingChanged, context, recorded: .setting(key, value))
        // A raised limit lets queued migrations start.
        if key == Setting.migrationLimitKey || key == Setting.clusterMigrationLimitKey {
            startQueuedMigrations(context)
        }
        return .previous(previous)
    }

    private mutating func deleteSetting(_ key: String, _ context: ApplyContext) throws(Rejection) -> CommandOutcome {
        if let problem = Setting.problem(key: key, value: "") { throw .invalid(problem) }
        guard settings[key] != nil else { throw .notFound("no setting named \(key)") }
        if key == Setting.migrationLimitKey { try checkMigrationLimit(Setting.defaultMigrationLimit, key: key) }
        let previous = settings.removeValue(forKey: key)
        record(.settingDeleted, context, "\(key) deleted")
        return .previous(previous)
    }

    /// A lower limit may not strand migrations already running above it.
    private func checkMigrationLimit(_ limit: Int, key: String) throws(Rejection) {
        for node in nodes.keys.sorted() {
            let running = activeMigrations(involving: node)
            if running > limit {
                throw .conflict(
                    "\(node) takes part in \(running) migrations now; wait for them to end or set \(key) to at least \(running)"
                )
            }
        }
    }

    private mutating func registerMember(_ id: NodeID, _ addresses: MemberAddresses, _ context: ApplyContext)
        throws(Rejection) -> CommandOutcome
    {
        // Sorted, so every node names the same other member even if a damaged state had several.
        if let (other, _) = memberAddresses.sorted(by: { $0.key < $1.key }).first(where: {
            $0.key != id && $0.value.peer == addresses.peer
        }) {
            throw .conflict("peer address \(addresses.peer) already belongs to \(other); give \(id) its own")
        }
        let previous = memberAddresses.updateValue(addresses, forKey: id)
        record(.memberRegistered, context, node: id, "peer \(addresses.peer), client \(addresses.client)")
        return .previous(previous.map { "\($0.peer) \($0.client)" })
    }

    // MARK: Shared by the handlers

    /// The same state for a new cluster whose members are at `addresses` (`flotilla snapshot
    /// restore`): settings, nodes, volumes, VMs, migrations and events as they are, and only the
    /// new members' addresses, since the old cluster's mean nothing to the new one. Not a command:
    /// it seeds a cluster before its first entry, on every member alike.
    public func movedTo(memberAddresses addresses: [NodeID: MemberAddresses]) -> ClusterState {
        var moved = self
        moved.memberAddresses = addresses
        return moved
    }

    /// The migrations limit per node (`migration.max-per-node`, default 2).
    public var migrationLimitPerNode: Int {
        // A value written before the rule existed may not parse; the default holds then.
        settings[Setting.migrationLimitKey].flatMap { Int($0) }.flatMap {
            Setting.migrationLimitRange.contains($0) ? $0 : nil
        } ?? Setting.defaultMigrationLimit
    }

    /// The limit of running migrations in the whole cluster (`migration.max-per-cluster`, default 5).
    public var migrationLimitPerCluster: Int {
        settings[Setting.clusterMigrationLimitKey].flatMap { Int($0) }.flatMap {
            Setting.clusterMigrationLimitRange.contains($0) ? $0 : nil
        } ?? Setting.defaultClusterMigrationLimit
    }

    /// Records an event; past `eventHistoryLimit + eventHistorySlack` drops the oldest down to the limit.
    mutating func record(
        _ kind: EventKind, _ context: ApplyContext, node: NodeID? = nil, volume: VolumeID? = nil, vm: VMID? = nil,
        migration: MigrationID? = nil, _ detail: String
    ) {
        record(kind, context, node: node, volume: volume, vm: vm, migration: migration, recorded: .text(detail))
    }

    mutating func record(
        _ kind: EventKind, _ context: ApplyContext, node: NodeID? = nil, volume: VolumeID? = nil, vm: VMID? = nil,
        migration: MigrationID? = nil, recorded: EventDetail
    ) {
        events.append(
            ClusterEvent(
                sequence: nextEventSequence, time: context.time, kind: kind, node: node, volume: volume, vm: vm,
                migration: migration, recorded: recorded, command: context.command))
        nextEventSequence += 1
        if events.count > Self.eventHistoryLimit + Self.eventHistorySlack {
            events.removeFirst(events.count - Self.eventHistoryLimit)
        }
    }

    /// The events after sequence `since`, oldest first (what `GET /v1/events?since=N` pages through).
    /// If `since` is older than the oldest kept event, the answer starts at the oldest kept one.
    public func events(since: UInt64) -> ArraySlice<ClusterEvent> {
        let first = events.firstIndex(where: { $0.sequence > since }) ?? events.endIndex
        return events[first...]
    }

    func knownNode(_ id: NodeID) throws(Rejection) -> NodeRecord {
        guard let node = nodes[id] else {
            throw .notFound(
                nodes.isEmpty
                    ? "no node \(id) is registered, and no node is yet; register it first"
                    : "no node \(id) is registered; the nodes are \(Self.listed(nodes.keys))")
        }
        return node
    }

    func knownVolume(_ id: VolumeID) throws(Rejection) -> VolumeRecord {
        guard let volume = volumes[id] else {
            throw .notFound(
                volumes.isEmpty
                    ? "no volume \(id) exists, and no volume does yet; create it first"
                    : "no volume \(id) exists; the volumes are \(Self.listed(volumes.keys))")
        }
        return volume
    }

    func knownVM(_ id: VMID) throws(Rejection) -> VMRecord {
        guard let vm = vms[id] else { throw .notFound("no VM \(id) exists; list the VMs to find its id") }
        return vm
    }

    func knownMigration(_ id: MigrationID) throws(Rejection) -> MigrationRecord {
        guard let migration = migrations[id] else {
            throw .notFound("no migration \(id) is known (finished ones are kept only for a while)")
        }
        return migration
    }

    /// Up to eight ids in order, for messages.
    /// A reason travels only when someone gave one: an empty string would record "()" in the events.
    static func checkReason(_ reason: String?, of command: String) throws(Rejection) {
        if let reason, reason.isEmpty {
            throw .invalid("the reason of \(command) is empty; give a reason or leave it out")
        }
    }

    /// The suffix an event's detail gets for a command's reason: ` (by operator)`, or nothing.
    static func because(_ reason: String?) -> String {
        reason.map { " (\($0))" } ?? ""
    }

    static func listed<ID: Comparable & CustomStringConvertible>(_ ids: some Collection<ID>) -> String {
        let sorted = ids.sorted()
        let shown = sorted.prefix(8).map(\.description).joined(separator: ", ")
        return sorted.count > 8 ? shown + ", …" : shown
    }

    /// The active migration of a VM, if any (there is at most one).
    public func activeMigration(of vm: VMID) -> MigrationRecord? {
        migrations.values.filter { $0.vm == vm && $0.phase.isActive }.min(by: { $0.id < $1.id })
    }

    /// How many running migrations (not queued) a node is the source or the target of.
    public func activeMigrations(involving node: NodeID) -> Int {
        migrations.values.count { $0.phase.isRunning && ($0.source == node || $0.target == node) }
    }

    /// How many migrations are running in the whole cluster (not queued).
    public var runningMigrations: Int { migrations.values.count { $0.phase.isRunning } }

    /// The startup memory committed on each node: the VMs it owns plus the VMs migrating to it.
    /// `excluding` leaves one VM out (to ask whether that VM would fit somewhere).
    public func reservedMemory(excluding excluded: VMID? = nil) -> [NodeID: UInt64] {
        var reserved: [NodeID: UInt64] = [:]
        for vm in vms.values where vm.id != excluded {
            if let owner = vm.owner { reserved[owner, default: 0].addSaturating(vm.memory.startup) }
        }
        for migration in migrations.values where migration.phase.isActive && migration.vm != excluded {
            if let vm = vms[migration.vm] { reserved[migration.target, default: 0].addSaturating(vm.memory.startup) }
        }
        return reserved
    }

    /// A node's usable memory not reserved by its VMs and incoming migrations (0 for an unknown node).
    public func freeMemory(on node: NodeID, excluding vm: VMID? = nil) -> UInt64 {
        guard let record = nodes[node] else { return 0 }
        let reserved = reservedMemory(excluding: vm)[node] ?? 0
        return record.usableMemory > reserved ? record.usableMemory - reserved : 0
    }

    /// Throws `insufficientMemory` unless `vm` fits on `node` by its startup memory.
    func checkFits(_ vm: VMRecord, startup: UInt64? = nil, on node: NodeRecord) throws(Rejection) {
        let needed = startup ?? vm.memory.startup
        let free = freeMemory(on: node.id, excluding: vm.id)
        guard needed <= free else {
            throw .insufficientMemory(
                "\(vm.id) (\(vm.name)) needs \(ByteCount(needed)) startup memory; \(node.id) has \(ByteCount(free)) free "
                    + "of \(ByteCount(node.usableMemory)); pick another node, or stop or move VMs off \(node.id)")
        }
    }

    /// Throws `conflict` unless the node may be given a VM, a migration or a volume it does not have yet.
    func checkTakesNewWork(_ node: NodeRecord, for what: String) throws(Rejection) {
        guard node.state.takesNewWork else {
            throw .conflict("\(node.id) is \(node.state) and takes no \(what); resume it or pick a node that is up")
        }
    }
}

/// What a handler knows about the command it applies besides its fields.
struct ApplyContext {
    /// The proposer's wall clock, milliseconds since 1970.
    let time: UInt64
    let command: CommandKind
}

extension UInt64 {
    /// Sums of startup memory saturate instead of trapping, whatever a damaged entry holds.
    mutating func addSaturating(_ other: UInt64) {
        let (sum, overflow) = addingReportingOverflow(other)
        self = overflow ? .max : sum
    }
}

/// Where one member is reached.
public struct MemberAddresses: Hashable, Sendable {
    /// Its peer RPC (Raft) address.
    public var peer: Endpoint
    /// Its client API address.
    public var client: Endpoint

    public init(peer: Endpoint, client: Endpoint) {
        self.peer = peer
        self.client = client
    }
}

/// The rules for setting names and values.
public enum Setting {
    public static let maxKeyLength = 128
    /// The setting that bounds concurrent migrations per node (as source or target).
    public static let migrationLimitKey = "migration.max-per-node"
    public static let defaultMigrationLimit = 2
    public static let migrationLimitRange = 1...64
    /// The setting that bounds running migrations in the whole cluster; more wait, queued.
    public static let clusterMigrationLimitKey = "migration.max-per-cluster"
    public static let defaultClusterMigrationLimit = 5
    public static let clusterMigrationLimitRange = 1...1024
    public static let maxValueBytes = 64 << 10
    /// How often every node's agent balances memory between its VMs, in milliseconds.
    public static let balanceIntervalKey = "memory.balance-interval-ms"
    public static let defaultBalanceInterval = Duration.milliseconds(100)
    public static let balanceIntervalRange = 10...60_000

    /// Live migration's policy (docs/live-migration.md): the downtime target, the round and time
    /// limits of a copy that does not converge, and the page streams in parallel.
    public static let migrationDowntimeKey = "migration.downtime-ms"
    public static let migrationRoundsKey = "migration.max-rounds"
    public static let migrationTimeLimitKey = "migration.time-limit-s"
    public static let migrationStreamsKey = "migration.streams"
    /// The most a migration's pre-copy rounds put on the link, in MiB/s; 0: no limit.
    public static let migrationBandwidthKey = "migration.max-bandwidth-mib-s"
    /// Rebalancing by live migration (`off` or `on`): the leader moves a VM off a node whose VMs
    /// stay in warning, to a node with room.
    public static let rebalanceMemoryKey = "rebalance.memory"
    /// How long a node's VMs must stay in warning before the leader rebalances, in seconds.
    public static let rebalanceAfterKey = "rebalance.after-s"

    /// The settings that hold a whole number: their range and default.
    public static let wholeNumbers: [String: (range: ClosedRange<Int>, default: Int)] = [
        migrationDowntimeKey: (1...60_000, 50),
        migrationRoundsKey: (1...1000, 10),
        migrationTimeLimitKey: (1...86_400, 60),
        migrationStreamsKey: (1...16, 4),
        migrationBandwidthKey: (0...1_000_000, 0),
        rebalanceAfterKey: (1...86_400, 30),
    ]

    /// The value of a whole-number setting in `settings`: its default when unset or out of range
    /// (a value written before its rule existed).
    public static func wholeNumber(_ key: String, in settings: [String: String]) -> Int {
        guard let rule = wholeNumbers[key] else { preconditionFailure("\(key) is not a whole-number setting") }
        return settings[key].flatMap { Int($0) }.flatMap { rule.range.contains($0) ? $0 : nil } ?? rule.default
    }

    /// Whether rebalancing by live migration is on (`rebalance.memory` = `on`).
    public static func rebalancesMemory(_ settings: [String: String]) -> Bool { settings[rebalanceMemoryKey] == "on" }

    /// The balance interval a value of `balanceIntervalKey` gives, or nil for one out of range.
    public static func balanceInterval(_ value: String) -> Duration? {
        guard let milliseconds = Int(value), balanceIntervalRange.contains(milliseconds) else { return nil }
        return .milliseconds(milliseconds)
    }

    /// Why a key or value is not acceptable, or nil when it is.
    public static func problem(key: String, value: String) -> String? {
        guard !key.isEmpty, key.utf8.count <= maxKeyLength else {
            return "a setting name must be 1–\(maxKeyLength) characters, got \(key.utf8.count)"
        }
        // Bytes, not Characters: Unicode property lookups per character cost a few percent of a
        // leader's CPU when every write checks its key. And the contiguous bytes, not `utf8`'s
        // iterator (~35 instructions a byte; every node checks every write's key).
        var name = key
        let wellFormed = name.withUTF8 { bytes in
            guard let first = bytes.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) else { return false }
            return bytes.allSatisfy(isNameByte)
        }
        guard wellFormed else {
            return "setting name \"\(key)\" must start with a letter and use only a–z, 0–9, '.', '-', '_' or '/'"
        }
        guard value.utf8.count <= maxValueBytes else {
            return "the value of \(key) is \(value.utf8.count) bytes; the limit is \(maxValueBytes)"
        }
        return nil
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "/"): true
        default: false
        }
    }
}
