// The API's views of the cluster state: how each record of ClusterState is shown.
import ClusterModel
import ClusterState
import FlotillaAPI
import HTTP2
import RaftCore

extension NodeView {
    /// `reported`: the nodes' last memory reports to the leader (empty elsewhere). `membership`:
    /// the Raft membership the answering node knows, which gives the role (`voter`, `learner`, or
    /// `none` for a node that is no Raft member any more, e.g. lost in a `--force-new-cluster`).
    init(_ node: NodeRecord, in state: ClusterState, reported: [NodeID: NodeMemoryFacts], membership: Membership) {
        self.init(
            id: node.id.description,
            state: node.state.description,
            role: Self.role(of: node.id, in: membership),
            peerAddress: node.addresses.peer.description,
            clientAddress: node.addresses.client.description,
            usableMemory: node.usableMemory,
            reservedMemory: state.reservedMemory()[node.id] ?? 0,
            freeMemory: state.freeMemory(on: node.id),
            vms: state.vms.values.filter { $0.owner == node.id }.map(\.name).sorted(),
            memory: reported[node.id].map { NodeMemoryView(usable: $0.usable, assigned: $0.assigned) })
    }

    static func role(of node: NodeID, in membership: Membership) -> String {
        membership.voters.contains(node) ? "voter" : membership.learners.contains(node) ? "learner" : "none"
    }
}

extension VolumeView {
    init(_ volume: VolumeRecord, in state: ClusterState) {
        self.init(
            id: volume.id.rawValue,
            path: volume.path,
            coordinator: volume.coordinator.description,
            state: volume.state.description,
            vms: state.vms.values.filter { $0.disk.volume == volume.id }.map(\.name).sorted())
    }
}

extension VMView {
    /// `reported`: the nodes' last memory reports to the leader; only the owner's counts.
    init(_ vm: VMRecord, in state: ClusterState, reported: [NodeID: NodeMemoryFacts] = [:]) {
        let facts = vm.owner.flatMap { owner in reported[owner]?.vms.first { $0.vm == vm.id } }
        self.init(
            id: vm.id.description,
            name: vm.name,
            state: vm.state.description,
            desiredState: vm.desiredState.description,
            owner: vm.owner?.description,
            epoch: vm.epoch.rawValue,
            pendingReason: vm.pendingReason,
            memory: MemoryView(vm.memory, facts: facts),
            restartPriority: vm.restartPriority.description,
            preferredOwners: vm.preferredOwners.map(\.description),
            antiAffinityClass: vm.antiAffinityClass,
            volume: vm.disk.volume.rawValue,
            diskFile: vm.disk.file,
            migration: state.activeMigration(of: vm.id)?.id.description,
            workload: WorkloadView(vm.workload),
            autoConverge: vm.autoConverge,
            driver: GuestDriverView(vm.driver))
    }
}

extension GuestDriverView {
    init(_ driver: GuestDriver) {
        switch driver {
        case .simulated:
            self.init(kind: "simulated")
        case .qemu(let spec):
            self.init(
                kind: "qemu", vcpus: spec.vcpus, kernel: spec.kernel?.description, initrd: spec.initrd?.description,
                append: spec.kernel == nil ? nil : spec.kernelArguments, diskFormat: spec.diskFormat.rawValue,
                devices: spec.devices.isEmpty ? nil : spec.devices)
        }
    }

    /// The driver this view asks for, for a VM whose disk file is `diskFile`; a 400 says what is
    /// wrong with it.
    func driver(diskFile: String) throws(HTTPError) -> GuestDriver {
        func file(_ text: String?, _ what: String) throws(HTTPError) -> DiskFile? {
            guard let text else { return nil }
            let parts = text.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw HTTPError(
                    status: 400, error: "bad_request_body",
                    detail:
                        "driver.\(what) is VOLUME:PATH, a file on a shared volume (e.g. csv1:boot/vmlinuz), got \(text)"
                )
            }
            return DiskFile(volume: VolumeID(String(parts[0])), file: String(parts[1]))
        }
        switch kind {
        case "simulated":
            guard vcpus == nil, kernel == nil, initrd == nil, append == nil, diskFormat == nil, devices == nil else {
                throw HTTPError(
                    status: 400, error: "bad_request_body",
                    detail:
                        "a simulated guest takes no vcpus, kernel, initrd, append, diskFormat or devices; set driver.kind to qemu"
                )
            }
            return .simulated
        case "qemu":
            var format = QEMUDiskFormat.named(diskFile)
            if let diskFormat {
                guard let given = QEMUDiskFormat(rawValue: diskFormat) else {
                    throw HTTPError(
                        status: 400, error: "bad_request_body",
                        detail: "driver.diskFormat is raw or qcow2, got \(diskFormat)"
                    )
                }
                format = given
            }
            return .qemu(
                QEMUGuestSpec(
                    vcpus: vcpus ?? 1, kernel: try file(kernel, "kernel"), initrd: try file(initrd, "initrd"),
                    kernelArguments: append ?? "", diskFormat: format, devices: devices ?? []))
        default:
            throw HTTPError(
                status: 400, error: "bad_request_body", detail: "driver.kind is simulated or qemu, got \(kind)")
        }
    }
}

extension MigrationStatsView {
    init(_ stats: MigrationStats) {
        self.init(
            rounds: stats.rounds.map {
                Round(
                    bytes: $0.bytes, milliseconds: $0.milliseconds, dirtyBytes: $0.dirtyBytes,
                    throttlePercent: $0.throttlePercent)
            }, memoryBytes: stats.memoryBytes, totalBytes: stats.totalBytes,
            downtimeMicroseconds: stats.downtimeMicroseconds, totalMilliseconds: stats.totalMilliseconds)
    }
}

extension MigrationView {
    init(_ migration: MigrationRecord, in state: ClusterState) {
        self.init(
            id: migration.id.description,
            vm: migration.vm.description,
            vmName: state.vms[migration.vm]?.name,
            source: migration.source.description,
            target: migration.target.description,
            phase: migration.phase.description,
            active: migration.phase.isActive,
            timings: Dictionary(uniqueKeysWithValues: migration.timings.map { ($0.key.description, $0.value) }),
            reason: migration.reason,
            stats: migration.stats.map(MigrationStatsView.init))
    }
}

extension EventView {
    init(_ event: ClusterEvent) {
        self.init(
            sequence: event.sequence,
            time: event.time,
            kind: event.kind.description,
            node: event.node?.description,
            volume: event.volume?.rawValue,
            vm: event.vm?.description,
            migration: event.migration?.description,
            detail: event.detail,
            command: event.command.description)
    }
}

/// The list views of one state, in the order the API answers them.
extension ClusterState {
    func nodeViews(reported: [NodeID: NodeMemoryFacts], membership: Membership) -> [NodeView] {
        nodes.keys.sorted().map { NodeView(nodes[$0]!, in: self, reported: reported, membership: membership) }
    }
    var volumeViews: [VolumeView] { volumes.keys.sorted().map { VolumeView(volumes[$0]!, in: self) } }
    func vmViews(reported: [NodeID: NodeMemoryFacts]) -> [VMView] {
        vms.values.sorted { ($0.name, $0.id) < ($1.name, $1.id) }.map { VMView($0, in: self, reported: reported) }
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
