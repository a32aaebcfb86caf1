// The binary forms of log entries (commands in their envelope) and of the results apply returns.
public import ClusterModel

extension CommandEnvelope {
    /// The entry format written today: version, proposal time, command kind, fields.
    /// Version 9 let a QEMU guest boot its disk (its kernel optional, its disk's format given; the
    /// driver's own layout byte says which form an entry holds). Version 8 added the VM's guest driver (in `createVM`: simulated or QEMU with what it boots).
    /// Version 7 added the optional state `setNodeState` expects the node in (a controller's decision
    /// that a newer change made stale is refused); version 6 added the optional reason of
    /// `beginMigration` (who asked for the migration and why);
    /// version 5 added VMs' auto-converge (in `createVM`, and `setVMAutoConverge`) and
    /// `recordMigrationStats`; version 4 added VMs' workloads (in `createVM`, and `setVMWorkload`); version 3 added the
    /// optional reason of `setNodeState` and `moveVolume`; versions 3 and 2 (no reasons) and
    /// version 1 (no time; settings and member commands only) still decode.
    public static let formatVersion: UInt8 = 9

    /// The entry's bytes in the log.
    public var encoded: [UInt8] {
        // A setting's value can be long (up to `Setting.maxValueBytes`): room for it from the start.
        var hint = 0
        if case .setSetting(let key, let value) = command { hint = key.utf8.count + value.utf8.count }
        var writer = ByteWriter(capacity: 64 + hint)
        writer.write(Self.formatVersion)
        writer.writeVarint(proposedAt)
        command.encode(into: &writer)
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(WireFormatError) {
        var reader = ByteReader(bytes)
        let version = try reader.readByte()
        switch version {
        case 1:
            let command = try ClusterCommand(from: &reader, entryVersion: version)
            guard command.kind.rawValue <= CommandKind.registerMember.rawValue else {
                throw WireFormatError("command kind \(command.kind) did not exist in entry format version 1")
            }
            self.init(proposedAt: 0, command: command)
        case 2...Self.formatVersion:
            self.init(
                proposedAt: try reader.readVarint(), command: try ClusterCommand(from: &reader, entryVersion: version))
        case 0:
            throw WireFormatError("entry format version 0 does not exist (this build reads 1 to \(Self.formatVersion))")
        default:
            // Not damage: a newer build wrote it. The node must stop, not refuse it (a refusal
            // here and an apply on the newer nodes would make their states differ).
            throw WireFormatError(
                NewerFormatVersion(
                    subject: "a log entry", format: "entry format", found: UInt64(version),
                    newest: UInt64(Self.formatVersion)))
        }
        guard reader.isAtEnd else { throw WireFormatError("\(reader.remaining) bytes after a cluster command") }
    }
}

extension ClusterCommand {
    func encode(into writer: inout ByteWriter) {
        writer.write(enumCase: kind)
        switch self {
        case .setSetting(let key, let value):
            writer.write(key)
            writer.write(value)
        case .deleteSetting(let key):
            writer.write(key)
        case .registerMember(let id, let addresses):
            writer.write(id)
            addresses.encode(into: &writer)
        case .registerNode(let registration):
            writer.write(registration.id)
            registration.addresses.encode(into: &writer)
            writer.write(enumCase: registration.role)
            writer.writeVarint(registration.usableMemory)
        case .setNodeState(let node, let state, let reason, let expected):
            writer.write(node)
            writer.write(enumCase: state)
            writer.write(optional: reason)
            writer.write(expected != nil)
            if let expected { writer.write(enumCase: expected) }
        case .removeNode(let node):
            writer.write(node)
        case .createVolume(let volume, let path, let coordinator):
            writer.write(volume.rawValue)
            writer.write(path)
            writer.write(coordinator)
        case .moveVolume(let volume, let coordinator, let reason):
            writer.write(volume.rawValue)
            writer.write(coordinator)
            writer.write(optional: reason)
        case .deleteVolume(let volume):
            writer.write(volume.rawValue)
        case .createVM(let spec):
            spec.encode(into: &writer)
        case .deleteVM(let vm), .stopVM(let vm):
            writer.writeVarint(vm.rawValue)
        case .startVM(let vm, let node):
            writer.writeVarint(vm.rawValue)
            writer.write(optional: node)
        case .setVMMemory(let vm, let memory):
            writer.writeVarint(vm.rawValue)
            memory.encode(into: &writer)
        case .setVMOwner(let vm, let owner, let expectedEpoch, let reason):
            writer.writeVarint(vm.rawValue)
            writer.write(optional: owner)
            writer.writeVarint(expectedEpoch.rawValue)
            writer.write(reason)
        case .setVMWorkload(let vm, let workload):
            writer.writeVarint(vm.rawValue)
            workload.encode(into: &writer)
        case .setVMAutoConverge(let vm, let on):
            writer.writeVarint(vm.rawValue)
            writer.write(on)
        case .recordMigrationStats(let migration, let stats):
            writer.writeVarint(migration.rawValue)
            stats.encode(into: &writer)
        case .beginMigration(let vm, let target, let reason):
            writer.writeVarint(vm.rawValue)
            writer.write(target)
            writer.write(optional: reason)
        case .advanceMigration(let migration, let phase):
            writer.writeVarint(migration.rawValue)
            writer.write(enumCase: phase)
        case .finishMigration(let migration):
            writer.writeVarint(migration.rawValue)
        case .abortMigration(let migration, let outcome, let reason):
            writer.writeVarint(migration.rawValue)
            writer.write(enumCase: outcome)
            writer.write(reason)
        }
    }

