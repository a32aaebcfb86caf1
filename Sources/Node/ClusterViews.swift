// The JSON shapes the client API answers with for nodes, volumes, VMs, migrations and events.
import ClusterModel
import ClusterState

/// A node record as the API shows it; memory in bytes.
public struct NodeView: Codable, Sendable, Equatable {
    public var id: String
    /// `up`, `draining`, `paused` or `down`.
    public var state: String
    /// `voter` or `learner`, as the node last registered itself.
    public var role: String
    public var peerAddress: String
    public var clientAddress: String
    public var usableMemory: UInt64
    /// Startup memory of the VMs it owns plus that of the VMs migrating to it.
    public var reservedMemory: UInt64
    public var freeMemory: UInt64
    /// The names of the VMs it owns, sorted.
    public var vms: [String]

    init(_ node: NodeRecord, in state: ClusterState) {
        id = node.id.description
        self.state = node.state.description
        role = node.role.description
        peerAddress = node.addresses.peer.description
        clientAddress = node.addresses.client.description
        usableMemory = node.usableMemory
        reservedMemory = state.reservedMemory()[node.id] ?? 0
        freeMemory = state.freeMemory(on: node.id)
        vms = state.vms.values.filter { $0.owner == node.id }.map(\.name).sorted()
    }
}

/// A Cluster Shared Volume as the API shows it.
public struct VolumeView: Codable, Sendable, Equatable {
    public var id: String
    public var path: String
    public var coordinator: String
    /// `online` or `offline`.
    public var state: String
    /// The names of the VMs whose disks are on it, sorted.
    public var vms: [String]
    /// Nodes whose direct path to it is broken, so their I/O to it goes through the coordinator.
    /// The nodes' own facts, gathered when volumes are asked for on their own (`GET /v1/volumes`,
    /// `GET /v1/volumes/{id}`); absent elsewhere.
    public var redirected: [String]?
    /// Why its coordinator refuses to serve it (its metadata failed validation), while it does.
    public var coordinatorProblem: String?
    /// Nodes (not down) that did not tell how they reach it within half a second.
    public var accessUnknown: [String]?

    init(_ volume: VolumeRecord, in state: ClusterState) {
        id = volume.id.rawValue
        path = volume.path
        coordinator = volume.coordinator.description
        self.state = volume.state.description
        vms = state.vms.values.filter { $0.disk.volume == volume.id }.map(\.name).sorted()
    }
}

/// A VM's dynamic-memory settings: bytes and percent.
public struct MemoryView: Codable, Sendable, Equatable {
    public var startup: UInt64
    public var minimum: UInt64
    public var maximum: UInt64
    /// Percent kept above demand.
    public var buffer: Int
    public var priority: Int

    init(_ memory: MemorySettings) {
        startup = memory.startup
        minimum = memory.minimum
        maximum = memory.maximum
        buffer = memory.bufferPercent
        priority = memory.priority
    }
}

/// A VM as the API shows it.
public struct VMView: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    /// `stopped`, `running` or `pending`.
    public var state: String
    /// `running` or `stopped`: what the operator asked for.
    public var desiredState: String
    public var owner: String?
    public var epoch: UInt64
    /// Why a pending VM has no owner.
    public var pendingReason: String?
    public var memory: MemoryView
    /// `high`, `medium`, `low` or `none`.
    public var restartPriority: String
    public var preferredOwners: [String]
    public var antiAffinityClass: String?
    /// The disk's volume and its file on that volume.
    public var volume: String
    public var diskFile: String
    /// The VM's active migration, if one is running.
    public var migration: String?

    init(_ vm: VMRecord, in state: ClusterState) {
        id = vm.id.description
        name = vm.name
        self.state = vm.state.description
        desiredState = vm.desiredState.description
        owner = vm.owner?.description
        epoch = vm.epoch.rawValue
        pendingReason = vm.pendingReason
        memory = MemoryView(vm.memory)
        restartPriority = vm.restartPriority.description
        preferredOwners = vm.preferredOwners.map(\.description)
        antiAffinityClass = vm.antiAffinityClass
        volume = vm.disk.volume.rawValue
        diskFile = vm.disk.file
        migration = state.activeMigration(of: vm.id)?.id.description
    }
}

