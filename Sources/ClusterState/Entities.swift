// The records the replicated state holds: nodes, volumes, VMs, migrations and events (DESIGN.md §7).
public import ClusterModel

// MARK: - Nodes

/// A node's part in Raft, as the state records it (Raft's own log decides who votes).
public enum NodeRole: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case voter = 1
    case learner = 2

    public var description: String { self == .voter ? "voter" : "learner" }
}

/// Whether a node runs VMs and takes new ones.
public enum NodeState: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Runs VMs and takes new ones.
    case up = 1
    /// Declared down by the leader: owns nothing (its VMs went pending when it was declared down).
    case down = 2
    /// Keeps its VMs while they are migrated away; takes no new ones.
    case draining = 3
    /// Keeps its VMs where they are; takes no new ones (maintenance without moving anything).
    case paused = 4

    public var description: String {
        switch self {
        case .up: "up"
        case .down: "down"
        case .draining: "draining"
        case .paused: "paused"
        }
    }

    /// May be a VM's owner: every state but down.
    public var canOwnVMs: Bool { self != .down }
    /// May be given a VM it does not run yet (start, failover, migration target, coordinator).
    public var takesNewWork: Bool { self == .up }

    /// The states a node may go to from this one; the rest are rejected as conflicts.
    public var allowedNext: [NodeState] {
        switch self {
        case .up: [.draining, .paused, .down]
        case .draining: [.up, .paused, .down]
        case .paused: [.up, .draining, .down]
        case .down: [.up]
        }
    }
}

/// One `flotilla node` as the cluster state knows it.
public struct NodeRecord: Hashable, Sendable {
    public var id: NodeID
    /// Unique among nodes: no two nodes share a peer or a client address.
    public var addresses: MemberAddresses
    public var role: NodeRole
    /// Host memory minus the host's reserve, in bytes; the sum of the startup memory of the VMs
    /// it owns and of the migrations coming to it never exceeds this (admission control).
    public var usableMemory: UInt64
    public var state: NodeState

    public init(id: NodeID, addresses: MemberAddresses, role: NodeRole, usableMemory: UInt64, state: NodeState) {
        self.id = id
        self.addresses = addresses
        self.role = role
        self.usableMemory = usableMemory
        self.state = state
    }
}

// MARK: - Volumes

/// Whether a volume's coordinator can serve its metadata.
public enum VolumeState: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case online = 1
    /// Its coordinator went down; moving the coordinator to an up node brings it back online.
    case offline = 2

    public var description: String { self == .online ? "online" : "offline" }
}

/// A Cluster Shared Volume: a directory under the shared root that every node mounts.
public struct VolumeRecord: Hashable, Sendable {
    public var id: VolumeID
    /// Relative to the shared root (`SharedPath.problem` holds); no volume's path lies inside another's.
    public var path: String
    /// The one node allowed to change the volume's metadata.
    public var coordinator: NodeID
    public var state: VolumeState

    public init(id: VolumeID, path: String, coordinator: NodeID, state: VolumeState) {
        self.id = id
        self.path = path
        self.coordinator = coordinator
        self.state = state
    }
}

/// The rules for paths inside the shared root (a volume's directory, a disk file on a volume).
public enum SharedPath {
    public static let maxBytes = 255

    /// Why the path is not acceptable, or nil when it is. A path must stay inside the shared
    /// root on every node, so it is relative and never climbs out.
    public static func problem(_ path: String, what: String) -> String? {
        guard !path.isEmpty, path.utf8.count <= maxBytes else {
            return "\(what) must be 1–\(maxBytes) bytes, got \(path.utf8.count)"
        }
        guard !path.hasPrefix("/") else {
            return "\(what) \"\(path)\" is absolute; give it relative to the shared root, e.g. \"volumes/csv1\""
        }
        guard !path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == "\\" }) else {
            return "\(what) \"\(path)\" contains a control character or a backslash"
        }
        for component in path.split(separator: "/", omittingEmptySubsequences: false) {
            switch component {
            case "": return "\(what) \"\(path)\" has an empty component ('//' or a trailing '/')"
            case ".", "..": return "\(what) \"\(path)\" may not contain '.' or '..' components"
            default: continue
            }
        }
        return nil
    }

    /// Whether one path is the other or lies inside it (component-wise, so `a/b` does not contain `a/bc`).
    static func overlaps(_ first: String, _ second: String) -> Bool {
        first == second || first.hasPrefix(second + "/") || second.hasPrefix(first + "/")
    }
}

