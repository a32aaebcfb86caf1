// The binary forms of the state's records, shared by the log's commands, their results and snapshots.
public import ClusterModel

// Every reader checks ranges and raw values and throws `WireFormatError`: the bytes may come from
// a damaged disk or a hostile peer, and a decoded value may reach `apply`, which must not trap.

extension ByteWriter {
    mutating func write(optional text: String?) {
        write(text != nil)
        if let text { write(text) }
    }

    /// 0 stands for "no node": no node has id 0.
    mutating func write(optional node: NodeID?) { writeVarint(node?.rawValue ?? 0) }

    mutating func write(_ node: NodeID) { writeVarint(node.rawValue) }

    mutating func write<Value: RawRepresentable<UInt8>>(enumCase value: Value) { write(value.rawValue) }
}

extension ByteReader {
    mutating func readOptionalString() throws(WireFormatError) -> String? {
        try readBool() ? try readString() : nil
    }

    mutating func readOptionalNodeID() throws(WireFormatError) -> NodeID? {
        let raw = try readVarint()
        return raw == 0 ? nil : NodeID(raw)
    }

    mutating func readEnum<Value: RawRepresentable<UInt8>>(_ type: Value.Type, _ what: String) throws(WireFormatError)
        -> Value
    {
        let start = offset
        let raw = try readByte()
        guard let value = Value(rawValue: raw) else {
            throw WireFormatError("\(what) \(raw) at byte \(start) is not known")
        }
        return value
    }

    /// An integer that must lie in `range` (so it converts without trapping).
    mutating func readInt(in range: ClosedRange<Int>, _ what: String) throws(WireFormatError) -> Int {
        let start = offset
        let value = try readVarint()
        guard value <= UInt64(range.upperBound), Int(value) >= range.lowerBound else {
            throw WireFormatError("\(what) \(value) at byte \(start) is outside \(range)")
        }
        return Int(value)
    }
}

extension MemberAddresses {
    func encode(into writer: inout ByteWriter) {
        writer.write(peer.description)
        writer.write(client.description)
    }

    init(from reader: inout ByteReader) throws(WireFormatError) {
        let start = reader.offset
        guard let peer = Endpoint(parsing: try reader.readString()),
            let client = Endpoint(parsing: try reader.readString())
        else {
            throw WireFormatError("member addresses at byte \(start) are not host:port")
        }
        self.init(peer: peer, client: client)
    }
}

extension MemorySettings {
    func encode(into writer: inout ByteWriter) {
        writer.writeVarint(startup)
        writer.writeVarint(minimum)
        writer.writeVarint(maximum)
        writer.writeVarint(bufferPercent)
        writer.writeVarint(priority)
    }

    /// Decodes any values; whether they are consistent is `problem`'s question, asked at apply time.
    /// Percent and priority are bounded here only so that they fit an `Int`.
    init(from reader: inout ByteReader) throws(WireFormatError) {
        self.init(
            startup: try reader.readVarint(), minimum: try reader.readVarint(), maximum: try reader.readVarint(),
            bufferPercent: try reader.readInt(in: 0...Int(UInt32.max), "memory buffer"),
            priority: try reader.readInt(in: 0...Int(UInt32.max), "memory priority"))
    }
}

extension DiskFile {
    func encode(into writer: inout ByteWriter) {
        writer.write(volume.rawValue)
        writer.write(file)
    }

    init(from reader: inout ByteReader) throws(WireFormatError) {
        self.init(volume: VolumeID(try reader.readString()), file: try reader.readString())
    }
}

extension VMSpec {
    func encode(into writer: inout ByteWriter) {
        writer.write(name)
        memory.encode(into: &writer)
        writer.write(enumCase: restartPriority)
        writer.writeVarint(preferredOwners.count)
        for node in preferredOwners { writer.write(node) }
        writer.write(optional: antiAffinityClass)
        disk.encode(into: &writer)
        workload.encode(into: &writer)
        writer.write(autoConverge)
        driver.encode(into: &writer)
    }