/// A live migration as the API shows it.
public struct MigrationView: Codable, Sendable, Equatable {
    public var id: String
    public var vm: String
    /// The VM's name, when the VM still exists.
    public var vmName: String?
    public var source: String
    public var target: String
    /// `preparing`, `copying`, `paused`, `completed`, `failed` or `cancelled`.
    public var phase: String
    public var active: Bool
    /// When each phase was entered, milliseconds since 1970, by phase name.
    public var timings: [String: UInt64]
    public var reason: String?

    init(_ migration: MigrationRecord, in state: ClusterState) {
        id = migration.id.description
        vm = migration.vm.description
        vmName = state.vms[migration.vm]?.name
        source = migration.source.description
        target = migration.target.description
        phase = migration.phase.description
        active = migration.phase.isActive
        timings = Dictionary(uniqueKeysWithValues: migration.timings.map { ($0.key.description, $0.value) })
        reason = migration.reason
    }
}

/// One event of the cluster's history.
public struct EventView: Codable, Sendable, Equatable {
    public var sequence: UInt64
    /// The proposer's wall clock, milliseconds since 1970.
    public var time: UInt64
    /// e.g. `vm.started`, `node.state-changed`.
    public var kind: String
    public var node: String?
    public var volume: String?
    public var vm: String?
    public var migration: String?
    public var detail: String
    /// The command that recorded it, e.g. `startVM`.
    public var command: String

    init(_ event: ClusterEvent) {
        sequence = event.sequence
        time = event.time
        kind = event.kind.description
        node = event.node?.description
        volume = event.volume?.rawValue
        vm = event.vm?.description
        migration = event.migration?.description
        detail = event.detail
        command = event.command.description
    }
}

/// What `GET /v1/cluster` answers: Raft's view and every record a status display needs.
public struct ClusterView: Codable, Sendable, Equatable {
    public var cluster: String
    public var servedBy: String
    public var leader: String?
    public var term: UInt64
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    public var members: [StatusView.Member]
    public var nodes: [NodeView]
    public var volumes: [VolumeView]
    /// Sorted by name.
    public var vms: [VMView]
    /// The active migrations only.
    public var migrations: [MigrationView]

    public init(
        status: StatusView, nodes: [NodeView], volumes: [VolumeView], vms: [VMView], migrations: [MigrationView]
    ) {
        cluster = status.cluster
        servedBy = status.servedBy
        leader = status.leader
        term = status.term
        commitIndex = status.commitIndex
        appliedIndex = status.appliedIndex
        members = status.members
        self.nodes = nodes
        self.volumes = volumes
        self.vms = vms
        self.migrations = migrations
    }
}

/// The list views of one state, in the order the API answers them.
extension ClusterState {
    var nodeViews: [NodeView] { nodes.keys.sorted().map { NodeView(nodes[$0]!, in: self) } }
    var volumeViews: [VolumeView] { volumes.keys.sorted().map { VolumeView(volumes[$0]!, in: self) } }
    var vmViews: [VMView] {
        vms.values.sorted { ($0.name, $0.id) < ($1.name, $1.id) }.map { VMView($0, in: self) }
    }
    func migrationViews(activeOnly: Bool) -> [MigrationView] {
        migrations.keys.sorted().compactMap { id in
            let migration = migrations[id]!
            return activeOnly && !migration.phase.isActive ? nil : MigrationView(migration, in: self)
        }
    }

    /// The VM with this name, or, when none has it, the VM with this id (`vm3`).
    func vm(named name: String) -> VMRecord? {
        vms.values.first { $0.name == name } ?? VMID(parsing: name).flatMap { vms[$0] }
    }
}
