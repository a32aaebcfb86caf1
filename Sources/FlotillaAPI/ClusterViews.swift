// The JSON shapes the client API answers with for nodes, volumes, VMs, migrations and events.
public import ClusterModel

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
    /// What it offers VMs and what it has assigned them now, by its last report to the leader;
    /// absent when the leader has none.
    public var memory: NodeMemoryView?

    public struct NodeMemoryView: Codable, Sendable, Equatable {
        public var usable: UInt64
        public var assigned: UInt64

        public init(usable: UInt64, assigned: UInt64) {
            self.usable = usable
            self.assigned = assigned
        }
    }

    public init(
        id: String, state: String, role: String, peerAddress: String, clientAddress: String, usableMemory: UInt64,
        reservedMemory: UInt64, freeMemory: UInt64, vms: [String], memory: NodeMemoryView? = nil
    ) {
        self.memory = memory
        self.id = id
        self.state = state
        self.role = role
        self.peerAddress = peerAddress
        self.clientAddress = clientAddress
        self.usableMemory = usableMemory
        self.reservedMemory = reservedMemory
        self.freeMemory = freeMemory
        self.vms = vms
    }
}

/// What `DELETE /v1/volumes/{id}` answers: the volume whose record went, and where its directory
/// stays (the files under it are never deleted by the cluster).
public struct VolumeDeletion: Codable, Sendable, Equatable {
    public var deleted: String
    /// The directory under the shared root, left in place.
    public var path: String
    public var detail: String