    /// Reads a spec of the given format: `hasWorkload` is false for log entries before format
    /// version 4 and snapshots before version 3 (their VMs run the standard workload);
    /// `hasAutoConverge` false before entry version 5 and snapshot version 4 (off); `hasDriver`
    /// false before entry version 8 and snapshot version 5 (simulated).
    init(from reader: inout ByteReader, hasWorkload: Bool, hasAutoConverge: Bool, hasDriver: Bool)
        throws(WireFormatError)
    {
        let name = try reader.readString()
        let memory = try MemorySettings(from: &reader)
        let restartPriority = try reader.readEnum(RestartPriority.self, "restart priority")
        var preferredOwners: [NodeID] = []
        for _ in 0..<(try reader.readCount()) { preferredOwners.append(try reader.readNodeID()) }
        self.init(
            name: name, memory: memory, restartPriority: restartPriority, preferredOwners: preferredOwners,
            antiAffinityClass: try reader.readOptionalString(), disk: try DiskFile(from: &reader),
            workload: hasWorkload ? try Workload(from: &reader) : nil,
            autoConverge: hasAutoConverge ? try reader.readBool() : false,
            driver: hasDriver ? try GuestDriver(from: &reader) : .simulated)
    }
}

extension GuestDriver {
    func encode(into writer: inout ByteWriter) {
        switch self {
        case .simulated:
            writer.write(UInt8(0))
        case .qemu(let spec):
            // 2: the kernel optional, the disk's format and devices (1, before entry version 9 and
            // snapshot version 6: a kernel always, a raw disk, no devices).
            writer.write(UInt8(2))
            writer.writeVarint(UInt64(spec.vcpus))
            writer.write(spec.kernel != nil)
            spec.kernel?.encode(into: &writer)
            writer.write(spec.initrd != nil)
            spec.initrd?.encode(into: &writer)
            writer.write(spec.kernelArguments)
            writer.write(UInt8(spec.diskFormat == .raw ? 0 : 1))
            writer.writeVarint(spec.devices.count)
            for device in spec.devices { writer.write(device) }
        }
    }

    init(from reader: inout ByteReader) throws(WireFormatError) {
        switch try reader.readByte() {
        case 0:
            self = .simulated
        case let layout where layout == 1 || layout == 2:
            let vcpus = try reader.readVarint()
            guard vcpus <= UInt64(QEMUGuestSpec.maximumVCPUs) else { throw WireFormatError("\(vcpus) vcpus") }
            var hasKernel = true
            if layout == 2 { hasKernel = try reader.readBool() }
            let kernel = hasKernel ? try DiskFile(from: &reader) : nil
            let initrd = try reader.readBool() ? try DiskFile(from: &reader) : nil
            let arguments = try reader.readString()
            var format = QEMUDiskFormat.raw
            var devices: [String] = []
            if layout == 2 {
                switch try reader.readByte() {
                case 0: format = .raw
                case 1: format = .qcow2
                case let other: throw WireFormatError("disk format \(other) is not known")
                }
                for _ in 0..<(try reader.readCount()) { devices.append(try reader.readString()) }
            }
            self = .qemu(
                QEMUGuestSpec(
                    vcpus: Int(vcpus), kernel: kernel, initrd: initrd, kernelArguments: arguments, diskFormat: format,
                    devices: devices))
        case let other:
            throw WireFormatError("guest driver \(other) is not known")
        }
    }
}

extension NodeRecord {
    func encode(into writer: inout ByteWriter) {
        writer.write(id)
        addresses.encode(into: &writer)
        writer.write(enumCase: role)
        writer.writeVarint(usableMemory)
        writer.write(enumCase: state)
    }

    init(from reader: inout ByteReader) throws(WireFormatError) {
        self.init(
            id: try reader.readNodeID(), addresses: try MemberAddresses(from: &reader),
            role: try reader.readEnum(NodeRole.self, "node role"), usableMemory: try reader.readVarint(),
            state: try reader.readEnum(NodeState.self, "node state"))
    }
}