// MARK: - VMs

/// Which VMs a failover restarts first; `none` is not restarted automatically.
public enum RestartPriority: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case high = 1
    case medium = 2
    case low = 3
    case none = 4

    public var description: String {
        switch self {
        case .high: "high"
        case .medium: "medium"
        case .low: "low"
        case .none: "none"
        }
    }
}

/// What the operator asked for: the VM should run, or not.
public enum DesiredState: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case running = 1
    case stopped = 2

    public var description: String { self == .running ? "running" : "stopped" }
}

/// What the committed state says about a VM.
///
/// Only committed facts are states here. Booting and shutting down are the owner's local,
/// fast-changing facts (DESIGN.md §3) and travel on heartbeats, not through the log.
public enum VMState: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Not running, no owner; desired state stopped.
    case stopped = 1
    /// Has an owner, which runs it (a migration may be copying it elsewhere).
    case running = 2
    /// Should run but has no owner: nowhere fits, or its owner went down; the reason says which.
    case pending = 3

    public var description: String {
        switch self {
        case .stopped: "stopped"
        case .running: "running"
        case .pending: "pending"
        }
    }
}

/// A VM's disk: a file on a shared volume.
public struct DiskFile: Hashable, Sendable, CustomStringConvertible {
    public var volume: VolumeID
    /// Relative to the volume's directory (`SharedPath.problem` holds).
    public var file: String

    public init(volume: VolumeID, file: String) {
        self.volume = volume
        self.file = file
    }

    public var description: String { "\(volume):\(file)" }
}

/// What runs a VM's guest on its owner.
public enum GuestDriver: Hashable, Sendable, CustomStringConvertible {
    /// The simulated guest (docs/guests.md): fast, for demos and tests.
    case simulated
    /// A real virtual machine in QEMU (docs/qemu.md).
    case qemu(QEMUGuestSpec)

    public var description: String {
        switch self {
        case .simulated: "simulated"
        case .qemu: "qemu"
        }
    }
}

/// How a QEMU guest's disk (its VM's disk file) is read: never probed from the file's bytes.
public enum QEMUDiskFormat: String, Hashable, Sendable, CaseIterable {
    case raw
    case qcow2

    /// The format a disk file's name says: `.qcow2`, else raw.
    public static func named(_ file: String) -> QEMUDiskFormat {
        file.lowercased().hasSuffix(".qcow2") ? .qcow2 : .raw
    }
}

/// A QEMU guest: what it boots, from files on the shared volumes (every node reads the same) — a
/// Linux kernel (and initrd) given here, or, without one, its VM's disk (a raw or qcow2 image on
/// the VM's volume, which the firmware boots). Its VM's disk is its first disk either way. Its
/// memory is the VM's maximum; it boots with it.
public struct QEMUGuestSpec: Hashable, Sendable {
    public var vcpus: Int
    /// A Linux kernel to boot, and its initial RAM disk; nil: the disk is booted.
    public var kernel: DiskFile?
    public var initrd: DiskFile?
    /// Kernel arguments (the node adds `console=ttyS0` and `flotilla.vm=…`, `flotilla.epoch=…`).
    public var kernelArguments: String
    /// How the VM's disk file is read.
    public var diskFormat: QEMUDiskFormat
    /// Devices from the allow-list (`QEMUGuestSpec.allowedDevices`), each at most once.
    public var devices: [String]

    /// The devices a guest may have besides its balloon and disk: a virtio entropy source fed from
    /// the host's /dev/urandom, and an i6300esb watchdog that resets a guest that stops feeding it.
    public static let allowedDevices = ["virtio-rng", "watchdog"]

    public static let maximumVCPUs = 64
    public static let maximumArgumentsLength = 1024

