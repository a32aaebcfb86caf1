// The commands that change the cluster state, what applying one answers, and why one is refused.
public import ClusterModel

/// A change to the cluster state, as it travels through the log (inside a `CommandEnvelope`).
///
/// Each is validated at apply time against the committed state; docs/state.md lists the rules.
public enum ClusterCommand: Hashable, Sendable {
    case setSetting(key: String, value: String)
    case deleteSetting(key: String)
    /// Records a member's addresses (before Raft adds it), so every node can reach it.
    case registerMember(id: NodeID, addresses: MemberAddresses)

    /// Adds a node (state up), or updates a known node's addresses, role and usable memory.
    case registerNode(NodeRegistration)
    /// Drain, pause, resume (to up), declare down, or bring back up a node; `reason` (who or
    /// what decided it: "by operator", failover's finding) goes into the events it records. With
    /// `expected`, it applies only if the node is in that state (a controller's decision made stale
    /// by a newer change is refused, as `setVMOwner`'s expected epoch does for VMs).
    case setNodeState(NodeID, NodeState, reason: String? = nil, expected: NodeState? = nil)
    /// Forgets a node that owns no VM, coordinates no volume and takes part in no migration.
    case removeNode(NodeID)

    case createVolume(VolumeID, path: String, coordinator: NodeID)
    /// Moves a volume's coordinator (and brings an offline volume back online); `reason` goes
    /// into the event.
    case moveVolume(VolumeID, coordinator: NodeID, reason: String? = nil)
    case deleteVolume(VolumeID)

    case createVM(VMSpec)
    case deleteVM(VMID)
    /// Starts a VM on the named node, or on the node placement picks; a VM that fits nowhere
    /// becomes pending with the reason. Starting a pending VM tries placement again.
    case startVM(VMID, on: NodeID?)
    case stopVM(VMID)
    case setVMMemory(VMID, MemorySettings)
    /// Gives a running or pending VM a new owner (epoch + 1), or none with a reason (pending).
    /// `expectedEpoch` is the epoch the proposer saw: a command about an older epoch is refused,
    /// so two controllers deciding on stale views cannot both move a VM.
    case setVMOwner(VMID, owner: NodeID?, expectedEpoch: Epoch, reason: String)
    /// Replaces what the VM's guest does with memory; a running guest follows it at once.
    case setVMWorkload(VMID, Workload)
    /// Whether a live migration of the VM that does not converge throttles the guest.
    case setVMAutoConverge(VMID, Bool)

    case beginMigration(VMID, target: NodeID, reason: String? = nil)
    /// Moves an active migration to its next phase (preparing → copying → paused).
    case advanceMigration(MigrationID, to: MigrationPhase)
    /// The switchover: the target owns the VM (epoch + 1). Only from the paused phase.
    case finishMigration(MigrationID)
    /// Ends an active migration as `failed` or `cancelled`; the VM stays on the source.
    case abortMigration(MigrationID, outcome: MigrationPhase, reason: String)
    /// What a migration's copy took, as its source or target measured it; replaces what was recorded.
    case recordMigrationStats(MigrationID, MigrationStats)

    public var kind: CommandKind {
        switch self {
        case .setSetting: .setSetting
        case .deleteSetting: .deleteSetting
        case .registerMember: .registerMember
        case .registerNode: .registerNode
        case .setNodeState: .setNodeState
        case .removeNode: .removeNode
        case .createVolume: .createVolume
        case .moveVolume: .moveVolume
        case .deleteVolume: .deleteVolume
        case .createVM: .createVM
        case .deleteVM: .deleteVM
        case .startVM: .startVM
        case .stopVM: .stopVM
        case .setVMMemory: .setVMMemory
        case .setVMOwner: .setVMOwner
        case .setVMWorkload: .setVMWorkload
        case .setVMAutoConverge: .setVMAutoConverge
        case .beginMigration: .beginMigration
        case .advanceMigration: .advanceMigration
        case .finishMigration: .finishMigration
        case .abortMigration: .abortMigration
        case .recordMigrationStats: .recordMigrationStats
        }
    }
}

/// What `registerNode` carries.
public struct NodeRegistration: Hashable, Sendable {
    public var id: NodeID
    public var addresses: MemberAddresses
    public var role: NodeRole
    /// Host memory minus the host's reserve, in bytes.
    public var usableMemory: UInt64