    /// Reads a command of an entry of `entryVersion`: before version 3, `setNodeState` and
    /// `moveVolume` carried no reason.
    init(from reader: inout ByteReader, entryVersion: UInt8) throws(WireFormatError) {
        let hasReasons = entryVersion >= 3
        let hasWorkloads = entryVersion >= 4
        let hasVersionFive = entryVersion >= 5
        switch try reader.readEnum(CommandKind.self, "cluster command kind") {
        case .setSetting: self = .setSetting(key: try reader.readString(), value: try reader.readString())
        case .deleteSetting: self = .deleteSetting(key: try reader.readString())
        case .registerMember:
            self = .registerMember(id: try reader.readNodeID(), addresses: try MemberAddresses(from: &reader))
        case .registerNode:
            self = .registerNode(
                NodeRegistration(
                    id: try reader.readNodeID(), addresses: try MemberAddresses(from: &reader),
                    role: try reader.readEnum(NodeRole.self, "node role"), usableMemory: try reader.readVarint()))
        case .setNodeState:
            let node = try reader.readNodeID()
            let state = try reader.readEnum(NodeState.self, "node state")
            let reason = hasReasons ? try reader.readOptionalString() : nil
            let hasExpected = entryVersion >= 7 ? try reader.readBool() : false
            self = .setNodeState(
                node, state, reason: reason,
                expected: hasExpected ? try reader.readEnum(NodeState.self, "node state") : nil)
        case .removeNode: self = .removeNode(try reader.readNodeID())
        case .createVolume:
            self = .createVolume(
                VolumeID(try reader.readString()), path: try reader.readString(), coordinator: try reader.readNodeID())
        case .moveVolume:
            self = .moveVolume(
                VolumeID(try reader.readString()), coordinator: try reader.readNodeID(),
                reason: hasReasons ? try reader.readOptionalString() : nil)
        case .deleteVolume: self = .deleteVolume(VolumeID(try reader.readString()))
        case .createVM:
            self = .createVM(
                try VMSpec(
                    from: &reader, hasWorkload: hasWorkloads, hasAutoConverge: hasVersionFive,
                    hasDriver: entryVersion >= 8))
        case .deleteVM: self = .deleteVM(VMID(try reader.readVarint()))
        case .startVM: self = .startVM(VMID(try reader.readVarint()), on: try reader.readOptionalNodeID())
        case .stopVM: self = .stopVM(VMID(try reader.readVarint()))
        case .setVMMemory: self = .setVMMemory(VMID(try reader.readVarint()), try MemorySettings(from: &reader))
        case .setVMOwner:
            self = .setVMOwner(
                VMID(try reader.readVarint()), owner: try reader.readOptionalNodeID(),
                expectedEpoch: Epoch(try reader.readVarint()), reason: try reader.readString())
        case .setVMWorkload:
            guard hasWorkloads else {
                throw WireFormatError("setVMWorkload did not exist in entry format version \(entryVersion)")
            }
            self = .setVMWorkload(VMID(try reader.readVarint()), try Workload(from: &reader))
        case .setVMAutoConverge:
            guard hasVersionFive else {
                throw WireFormatError("setVMAutoConverge did not exist in entry format version \(entryVersion)")
            }
            self = .setVMAutoConverge(VMID(try reader.readVarint()), try reader.readBool())
        case .recordMigrationStats:
            guard hasVersionFive else {
                throw WireFormatError("recordMigrationStats did not exist in entry format version \(entryVersion)")
            }
            self = .recordMigrationStats(MigrationID(try reader.readVarint()), try MigrationStats(from: &reader))
        case .beginMigration:
            self = .beginMigration(
                VMID(try reader.readVarint()), target: try reader.readNodeID(),
                reason: entryVersion >= 6 ? try reader.readOptionalString() : nil)
        case .advanceMigration:
            self = .advanceMigration(
                MigrationID(try reader.readVarint()), to: try reader.readEnum(MigrationPhase.self, "migration phase"))
        case .finishMigration: self = .finishMigration(MigrationID(try reader.readVarint()))
        case .abortMigration:
            self = .abortMigration(
                MigrationID(try reader.readVarint()),
                outcome: try reader.readEnum(MigrationPhase.self, "migration phase"), reason: try reader.readString())
        }
    }
}

extension CommandResult {
    /// The result format written today. Results are not stored, but a node may answer for a
    /// node of another version, so version 1's two forms (first byte 0 or 1) still decode.
    public static let formatVersion: UInt8 = 2