    public init(deleted: String, path: String, detail: String) {
        self.deleted = deleted
        self.path = path
        self.detail = detail
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

    public init(
        id: String, path: String, coordinator: String, state: String, vms: [String], redirected: [String]? = nil,
        coordinatorProblem: String? = nil, accessUnknown: [String]? = nil
    ) {
        self.id = id
        self.path = path
        self.coordinator = coordinator
        self.state = state
        self.vms = vms
        self.redirected = redirected
        self.coordinatorProblem = coordinatorProblem
        self.accessUnknown = accessUnknown
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
    /// What the VM is assigned and demands now, its status (`ok`, `low`, `warning`, `waiting`) and
    /// what it pages inside the guest: its owner's last report to the leader (soft facts, never in
    /// the log); absent when the leader has no report of it (the VM does not run, or its owner has
    /// not reported since).
    public var assigned: UInt64?
    public var demand: UInt64?
    public var status: String?
    public var pagingBytes: UInt64?

    public init(
        startup: UInt64, minimum: UInt64, maximum: UInt64, buffer: Int, priority: Int, assigned: UInt64? = nil,
        demand: UInt64? = nil, status: String? = nil, pagingBytes: UInt64? = nil
    ) {
        self.startup = startup
        self.minimum = minimum
        self.maximum = maximum
        self.buffer = buffer
        self.priority = priority
        self.assigned = assigned
        self.demand = demand
        self.status = status
        self.pagingBytes = pagingBytes
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
    /// What its guest does with memory.
    public var workload: WorkloadView?
    /// Whether a live migration that does not converge throttles the guest instead of being aborted.
    public var autoConverge: Bool?
    /// What runs its guest (absent from nodes before guest drivers: simulated).
    public var driver: GuestDriverView?

    public init(
        id: String, name: String, state: String, desiredState: String, owner: String? = nil, epoch: UInt64,
        pendingReason: String? = nil, memory: MemoryView, restartPriority: String, preferredOwners: [String],
        antiAffinityClass: String? = nil, volume: String, diskFile: String, migration: String? = nil,
        workload: WorkloadView? = nil, autoConverge: Bool? = nil, driver: GuestDriverView? = nil
    ) {
        self.autoConverge = autoConverge
        self.driver = driver
        self.id = id
        self.name = name
        self.state = state
        self.desiredState = desiredState
        self.owner = owner
        self.epoch = epoch
        self.pendingReason = pendingReason
        self.memory = memory
        self.restartPriority = restartPriority
        self.preferredOwners = preferredOwners
        self.antiAffinityClass = antiAffinityClass
        self.volume = volume
        self.diskFile = diskFile
        self.migration = migration
        self.workload = workload
    }
}

/// What runs a VM's guest: `{"kind": "simulated"}` or `{"kind": "qemu", "vcpus": 1, "kernel":
/// "csv1:boot/vmlinuz", "initrd": "csv1:boot/initramfs.cpio.gz", "append": "quiet"}` (files as
/// VOLUME:PATH on the shared volumes).
public struct GuestDriverView: Codable, Sendable, Equatable {
    /// `simulated` or `qemu`.
    public var kind: String
    public var vcpus: Int?
    public var kernel: String?
    public var initrd: String?
    /// Kernel arguments.
    public var append: String?
    /// How the VM's disk file is read, `raw` or `qcow2`: by default qcow2 when its name ends in
    /// `.qcow2`, else raw. Without a kernel the guest boots that disk.
    public var diskFormat: String?
    /// Devices from the allow-list: `virtio-rng`, `watchdog`.
    public var devices: [String]?

    public init(
        kind: String, vcpus: Int? = nil, kernel: String? = nil, initrd: String? = nil, append: String? = nil,
        diskFormat: String? = nil, devices: [String]? = nil
    ) {
        self.devices = devices
        self.diskFormat = diskFormat
        self.kind = kind
        self.vcpus = vcpus
        self.kernel = kernel
        self.initrd = initrd
        self.append = append
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
    /// `queued`, `preparing`, `copying`, `paused`, `completed`, `failed` or `cancelled`.
    public var phase: String
    public var active: Bool
    /// When each phase was entered, milliseconds since 1970, by phase name.
    public var timings: [String: UInt64]
    /// Why it failed, was cancelled, or waits in the queue.
    public var reason: String?
    /// What the copy took so far (each round as it ends), and in the end the downtime and total time.
    public var stats: MigrationStatsView?

    public init(
        id: String, vm: String, vmName: String? = nil, source: String, target: String, phase: String, active: Bool,
        timings: [String: UInt64], reason: String? = nil, stats: MigrationStatsView? = nil
    ) {
        self.stats = stats
        self.id = id
        self.vm = vm
        self.vmName = vmName
        self.source = source
        self.target = target
        self.phase = phase
        self.active = active
        self.timings = timings
        self.reason = reason
    }
}

/// What a live migration's copy took.
public struct MigrationStatsView: Codable, Sendable, Equatable {
    public struct Round: Codable, Sendable, Equatable {
        public var bytes: UInt64
        public var milliseconds: UInt64
        /// Dirtied during the round: what the next round (or the last copy) had to send.
        public var dirtyBytes: UInt64
        /// How much of the guest's dirtying auto-converge took away during the round, percent.
        public var throttlePercent: Int

        public init(bytes: UInt64, milliseconds: UInt64, dirtyBytes: UInt64, throttlePercent: Int) {
            self.bytes = bytes
            self.milliseconds = milliseconds
            self.dirtyBytes = dirtyBytes
            self.throttlePercent = throttlePercent
        }
    }

    public var rounds: [Round]
    /// The guest's memory: what one full copy sends.
    public var memoryBytes: UInt64
    /// Everything sent so far: the rounds, then the last copy.
    public var totalBytes: UInt64
    /// From the pause on the source to the resume on the target (or back on the source).
    public var downtimeMicroseconds: UInt64?
    /// From the start to the resume, or to the abort; set once the stats are final.
    public var totalMilliseconds: UInt64?

    public init(
        rounds: [Round], memoryBytes: UInt64, totalBytes: UInt64, downtimeMicroseconds: UInt64? = nil,
        totalMilliseconds: UInt64? = nil
    ) {
        self.rounds = rounds
        self.memoryBytes = memoryBytes
        self.totalBytes = totalBytes
        self.downtimeMicroseconds = downtimeMicroseconds
        self.totalMilliseconds = totalMilliseconds
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

    public init(
        sequence: UInt64, time: UInt64, kind: String, node: String? = nil, volume: String? = nil, vm: String? = nil,
        migration: String? = nil, detail: String, command: String
    ) {
        self.sequence = sequence
        self.time = time
        self.kind = kind
        self.node = node
        self.volume = volume
        self.vm = vm
        self.migration = migration
        self.detail = detail
        self.command = command
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

extension MemoryView {
    /// The settings, and what its owner last reported of the VM when there is a report.
    public init(_ memory: MemorySettings, facts: VMMemoryFacts? = nil) {
        self.init(
            startup: memory.startup, minimum: memory.minimum, maximum: memory.maximum, buffer: memory.bufferPercent,
            priority: memory.priority, assigned: facts?.assigned, demand: facts?.demand, status: facts?.status.rawValue,
            pagingBytes: facts?.pagingBytes)
    }
}