    public init(id: NodeID, addresses: MemberAddresses, role: NodeRole, usableMemory: UInt64) {
        self.id = id
        self.addresses = addresses
        self.role = role
        self.usableMemory = usableMemory
    }
}

/// A command with the time it was proposed: the unit the log stores.
///
/// `apply` never reads a clock; whatever it records as time (events, migration phases) is
/// `proposedAt`, the proposer's wall clock, so every node records the same time.
public struct CommandEnvelope: Hashable, Sendable {
    /// Milliseconds since 1970 on the proposer's wall clock; 0 for entries of format version 1,
    /// which carried no time.
    public var proposedAt: UInt64
    public var command: ClusterCommand

    public init(proposedAt: UInt64, command: ClusterCommand) {
        self.proposedAt = proposedAt
        self.command = command
    }
}

/// What applying a command did.
public enum CommandResult: Hashable, Sendable {
    case applied(CommandOutcome)
    /// Refused by validation against the committed state; nothing changed.
    case rejected(Rejection)

    public var outcome: CommandOutcome? {
        if case .applied(let outcome) = self { outcome } else { nil }
    }

    public var rejection: Rejection? {
        if case .rejected(let rejection) = self { rejection } else { nil }
    }
}

/// What an applied command changed, for its client.
public enum CommandOutcome: Hashable, Sendable {
    /// A setting or member's addresses changed; the value it replaced, if any.
    case previous(String?)
    /// The node as it is now (or was, for `removeNode`).
    case node(NodeID, NodeState)
    case volume(VolumeID, coordinator: NodeID, VolumeState)
    case vm(VMOutcome)
    case migration(MigrationID, vm: VMID, phase: MigrationPhase)
}

/// A VM as a command left it: enough for the client to see where it runs, or why it does not.
public struct VMOutcome: Hashable, Sendable {
    public var id: VMID
    public var name: String
    public var state: VMState
    public var owner: NodeID?
    public var epoch: Epoch
    public var pendingReason: String?

    public init(id: VMID, name: String, state: VMState, owner: NodeID?, epoch: Epoch, pendingReason: String?) {
        self.id = id
        self.name = name
        self.state = state
        self.owner = owner
        self.epoch = epoch
        self.pendingReason = pendingReason
    }

    init(_ vm: VMRecord) {
        self.init(
            id: vm.id, name: vm.name, state: vm.state, owner: vm.owner, epoch: vm.epoch, pendingReason: vm.pendingReason
        )
    }
}

/// Why a command was refused, with a kind the API maps to an HTTP status.
public struct Rejection: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
        /// The command itself is malformed or breaks a rule (a bad name, inconsistent memory): 400.
        case invalid = 1
        /// It names a node, volume, VM, migration or setting the state does not have: 404.
        case notFound = 2
        /// It does not fit the current state (name taken, VM running, node not up, already migrating): 409.
        case conflict = 3
        /// The target node has too little free memory for the VM's startup memory: 409, since
        /// freeing memory (or choosing another node) makes the same command succeed.
        case insufficientMemory = 4

        public var description: String {
            switch self {
            case .invalid: "invalid"
            case .notFound: "not found"
            case .conflict: "conflict"
            case .insufficientMemory: "insufficient memory"
            }
        }

        /// The HTTP status an API answer carries for this kind.
        public var httpStatus: Int {
            switch self {
            case .invalid: 400
            case .notFound: 404
            case .conflict, .insufficientMemory: 409
            }
        }
    }

    public var kind: Kind
    /// What was wrong, with the input, and what to do.
    public var reason: String

    public init(_ kind: Kind, _ reason: String) {
        self.kind = kind
        self.reason = reason
    }

    public static func invalid(_ reason: String) -> Rejection { Rejection(.invalid, reason) }
    public static func notFound(_ reason: String) -> Rejection { Rejection(.notFound, reason) }
    public static func conflict(_ reason: String) -> Rejection { Rejection(.conflict, reason) }
    public static func insufficientMemory(_ reason: String) -> Rejection { Rejection(.insufficientMemory, reason) }

    public var description: String { "\(kind): \(reason)" }
}