extension VolumeRecord {
    func encode(into writer: inout ByteWriter) {
        writer.write(id.rawValue)
        writer.write(path)
        writer.write(coordinator)
        writer.write(enumCase: state)
    }

    init(from reader: inout ByteReader) throws(WireFormatError) {
        self.init(
            id: VolumeID(try reader.readString()), path: try reader.readString(), coordinator: try reader.readNodeID(),
            state: try reader.readEnum(VolumeState.self, "volume state"))
    }
}

extension VMRecord {
    func encode(into writer: inout ByteWriter) {
        writer.writeVarint(id.rawValue)
        VMSpec(
            name: name, memory: memory, restartPriority: restartPriority, preferredOwners: preferredOwners,
            antiAffinityClass: antiAffinityClass, disk: disk, workload: workload, autoConverge: autoConverge,
            driver: driver
        ).encode(into: &writer)
        writer.write(enumCase: desiredState)
        writer.write(optional: owner)
        writer.writeVarint(epoch.rawValue)
        writer.write(enumCase: state)
        writer.write(optional: pendingReason)
    }

    init(from reader: inout ByteReader, snapshotVersion: UInt8) throws(WireFormatError) {
        self.init(
            id: VMID(try reader.readVarint()),
            spec: try VMSpec(
                from: &reader, hasWorkload: snapshotVersion >= 3, hasAutoConverge: snapshotVersion >= 4,
                hasDriver: snapshotVersion >= 5))
        desiredState = try reader.readEnum(DesiredState.self, "desired state")
        owner = try reader.readOptionalNodeID()
        epoch = Epoch(try reader.readVarint())
        state = try reader.readEnum(VMState.self, "VM state")
        pendingReason = try reader.readOptionalString()
    }
}

extension MigrationRecord {
    func encode(into writer: inout ByteWriter) {
        writer.writeVarint(id.rawValue)
        writer.writeVarint(vm.rawValue)
        writer.write(source)
        writer.write(target)
        writer.write(enumCase: phase)
        writer.writeVarint(timings.count)
        for (phase, time) in timings.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            writer.write(enumCase: phase)
            writer.writeVarint(time)
        }
        writer.write(optional: reason)
        writer.write(stats != nil)
        stats?.encode(into: &writer)
    }

    /// Reads a record; snapshots before version 4 had no stats.
    init(from reader: inout ByteReader, hasStats: Bool) throws(WireFormatError) {
        let id = MigrationID(try reader.readVarint())
        let vm = VMID(try reader.readVarint())
        let source = try reader.readNodeID()
        let target = try reader.readNodeID()
        let phase = try reader.readEnum(MigrationPhase.self, "migration phase")
        var timings: [MigrationPhase: UInt64] = [:]
        for _ in 0..<(try reader.readCount(elementBytes: 2)) {
            timings[try reader.readEnum(MigrationPhase.self, "migration phase")] = try reader.readVarint()
        }
        let reason = try reader.readOptionalString()
        let statsFollow = hasStats ? try reader.readBool() : false
        self.init(
            id: id, vm: vm, source: source, target: target, phase: phase, timings: timings, reason: reason,
            stats: statsFollow ? try MigrationStats(from: &reader) : nil)
    }
}

extension MigrationStats {
    public func encode(into writer: inout ByteWriter) {
        writer.writeVarint(rounds.count)
        for round in rounds {
            writer.writeVarint(round.bytes)
            writer.writeVarint(round.milliseconds)
            writer.writeVarint(round.dirtyBytes)
            writer.writeVarint(round.throttlePercent)
        }
        writer.writeVarint(memoryBytes)
        writer.writeVarint(totalBytes)
        writer.write(downtimeMicroseconds != nil)
        if let downtimeMicroseconds { writer.writeVarint(downtimeMicroseconds) }
        writer.write(totalMilliseconds != nil)
        if let totalMilliseconds { writer.writeVarint(totalMilliseconds) }
    }