    public init(
        vcpus: Int = 1, kernel: DiskFile? = nil, initrd: DiskFile? = nil, kernelArguments: String = "",
        diskFormat: QEMUDiskFormat = .raw, devices: [String] = []
    ) {
        self.devices = devices
        self.vcpus = vcpus
        self.kernel = kernel
        self.initrd = initrd
        self.kernelArguments = kernelArguments
        self.diskFormat = diskFormat
    }

    /// The volumes of what it boots (its disk's volume is the VM's).
    public var volumes: [VolumeID] { [kernel, initrd].compactMap { $0?.volume } }

    /// Why this cannot run, or nil; `memory` is the VM's.
    func problem(memory: MemorySettings) -> String? {
        guard (1...Self.maximumVCPUs).contains(vcpus) else {
            return "vcpus must be 1 to \(Self.maximumVCPUs), not \(vcpus)"
        }
        let mib: UInt64 = 1 << 20
        guard memory.maximum % mib == 0, memory.maximum >= 32 * mib else {
            return "a QEMU guest boots with its maximum memory, which must be a whole number of MiB and at least 32 MiB"
        }
        guard kernelArguments.utf8.count <= Self.maximumArgumentsLength,
            !kernelArguments.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f })
        else {
            return
                "kernel arguments must be one line of at most \(Self.maximumArgumentsLength) bytes without control characters"
        }
        for device in devices where !Self.allowedDevices.contains(device) {
            return "device \(device) is not one a guest may have (\(Self.allowedDevices.joined(separator: ", ")))"
        }
        if Set(devices).count != devices.count { return "a device is named twice" }
        if kernel == nil, initrd != nil || !kernelArguments.isEmpty {
            return "an initrd and kernel arguments go with a kernel, and this guest boots its disk"
        }
        for (what, file) in [("kernel", kernel), ("initrd", initrd)] {
            if let file, let problem = SharedPath.problem(file.file, what: what) { return problem }
        }
        return nil
    }
}

/// What `createVM` carries: everything about a VM that the operator chooses.
public struct VMSpec: Hashable, Sendable {
    public var name: String
    public var memory: MemorySettings
    public var restartPriority: RestartPriority
    /// Tried first, in order, when the VM is placed.
    public var preferredOwners: [NodeID]
    /// VMs of one class are kept on different nodes when placement can.
    public var antiAffinityClass: String?
    public var disk: DiskFile
    /// What its guest does with memory; it moves with the VM.
    public var workload: Workload
    /// A live migration that does not converge throttles the guest's dirtying until it does,
    /// instead of giving up (the VM then stays on the source).
    public var autoConverge: Bool
    /// What runs its guest.
    public var driver: GuestDriver

    /// Without a workload the VM runs `Workload.standard(for: memory)`.
    public init(
        name: String, memory: MemorySettings, restartPriority: RestartPriority = .medium,
        preferredOwners: [NodeID] = [], antiAffinityClass: String? = nil, disk: DiskFile, workload: Workload? = nil,
        autoConverge: Bool = false, driver: GuestDriver = .simulated
    ) {
        self.autoConverge = autoConverge
        self.driver = driver
        self.name = name
        self.memory = memory
        self.restartPriority = restartPriority
        self.preferredOwners = preferredOwners
        self.antiAffinityClass = antiAffinityClass
        self.disk = disk
        self.workload = workload ?? .standard(for: memory)
    }

    public static let maxNameLength = 64

    /// Why a VM name or anti-affinity class is not acceptable, or nil when it is.
    static func labelProblem(_ text: String, what: String) -> String? {
        guard !text.isEmpty, text.count <= maxNameLength else {
            return "a \(what) must be 1–\(maxNameLength) characters, got \(text.count)"
        }
        guard !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }),
            text.first?.isWhitespace == false, text.last?.isWhitespace == false
        else {
            return "\(what) \"\(text)\" has control characters or leading/trailing spaces"
        }
        return nil
    }
}