    public var encoded: [UInt8] {
        var hint = 0
        if case .applied(.previous(let value?)) = self { hint = value.utf8.count }
        var writer = ByteWriter(capacity: 64 + hint)
        writer.write(Self.formatVersion)
        switch self {
        case .applied(let outcome):
            writer.write(0 as UInt8)
            outcome.encode(into: &writer)
        case .rejected(let rejection):
            writer.write(1 as UInt8)
            writer.write(enumCase: rejection.kind)
            writer.write(rejection.reason)
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(WireFormatError) {
        var reader = ByteReader(bytes)
        switch try reader.readByte() {
        case 0: self = .applied(.previous(try reader.readOptionalString()))
        // Version 1 had no kinds; every refusal was a validation failure.
        case 1: self = .rejected(.invalid(try reader.readString()))
        case Self.formatVersion:
            switch try reader.readByte() {
            case 0: self = .applied(try CommandOutcome(from: &reader))
            case 1:
                self = .rejected(
                    Rejection(try reader.readEnum(Rejection.Kind.self, "rejection kind"), try reader.readString()))
            case let kind: throw WireFormatError("unknown command result kind \(kind)")
            }
        case let version:
            throw WireFormatError(
                NewerFormatVersion(
                    subject: "a command result", format: "command result format", found: UInt64(version),
                    newest: UInt64(Self.formatVersion)))
        }
        guard reader.isAtEnd else { throw WireFormatError("\(reader.remaining) bytes after a command result") }
    }
}

extension CommandOutcome {
    func encode(into writer: inout ByteWriter) {
        switch self {
        case .previous(let previous):
            writer.write(1 as UInt8)
            writer.write(optional: previous)
        case .node(let node, let state):
            writer.write(2 as UInt8)
            writer.write(node)
            writer.write(enumCase: state)
        case .volume(let volume, let coordinator, let state):
            writer.write(3 as UInt8)
            writer.write(volume.rawValue)
            writer.write(coordinator)
            writer.write(enumCase: state)
        case .vm(let vm):
            writer.write(4 as UInt8)
            writer.writeVarint(vm.id.rawValue)
            writer.write(vm.name)
            writer.write(enumCase: vm.state)
            writer.write(optional: vm.owner)
            writer.writeVarint(vm.epoch.rawValue)
            writer.write(optional: vm.pendingReason)
        case .migration(let migration, let vm, let phase):
            writer.write(5 as UInt8)
            writer.writeVarint(migration.rawValue)
            writer.writeVarint(vm.rawValue)
            writer.write(enumCase: phase)
        }
    }

    init(from reader: inout ByteReader) throws(WireFormatError) {
        switch try reader.readByte() {
        case 1: self = .previous(try reader.readOptionalString())
        case 2: self = .node(try reader.readNodeID(), try reader.readEnum(NodeState.self, "node state"))
        case 3:
            self = .volume(
                VolumeID(try reader.readString()), coordinator: try reader.readNodeID(),
                try reader.readEnum(VolumeState.self, "volume state"))
        case 4:
            self = .vm(
                VMOutcome(
                    id: VMID(try reader.readVarint()), name: try reader.readString(),
                    state: try reader.readEnum(VMState.self, "VM state"), owner: try reader.readOptionalNodeID(),
                    epoch: Epoch(try reader.readVarint()), pendingReason: try reader.readOptionalString()))
        case 5:
            self = .migration(
                MigrationID(try reader.readVarint()), vm: VMID(try reader.readVarint()),
                phase: try reader.readEnum(MigrationPhase.self, "migration phase"))
        case let kind: throw WireFormatError("unknown command outcome kind \(kind)")
        }
    }
}