    public init(from reader: inout ByteReader) throws(WireFormatError) {
        let count = try reader.readCount(elementBytes: 4)
        guard count <= Self.maxRounds else {
            throw WireFormatError("\(count) migration rounds, above \(Self.maxRounds)")
        }
        var rounds: [Round] = []
        for _ in 0..<count {
            let bytes = try reader.readVarint()
            let milliseconds = try reader.readVarint()
            let dirty = try reader.readVarint()
            let throttle = try reader.readInt()
            guard (0...100).contains(throttle) else { throw WireFormatError("a throttle of \(throttle) %") }
            rounds.append(Round(bytes: bytes, milliseconds: milliseconds, dirtyBytes: dirty, throttlePercent: throttle))
        }
        let memory = try reader.readVarint()
        let total = try reader.readVarint()
        let downtime = try reader.readBool() ? try reader.readVarint() : nil
        let whole = try reader.readBool() ? try reader.readVarint() : nil
        self.init(
            rounds: rounds, memoryBytes: memory, totalBytes: total, downtimeMicroseconds: downtime,
            totalMilliseconds: whole)
    }
}

extension ClusterEvent {
    func encode(into writer: inout ByteWriter) {
        writer.writeVarint(sequence)
        writer.writeVarint(time)
        writer.write(enumCase: kind)
        writer.write(optional: node)
        writer.write(optional: volume?.rawValue)
        writer.writeVarint(vm?.rawValue ?? 0)
        writer.writeVarint(migration?.rawValue ?? 0)
        writer.write(detail)
        writer.write(enumCase: command)
    }

    init(from reader: inout ByteReader) throws(WireFormatError) {
        let sequence = try reader.readVarint()
        let time = try reader.readVarint()
        let kind = try reader.readEnum(EventKind.self, "event kind")
        let node = try reader.readOptionalNodeID()
        let volume = try reader.readOptionalString().map(VolumeID.init(rawValue:))
        let vm = try reader.readVarint()
        let migration = try reader.readVarint()
        self.init(
            sequence: sequence, time: time, kind: kind, node: node, volume: volume, vm: vm == 0 ? nil : VMID(vm),
            migration: migration == 0 ? nil : MigrationID(migration), detail: try reader.readString(),
            command: try reader.readEnum(CommandKind.self, "command kind"))
    }
}

// MARK: - Snapshot

extension ClusterState {
    /// The snapshot format written today. Version 6 let a QEMU guest boot its disk (raw or qcow2); version 5
    /// added VMs' guest drivers; version 4 added VMs' auto-converge and migrations'
    /// stats; version 3 added VMs' workloads; versions 3, 2 (VMs run the standard workload) and 1
    /// (settings and member addresses only) still decode.
    public static let snapshotVersion: UInt8 = 6

    /// The whole state as bytes, for a Raft snapshot; keys in order, so equal states give equal bytes.
    public var snapshot: [UInt8] {
        var writer = ByteWriter(capacity: 4096)
        writer.write(Self.snapshotVersion)
        writer.writeVarint(settings.count)
        for (key, value) in settings.sorted(by: { $0.key < $1.key }) {
            writer.write(key)
            writer.write(value)
        }
        writer.writeVarint(memberAddresses.count)
        for (id, addresses) in memberAddresses.sorted(by: { $0.key < $1.key }) {
            writer.write(id)
            addresses.encode(into: &writer)
        }
        writer.writeVarint(nodes.count)
        for (_, node) in nodes.sorted(by: { $0.key < $1.key }) { node.encode(into: &writer) }
        writer.writeVarint(volumes.count)
        for (_, volume) in volumes.sorted(by: { $0.key < $1.key }) { volume.encode(into: &writer) }
        writer.writeVarint(vms.count)
        for (_, vm) in vms.sorted(by: { $0.key < $1.key }) { vm.encode(into: &writer) }
        writer.writeVarint(migrations.count)
        for (_, migration) in migrations.sorted(by: { $0.key < $1.key }) { migration.encode(into: &writer) }
        writer.writeVarint(events.count)
        for event in events { event.encode(into: &writer) }
        writer.writeVarint(nextVMID.rawValue)
        writer.writeVarint(nextMigrationID.rawValue)
        writer.writeVarint(nextEventSequence)
        return writer.bytes
    }