/// One VM as the cluster state knows it.
public struct VMRecord: Hashable, Sendable {
    public var id: VMID
    /// Unique among VMs.
    public var name: String
    public var memory: MemorySettings
    public var restartPriority: RestartPriority
    /// Known nodes, no duplicates; a removed node is dropped from every list.
    public var preferredOwners: [NodeID]
    public var antiAffinityClass: String?
    public var disk: DiskFile
    public var workload: Workload
    public var autoConverge: Bool
    public var driver: GuestDriver
    public var desiredState: DesiredState
    /// Set exactly when `state == .running`, and then a node that can own VMs.
    public var owner: NodeID?
    /// Bumped on every change of owner (to none too); never goes down. Every disk write carries it.
    public var epoch: Epoch
    public var state: VMState
    /// Why a pending VM has no owner; nil in the other states.
    public var pendingReason: String?

    public init(id: VMID, spec: VMSpec) {
        self.id = id
        self.name = spec.name
        self.memory = spec.memory
        self.restartPriority = spec.restartPriority
        self.preferredOwners = spec.preferredOwners
        self.antiAffinityClass = spec.antiAffinityClass
        self.disk = spec.disk
        self.workload = spec.workload
        self.autoConverge = spec.autoConverge
        self.driver = spec.driver
        self.desiredState = .stopped
        self.owner = nil
        self.epoch = 0
        self.state = .stopped
        self.pendingReason = nil
    }
}

// MARK: - Migrations

/// Where a live migration is (DESIGN.md §9); the last three are final.
public enum MigrationPhase: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// Committed, waiting for a slot: the source or the target (or the cluster) is at its limit of
    /// running migrations. It starts (preparing) when a running one ends.
    case queued = 7
    /// Committed; the target creates the VM shell and reserves its memory.
    case preparing = 1
    /// Pages are streaming while the guest runs on the source.
    case copying = 2
    /// The guest is paused on the source for the last pages and device state.
    case paused = 3
    /// The switchover committed: the target owns the VM.
    case completed = 4
    case failed = 5
    case cancelled = 6

    public var description: String {
        switch self {
        case .queued: "queued"
        case .preparing: "preparing"
        case .copying: "copying"
        case .paused: "paused"
        case .completed: "completed"
        case .failed: "failed"
        case .cancelled: "cancelled"
        }
    }

    /// Not ended: queued or running. An active migration reserves its VM's memory on the target.
    public var isActive: Bool { self == .queued || isRunning }
    /// Running: it counts against the limits of running migrations.
    public var isRunning: Bool { self == .preparing || self == .copying || self == .paused }

    /// The phase `advanceMigration` may move to from this one.
    public var next: MigrationPhase? {
        switch self {
        case .preparing: .copying
        case .copying: .paused
        default: nil
        }
    }
}

/// A committed record of one live migration.
public struct MigrationRecord: Hashable, Sendable {
    public var id: MigrationID
    public var vm: VMID
    /// The VM's owner when the migration began; it stays the owner until the switchover.
    public var source: NodeID
    /// Its memory for the VM is reserved while the migration is active.
    public var target: NodeID
    public var phase: MigrationPhase
    /// When each phase was entered: the proposer's wall clock, milliseconds since 1970.
    public var timings: [MigrationPhase: UInt64]
    /// Why it failed or was cancelled.
    public var reason: String?
    /// What the copy took, as the source and target reported it (nil until they do).
    public var stats: MigrationStats?

    public init(
        id: MigrationID, vm: VMID, source: NodeID, target: NodeID, phase: MigrationPhase,
        timings: [MigrationPhase: UInt64], reason: String?, stats: MigrationStats? = nil
    ) {
        self.stats = stats
        self.id = id
        self.vm = vm
        self.source = source
        self.target = target
        self.phase = phase
        self.timings = timings
        self.reason = reason
    }
}

/// What a live migration's copy took: per pre-copy round the bytes sent, its time and what the
/// guest dirtied meanwhile; the totals; the downtime from pause to resume (µs, by the nodes' wall
/// clocks) and the whole time from begin to resume or abort (ms).
public struct MigrationStats: Hashable, Sendable {
    public struct Round: Hashable, Sendable {
        public var bytes: UInt64
        public var milliseconds: UInt64
        /// Bytes the guest dirtied during the round: what the next round had to send.
        public var dirtyBytes: UInt64
        /// The share of the guest's dirtying taken away by auto-converge during the round, percent.
        public var throttlePercent: Int

        public init(bytes: UInt64, milliseconds: UInt64, dirtyBytes: UInt64, throttlePercent: Int) {
            self.bytes = bytes
            self.milliseconds = milliseconds
            self.dirtyBytes = dirtyBytes
            self.throttlePercent = throttlePercent
        }
    }

    public var rounds: [Round]
    /// The guest's memory: what a full copy would send (its assignment).
    public var memoryBytes: UInt64
    /// Everything sent: the rounds, the last pages and the device state.
    public var totalBytes: UInt64
    public var downtimeMicroseconds: UInt64?
    /// Set once the migration is over (the target resumed the guest, or the source gave up):
    /// the stats are final then, and none without it replace them.
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

    /// The most rounds a record keeps (a migration that runs more keeps its first ones).
    public static let maxRounds = 1000
}

// MARK: - Events

/// What an event records.
public enum EventKind: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case settingChanged = 1
    case settingDeleted = 2
    case memberRegistered = 3
    case nodeRegistered = 10
    case nodeStateChanged = 11
    case nodeRemoved = 12
    case volumeCreated = 20
    case volumeMoved = 21
    case volumeOffline = 22
    case volumeDeleted = 23
    case vmCreated = 30
    case vmDeleted = 31
    case vmStarted = 32
    case vmPending = 33
    case vmStopped = 34
    case vmMemoryChanged = 35
    case vmOwnerChanged = 36
    case vmWorkloadChanged = 37
    case vmAutoConvergeChanged = 38
    case migrationStarted = 40
    case migrationAdvanced = 41
    case migrationFinished = 42
    case migrationAborted = 43
    /// The target runs the VM and announced its new location (the ARP-update step); the record is final.
    case migrationAnnounced = 44

    /// The name the API and the event log show.
    public var description: String {
        switch self {
        case .settingChanged: "setting.changed"
        case .settingDeleted: "setting.deleted"
        case .memberRegistered: "member.registered"
        case .nodeRegistered: "node.registered"
        case .nodeStateChanged: "node.state-changed"
        case .nodeRemoved: "node.removed"
        case .volumeCreated: "volume.created"
        case .volumeMoved: "volume.moved"
        case .volumeOffline: "volume.offline"
        case .volumeDeleted: "volume.deleted"
        case .vmCreated: "vm.created"
        case .vmDeleted: "vm.deleted"
        case .vmStarted: "vm.started"
        case .vmPending: "vm.pending"
        case .vmStopped: "vm.stopped"
        case .vmMemoryChanged: "vm.memory-changed"
        case .vmOwnerChanged: "vm.owner-changed"
        case .vmWorkloadChanged: "vm.workload-changed"
        case .vmAutoConvergeChanged: "vm.auto-converge-changed"
        case .migrationStarted: "migration.started"
        case .migrationAdvanced: "migration.advanced"
        case .migrationFinished: "migration.finished"
        case .migrationAborted: "migration.aborted"
        case .migrationAnnounced: "migration.announced"
        }
    }
}

/// One entry of the bounded event history.
public struct ClusterEvent: Hashable, Sendable {
    /// Grows by one with every event, across the whole life of the cluster; `GET /v1/events?since=N` pages by it.
    public var sequence: UInt64
    /// The proposer's wall clock when the command was proposed, milliseconds since 1970.
    /// Clocks of successive leaders may differ, so times may step back where sequences never do.
    public var time: UInt64
    public var kind: EventKind
    public var node: NodeID?
    public var volume: VolumeID?
    public var vm: VMID?
    public var migration: MigrationID?
    /// What happened and why, for a person.
    public var detail: String {
        get { recorded.text }
        set { recorded = .text(newValue) }
    }
    /// `detail` as it was recorded: a setting's change keeps its key and value, and is worded only
    /// when read (every settings write records one; most are never read).
    private var recorded: EventDetail
    /// The command whose apply recorded it.
    public var command: CommandKind