    public init(snapshot bytes: [UInt8]) throws(WireFormatError) {
        var reader = ByteReader(bytes)
        let version = try reader.readByte()
        guard version <= Self.snapshotVersion else {
            throw WireFormatError(
                NewerFormatVersion(
                    subject: "the cluster state snapshot", format: "state snapshot format", found: UInt64(version),
                    newest: UInt64(Self.snapshotVersion)))
        }
        guard version >= 1 else {
            throw WireFormatError(
                "cluster state snapshot version 0 does not exist (this build reads 1 to \(Self.snapshotVersion))")
        }
        self.init()
        for _ in 0..<(try reader.readCount(elementBytes: 2)) {
            settings[try reader.readString()] = try reader.readString()
        }
        for _ in 0..<(try reader.readCount(elementBytes: 5)) {
            memberAddresses[try reader.readNodeID()] = try MemberAddresses(from: &reader)
        }
        if version >= 2 { try readRecords(from: &reader, version: version) }
        guard reader.isAtEnd else { throw WireFormatError("\(reader.remaining) bytes after the cluster state") }
    }

    private mutating func readRecords(from reader: inout ByteReader, version: UInt8) throws(WireFormatError) {
        for _ in 0..<(try reader.readCount(elementBytes: 8)) {
            let node = try NodeRecord(from: &reader)
            guard nodes.updateValue(node, forKey: node.id) == nil else {
                throw WireFormatError("node \(node.id) appears twice in the snapshot")
            }
        }
        for _ in 0..<(try reader.readCount(elementBytes: 4)) {
            let volume = try VolumeRecord(from: &reader)
            guard volumes.updateValue(volume, forKey: volume.id) == nil else {
                throw WireFormatError("volume \(volume.id) appears twice in the snapshot")
            }
        }
        for _ in 0..<(try reader.readCount(elementBytes: 16)) {
            let vm = try VMRecord(from: &reader, snapshotVersion: version)
            guard vms.updateValue(vm, forKey: vm.id) == nil else {
                throw WireFormatError("\(vm.id) appears twice in the snapshot")
            }
        }
        for _ in 0..<(try reader.readCount(elementBytes: 7)) {
            let migration = try MigrationRecord(from: &reader, hasStats: version >= 4)
            guard migrations.updateValue(migration, forKey: migration.id) == nil else {
                throw WireFormatError("\(migration.id) appears twice in the snapshot")
            }
        }
        for _ in 0..<(try reader.readCount(elementBytes: 8)) {
            let event = try ClusterEvent(from: &reader)
            guard events.last.map({ $0.sequence < event.sequence }) ?? true else {
                throw WireFormatError("event \(event.sequence) is out of order in the snapshot")
            }
            events.append(event)
        }
        nextVMID = VMID(try reader.readVarint())
        nextMigrationID = MigrationID(try reader.readVarint())
        nextEventSequence = try reader.readVarint()
        // Counters only grow, by one per command; bounding them here keeps every `+ 1` in apply from trapping.
        let counterLimit = UInt64(1) << 62
        guard vms.keys.allSatisfy({ $0 < nextVMID }), nextVMID.rawValue < counterLimit,
            migrations.keys.allSatisfy({ $0 < nextMigrationID }), nextMigrationID.rawValue < counterLimit,
            events.last.map({ $0.sequence < nextEventSequence }) ?? true, nextEventSequence < counterLimit,
            vms.values.allSatisfy({ $0.epoch.rawValue < counterLimit })
        else {
            throw WireFormatError("the snapshot's id counters, event sequence or epochs are inconsistent")
        }
    }
}