    public init(
        sequence: UInt64, time: UInt64, kind: EventKind, node: NodeID? = nil, volume: VolumeID? = nil,
        vm: VMID? = nil, migration: MigrationID? = nil, detail: String, command: CommandKind
    ) {
        self.init(
            sequence: sequence, time: time, kind: kind, node: node, volume: volume, vm: vm, migration: migration,
            recorded: .text(detail), command: command)
    }

    init(
        sequence: UInt64, time: UInt64, kind: EventKind, node: NodeID?, volume: VolumeID?, vm: VMID?,
        migration: MigrationID?, recorded: EventDetail, command: CommandKind
    ) {
        self.sequence = sequence
        self.time = time
        self.kind = kind
        self.node = node
        self.volume = volume
        self.vm = vm
        self.migration = migration
        self.recorded = recorded
        self.command = command
    }

    // Equal by what they say: an event read back from a snapshot holds its detail as text.
    public static func == (lhs: ClusterEvent, rhs: ClusterEvent) -> Bool {
        lhs.sequence == rhs.sequence && lhs.time == rhs.time && lhs.kind == rhs.kind && lhs.node == rhs.node
            && lhs.volume == rhs.volume && lhs.vm == rhs.vm && lhs.migration == rhs.migration
            && lhs.command == rhs.command && lhs.detail == rhs.detail
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(sequence)
        hasher.combine(time)
        hasher.combine(kind)
        hasher.combine(node)
        hasher.combine(volume)
        hasher.combine(vm)
        hasher.combine(migration)
        hasher.combine(command)
        hasher.combine(detail)
    }
}

/// An event's detail as recorded (`ClusterEvent.detail` words it).
enum EventDetail: Sendable {
    case text(String)
    /// `key set to "value"` (a value of at most 64 bytes).
    case settingSet(key: String, value: String)
    /// `key set to a N-byte value`: a longer value is not kept.
    case settingSetLong(key: String, bytes: Int)

    /// How a setting's change reads.
    static func setting(_ key: String, _ value: String) -> EventDetail {
        let bytes = value.utf8.count
        return bytes <= 64 ? .settingSet(key: key, value: value) : .settingSetLong(key: key, bytes: bytes)
    }

    var text: String {
        switch self {
        case .text(let text): text
        case .settingSet(let key, let value): "\(key) set to \"\(value)\""
        case .settingSetLong(let key, let bytes): "\(key) set to a \(bytes)-byte value"
        }
    }
}

/// A command's name, as events record which command caused them; the raw value is its wire kind.
public enum CommandKind: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case setSetting = 1
    case deleteSetting = 2
    case registerMember = 3
    case registerNode = 10
    case setNodeState = 11
    case removeNode = 12
    case createVolume = 20
    case moveVolume = 21
    case deleteVolume = 22
    case createVM = 30
    case deleteVM = 31
    case startVM = 32
    case stopVM = 33
    case setVMMemory = 34
    case setVMOwner = 35
    case setVMWorkload = 36
    case setVMAutoConverge = 37
    case beginMigration = 40
    case advanceMigration = 41
    case finishMigration = 42
    case abortMigration = 43
    case recordMigrationStats = 44

    public var description: String {
        switch self {
        case .setSetting: "setSetting"
        case .deleteSetting: "deleteSetting"
        case .registerMember: "registerMember"
        case .registerNode: "registerNode"
        case .setNodeState: "setNodeState"
        case .removeNode: "removeNode"
        case .createVolume: "createVolume"
        case .moveVolume: "moveVolume"
        case .deleteVolume: "deleteVolume"
        case .createVM: "createVM"
        case .deleteVM: "deleteVM"
        case .startVM: "startVM"
        case .stopVM: "stopVM"
        case .setVMMemory: "setVMMemory"
        case .setVMOwner: "setVMOwner"
        case .setVMWorkload: "setVMWorkload"
        case .setVMAutoConverge: "setVMAutoConverge"
        case .beginMigration: "beginMigration"
        case .advanceMigration: "advanceMigration"
        case .finishMigration: "finishMigration"
        case .abortMigration: "abortMigration"
        case .recordMigrationStats: "recordMigrationStats"
        }
    }
}
