// The node agent: runs exactly the VMs the committed state says this node owns, like a kubelet.
public import ClusterModel
public import ClusterState
public import DynamicMemory
public import FlotillaAPI
import Foundation
import Guests
import LiveMigration
public import Logging
import QEMU

/// Reconciles the guests this node runs with the cluster state it has applied (DESIGN.md §3).
///
/// Whenever the applied state changes (and at least every `reconcileInterval`) it reads the node's own applied state — a stale read, on purpose:
/// ownership changes only by committed entries, and this node must act on what it has applied,
/// never on a leader's answer it cannot be sure to have seen — and then:
/// 1. stops every guest whose VM this node no longer owns, that is no longer running, or whose
///    epoch changed (a new epoch is a new ownership, even on the same node);
/// 2. starts every VM it owns that runs in the state and has no guest here, under the committed
///    epoch, once the volume's coordinator has made its disk file; the guest replays its journal
///    and refuses to write if the journal has a newer epoch.
///
/// `fence(reason:)` stops everything at once, and while fenced the agent runs nothing; the lease
/// code calls it when this node may no longer be sure it owns anything (DESIGN.md §8).
///
/// It is also the node's dynamic-memory agent (DESIGN.md §10, docs/dynamic-memory.md): every
/// `balanceInterval` (and after each reconcile pass) it runs the `MemoryBalancer` over the guests
/// it runs, with their demands, and gives each its assignment (hot-add or balloon). A VM the state
/// says runs here starts only once the balancer has reserved its startup memory; until then it
/// waits, with the reason shown. The sum of assignments never exceeds `usableMemory`.
///
/// Every guest it started is in `guests` (or `stopping`) from before its start until its stop has
/// returned, so `fence` and shutdown see guests whose start is still in flight.
public actor NodeAgent {
    public struct Configuration: Sendable {
        public var node: NodeID
        /// Where volumes live: a disk file is `<sharedRoot>/<volume path>/<disk file>`.
        public var sharedRoot: String
        public var journalInterval: Duration
        public var reconcileInterval: Duration
        /// What the guests' beats, the workload's time and the balancer are measured by.
        public var clock: NodeClock
        /// The memory this node offers its VMs: the balancer never assigns more.
        public var usableMemory: UInt64
        /// How often memory is balanced until the cluster setting `memory.balance-interval-ms` says otherwise.
        public var balanceInterval: Duration
        public var balancerPolicy: BalancerPolicy

        public init(
            node: NodeID, sharedRoot: String, journalInterval: Duration = .milliseconds(100),
            reconcileInterval: Duration = .milliseconds(200), clock: NodeClock = NodeClock(ContinuousClock()),
            usableMemory: UInt64 = NodeConfiguration.defaultUsableMemory,
            balanceInterval: Duration = Setting.defaultBalanceInterval, balancerPolicy: BalancerPolicy = .init()
        ) {
            self.node = node
            self.sharedRoot = sharedRoot
            self.journalInterval = journalInterval
            self.reconcileInterval = reconcileInterval
            self.clock = clock
            self.usableMemory = usableMemory
            self.balanceInterval = balanceInterval
            self.balancerPolicy = balancerPolicy
        }

        /// Where QEMU guests' control sockets and consoles go: `<dir>/qemu/` (the node's data
        /// directory); nil, or a path too long for a UNIX socket, puts them under /tmp.
        public var qemuRuntimeDirectory: String?

        init(_ configuration: NodeConfiguration, clock: NodeClock) {
            self.init(
                node: configuration.nodeID, sharedRoot: configuration.sharedRoot,
                journalInterval: .milliseconds(configuration.journalIntervalMilliseconds), clock: clock,
                usableMemory: configuration.usableMemory)
            self.qemuRuntimeDirectory = configuration.dataDirectory
        }
    }

    /// A VM the applied state says this node runs, as it says it.
    private struct Want {
        let vm: VMRecord
        let diskPath: String
        /// For a QEMU guest: the absolute paths of what it boots, on the shared volumes (no kernel:
        /// it boots its disk).
        var boot: (kernel: String?, initrd: String?)? = nil
    }

    /// A guest this agent started (or is starting), with what it was started for.
    private struct Entry {
        let guest: any AgentGuest
        let epoch: Epoch
        let name: String
        let diskPath: String
        /// The VM's settings and workload as last applied; the guest follows workload changes.
        var memory: MemorySettings
        var workload: Workload
        /// What the balancer last gave the guest.
        var assigned: UInt64
        /// Set when the guest came here by live migration: for the agent view.
        var arrival: AgentView.Arrival? = nil
    }

    public let configuration: Configuration
    private let readState: @Sendable () async -> ClusterState
    /// The way to the disks: files made through the coordinator, I/O redirected while the direct path is broken.
    private let volumes: NodeVolumes
    private let logger: Logger
    private var guests: [VMID: Entry] = [:]
    /// QEMU on this node, and the accelerator it runs guests with (probed once, at the first).
    private let qemuHost = QEMUHostSettings()
    /// Guests whose stop has begun but not returned, so `fence` can wait for them too.
    private var stopping: [ObjectIdentifier: any AgentGuest] = [:]
    /// Why a VM this node owns does not run here, by VM, with the epoch it was tried under.
    private var problems: [VMID: (name: String, epoch: Epoch, error: String)] = [:]
    /// Set while fenced: the reason.
    private var fenceReason: String?
    /// Counts fences, so a pass that waited across a fence and an unfence drops what it read before.
    private var fences = 0
    /// Wakes `run` when the applied state changes or this node unfences.
    private let changes: StateChanges
    /// VMs the state says run here that have no guest yet: they wait for the balancer to reserve
    /// their startup memory (at most one reconcile pass, unless memory is short).
    private var waiting: [VMID: Want] = [:]
    private var balancer: MemoryBalancer
    /// The balancer's last answer per VM, for the heartbeat's memory facts and the agent view.
    private var assignments: [VMID: MemoryAssignment] = [:]
    /// Set while a balancing pass is in flight: passes do not overlap (the timer's and reconcile's).
    private var balancing = false
    /// The balance interval the applied state sets, if it sets one.
    private var balanceInterval: Duration
    /// VMs migrating away: their assignment stays as it was copied until the migration ends.
    private var frozen: Set<VMID> = []
    /// Memory reserved for incoming migrations' shells, by migration, until the VM runs here or
    /// the migration ends.
    private var incomingReservations: [MigrationID: (vm: VMID, bytes: UInt64)] = [:]
    /// Incoming migrations whose memory is being freed: every balancing pass counts each as a VM
    /// waiting to start with the memory it comes with, until it fits (then it is reserved).
    private var pendingIncoming: [MigrationID: (vm: VMID, settings: MemorySettings, bytes: UInt64)] = [:]
    /// The shells of incoming migrations (docs/live-migration.md); nil: this node takes none.
    private let incoming: IncomingMigrations?
    /// The QEMU processes of incoming migrations of real guests, paused and taking the stream,
    /// until the switchover (then the VM's guest) or the migration's end (then stopped).
    private var incomingQEMU: [MigrationID: (vm: VMID, guest: QEMUAgentGuest)] = [:]
    /// Told when a VM whose migration switched over to this node runs here, with the copy's
    /// facts and when it resumed (wall clock, µs): the migration's record gets its downtime.
    private let adopted: (@Sendable (MigrationID, MigrationWire.Finish, UInt64) -> Void)?

    /// Without `volumes`, the agent reaches only volumes its own node coordinates.
    public init(
        configuration: Configuration, readState: @escaping @Sendable () async -> ClusterState,
        volumes: NodeVolumes? = nil, changes: StateChanges = StateChanges(), logger: Logger
    ) {
        self.init(
            configuration: configuration, readState: readState, volumes: volumes, changes: changes, incoming: nil,
            adopted: nil, logger: logger)
    }

    init(
        configuration: Configuration, readState: @escaping @Sendable () async -> ClusterState,
        volumes: NodeVolumes?, changes: StateChanges, incoming: IncomingMigrations?,
        adopted: (@Sendable (MigrationID, MigrationWire.Finish, UInt64) -> Void)?, logger: Logger
    ) {
        self.incoming = incoming
        self.adopted = adopted
        self.configuration = configuration
        self.changes = changes
        self.balancer = MemoryBalancer(policy: configuration.balancerPolicy)
        self.balanceInterval = configuration.balanceInterval
        self.readState = readState
        self.volumes =
            volumes
            ?? NodeVolumes(
                node: configuration.node, sharedRoot: configuration.sharedRoot, readState: readState, link: nil,
                logger: logger)
        self.logger = logger
    }

    /// Reconciles on every change of the applied state, and at least every `reconcileInterval`,
    /// and balances memory every balance interval, until cancelled; then stops every guest.
    public func run() async {
        let clock = configuration.clock
        let balance = Task {
            var next = clock.now
            while !Task.isCancelled {
                next += self.balanceInterval
                do { try await clock.sleep(until: next) } catch { return }
                await self.balanceMemory()
                // A node that fell behind (a busy machine) does not burst to catch up.
                if next < clock.now { next = clock.now }
            }
        }
        await changes.follow(every: configuration.reconcileInterval) { await self.reconcile() }
        balance.cancel()
        await balance.value
        await stopAll()
    }

    /// Stops every guest and runs none until `unfence()`. Returns once no guest writes anymore.
    public func fence(reason: String) async {
        if fenceReason == nil {
            logger.warning("node \(configuration.node) fenced: stopping all its VMs", metadata: ["reason": "\(reason)"])
        }
        fenceReason = reason
        fences += 1
        waiting = [:]
        await stopAll()
    }

    /// Lets the next reconcile pass start what the state says this node owns again.
    public func unfence() {
        if let reason = fenceReason { logger.info("node \(configuration.node) unfenced (was: \(reason))") }
        fenceReason = nil
        changes.signal()
    }

    /// Reconcile passes finished (or given up because of a fence): a test waits for one to know
    /// the agent has looked at the state, instead of waiting for time.
    package private(set) var passes = 0

    /// One pass: make the guests here match the state.
    public func reconcile() async {
        defer { passes += 1 }
        // A state read before a fence may predate the entries the unfence waited for (the VMs
        // failed over elsewhere meanwhile): a pass that a fence overtook starts nothing.
        let fencesBefore = fences
        let state = await readState()
        guard fenceReason == nil, fences == fencesBefore else { return }
        balanceInterval =
            state.settings[Setting.balanceIntervalKey].flatMap(Setting.balanceInterval) ?? configuration.balanceInterval
        let wanted = desiredGuests(in: state)

        // Guests that stopped on their own (their disk failed) are reported and started again.
        for (id, entry) in guests {
            let status = await entry.guest.status
            guard !status.running, guests[id]?.guest === entry.guest, let failure = status.failure else { continue }
            guests[id] = nil
            report(id, name: entry.name, epoch: entry.epoch, failure)
        }
        // A guest migrating away stays until its source lets go of it (`release(migrating:)`):
        // a real guest's QEMU still sends its last pages after the switchover has committed.
        for (id, entry) in guests where wanted[id]?.vm.epoch != entry.epoch && !frozen.contains(id) {
            let reason = wanted[id] == nil ? "this node no longer runs it" : "its epoch is now \(wanted[id]!.vm.epoch)"
            logger.info("stopping \(id) (\(entry.name)) of epoch \(entry.epoch): \(reason)")
            await stop(id)
        }
        for id in problems.keys where wanted[id] == nil { problems[id] = nil }

        // Settings and workloads of running guests may have changed: the balancer takes the new
        // settings on its next pass, and the guest follows its new workload at once.
        for (id, want) in wanted {
            guard var entry = guests[id], entry.epoch == want.vm.epoch else { continue }
            entry.memory = want.vm.memory
            if entry.workload != want.vm.workload {
                entry.workload = want.vm.workload
                await entry.guest.follow(want.vm.workload)
            }
            if guests[id]?.guest === entry.guest { guests[id] = entry }
        }
        // A VM whose migration switched over to this node continues from its copied image.
        for (id, want) in wanted.sorted(by: { $0.key < $1.key }) where guests[id] == nil {
            guard fenceReason == nil, fences == fencesBefore else { return }
            if let shell = incoming?.take(vm: id) {
                await adopt(want, shell)
            } else if let (migration, arriving) = incomingQEMU.first(where: { $0.value.vm == id }),
                state.migrations[migration]?.phase == .completed
            {
                await adoptQEMU(want, migration: migration, guest: arriving.guest)
            }
        }
        // QEMU processes of incoming migrations that ended without switching over here are stopped.
        // Judged by `migrationHasEnded`: a migration this pass's state does not know yet is newer
        // than it (its prepare was answered during this pass's awaits), not over.
        for (migration, arriving) in incomingQEMU where state.migrationHasEnded(migration) {
            guard state.migrations[migration]?.phase != .completed || wanted[arriving.vm] == nil else { continue }
            incomingQEMU[migration] = nil
            await arriving.guest.stop()
        }
        // Copied images whose guest could not start yet (its disk's coordinator may be failing
        // over): kept, with their memory, for the next pass; such a VM does not boot from nothing.
        let adopting = Set(
            incomingReservations.filter { migration, reservation in
                state.migrations[migration]?.phase == .completed && wanted[reservation.vm] != nil
                    && guests[reservation.vm] == nil
            }.values.map(\.vm))
        // Reservations of migrations that ended without switching over here are let go.
        for (migration, reservation) in incomingReservations
        where state.migrationHasEnded(migration) && guests[reservation.vm] == nil
            && !adopting.contains(reservation.vm)
        {
            incomingReservations[migration] = nil
            incoming?.discard(migration)
        }
        for (migration, _) in pendingIncoming where state.migrationHasEnded(migration) {
            pendingIncoming[migration] = nil
            incoming?.discard(migration)
        }
        // The rest start once the balancer has reserved their startup memory.
        guard fenceReason == nil, fences == fencesBefore else { return }
        waiting = wanted.filter { guests[$0.key] == nil && !adopting.contains($0.key) }
        await balanceMemory()
    }

    /// Runs a VM migrated here from the image its source copied, under the epoch of the switchover.
    private func adopt(
        _ want: Want, _ shell: (migration: MigrationID, memory: GuestMemory, finish: MigrationWire.Finish)
    ) async {
        let vm = want.vm
        let bytes = shell.memory.bytes
        let arrival = AgentView.Arrival(
            migration: shell.migration.description, sourceChecksum: Self.hex(shell.finish.checksum),
            imageChecksum: Self.hex(shell.memory.checksum))
        incomingReservations[shell.migration] = nil
        let guest = Guest(
            configuration: GuestConfiguration(
                vm: vm.id, diskPath: want.diskPath, memoryBytes: bytes, workload: vm.workload,
                journalInterval: configuration.journalInterval,
                seed: vm.id.rawValue &* 0x9E37_79B9_7F4A_7C15 ^ vm.epoch.rawValue,
                redirect: volumes.redirect(for: vm.disk, diskPath: want.diskPath), clock: configuration.clock),
            migrated: shell.memory, activity: shell.finish.activity)
        let started = await start(
            vm.id,
            Entry(
                guest: guest, epoch: vm.epoch, name: vm.name, diskPath: want.diskPath, memory: vm.memory,
                workload: vm.workload, assigned: bytes, arrival: arrival))
        guard started else {
            // The copied image is the VM's memory: kept for the next pass, which tries again.
            incomingReservations[shell.migration] = (vm.id, bytes)
            incoming?.restore(shell.migration, vm: vm.id, memory: shell.memory, finish: shell.finish)
            return
        }
        guard guests[vm.id]?.guest === guest else { return }
        adopted?(shell.migration, shell.finish, WallClock.microseconds())
    }

    /// Runs a real guest migrated here: its QEMU, which took the stream, runs once the stream is all
    /// in, under the epoch of the switchover. When it cannot (the source died after the commit,
    /// before the last bytes), the VM boots here from its disk at the next pass, as after a failover.
    private func adoptQEMU(_ want: Want, migration: MigrationID, guest: QEMUAgentGuest) async {
        let vm = want.vm
        incomingQEMU[migration] = nil
        let bytes = incomingReservations.removeValue(forKey: migration)?.bytes ?? vm.memory.startup
        let entry = Entry(
            guest: guest, epoch: vm.epoch, name: vm.name, diskPath: want.diskPath, memory: vm.memory,
            workload: vm.workload, assigned: bytes,
            arrival: AgentView.Arrival(migration: migration.description, sourceChecksum: nil, imageChecksum: nil))
        // In `guests` before the first await, so a fence that comes in meanwhile stops it too.
        guests[vm.id] = entry
        // The balancer leaves it alone until it runs (QEMU is still loading its memory).
        frozen.insert(vm.id)
        defer { frozen.remove(vm.id) }
        do {
            try await guest.takeOver(epoch: vm.epoch, assigned: bytes)
        } catch {
            if guests[vm.id]?.guest === guest { guests[vm.id] = nil }
            report(vm.id, name: vm.name, epoch: vm.epoch, "\(error); it boots again from its disk")
            return
        }
        guard guests[vm.id]?.guest === guest else { return }
        problems[vm.id] = nil
        logger.info("\(vm.id) (\(vm.name)) runs here at epoch \(vm.epoch), migrated by \(migration)")
    }

    /// What the state says this node runs: its VMs in state running, with their disk files.
    private func desiredGuests(in state: ClusterState) -> [VMID: Want] {
        var wanted: [VMID: Want] = [:]
        for vm in state.vms.values where vm.owner == configuration.node && vm.state == .running {
            guard let volume = state.volumes[vm.disk.volume] else {
                report(vm.id, name: vm.name, epoch: vm.epoch, "its disk's volume \(vm.disk.volume) is not in the state")
                continue
            }
            var want = Want(vm: vm, diskPath: diskPath(of: vm, on: volume))
            if case .qemu(let spec) = vm.driver {
                guard let boot = bootFiles(spec, in: state) else {
                    report(vm.id, name: vm.name, epoch: vm.epoch, "its kernel's or initrd's volume is not in the state")
                    continue
                }
                want.boot = boot
            }
            wanted[vm.id] = want
        }
        return wanted
    }

    /// Where a VM's disk file lies, below the shared root.
    private func diskPath(of vm: VMRecord, on volume: VolumeRecord) -> String {
        configuration.sharedRoot + "/" + volume.path + "/" + vm.disk.file
    }

    /// `path` made absolute: QEMU gets paths as they are, and a shared root may be given relative
    /// to the node's working directory (`flotilla local up` does).
    private static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// The absolute paths of what a QEMU guest boots, on the shared volumes; nil when a volume is
    /// not in the state.
    private func bootFiles(_ spec: QEMUGuestSpec, in state: ClusterState) -> (kernel: String?, initrd: String?)? {
        let root = Self.absolute(configuration.sharedRoot)
        func path(_ file: DiskFile) -> String? {
            state.volumes[file.volume].map { root + "/" + $0.path + "/" + file.file }
        }
        guard spec.kernel.map(path) != .some(nil), spec.initrd.map(path) != .some(nil) else { return nil }
        return (spec.kernel.flatMap(path), spec.initrd.flatMap(path))
    }

    /// A QEMU guest of `vm` (not started) booting `boot` with its disk at `diskPath`, its process's
    /// files in the runtime directory `runtime` (`qemuDirectory`).
    private func qemuGuest(
        _ vm: VMRecord, spec: QEMUGuestSpec, boot: (kernel: String?, initrd: String?), diskPath: String, runtime: String
    ) -> QEMUAgentGuest {
        QEMUAgentGuest(
            vm: vm.id, name: vm.name, spec: spec, memory: vm.memory, kernel: boot.kernel, initrd: boot.initrd,
            disk: Self.absolute(diskPath), directory: qemuDirectory(runtime), host: qemuHost, clock: configuration.clock
        )
    }

    /// Where a QEMU guest's files go: `<data dir>/qemu/NAME`, or under /tmp when that path is too
    /// long for its sockets.
    private func qemuDirectory(_ name: String) -> String {
        if let data = configuration.qemuRuntimeDirectory {
            // The longest file in it is `migration-out.sock`.
            let candidate = Self.absolute(data) + "/qemu/" + name
            if (candidate + "/migration-out.sock").utf8.count <= QEMUGuest.maximumSocketPath { return candidate }
        }
        return "/tmp/flotilla-qemu-\(ProcessInfo.processInfo.processIdentifier)/" + name
    }

    /// Starts the guest of `want` with the memory the balancer reserved for it.
    private func start(_ want: Want, assigned: UInt64) async {
        let vm = want.vm
        if case .qemu(let spec) = vm.driver {
            await startQEMU(want, spec: spec, assigned: assigned)
            return
        }
        let guest = Guest(
            configuration: GuestConfiguration(
                vm: vm.id, diskPath: want.diskPath, memoryBytes: assigned, workload: vm.workload,
                journalInterval: configuration.journalInterval,
                seed: vm.id.rawValue &* 0x9E37_79B9_7F4A_7C15 ^ vm.epoch.rawValue,
                redirect: volumes.redirect(for: vm.disk, diskPath: want.diskPath), clock: configuration.clock))
        await start(
            vm.id,
            Entry(
                guest: guest, epoch: vm.epoch, name: vm.name, diskPath: want.diskPath, memory: vm.memory,
                workload: vm.workload, assigned: assigned))
    }

    /// Starts a QEMU guest for `want`: its kernel and initrd are files on the shared volumes, its
    /// process's files (control socket, console) in the node's data directory, or under /tmp when
    /// that path is too long for a UNIX socket.
    private func startQEMU(_ want: Want, spec: QEMUGuestSpec, assigned: UInt64) async {
        let vm = want.vm
        guard let boot = want.boot else { return }
        let guest = qemuGuest(
            vm, spec: spec, boot: boot, diskPath: want.diskPath,
            runtime: "\(configuration.node)-\(vm.id)-e\(vm.epoch.rawValue)")
        await start(
            vm.id,
            Entry(
                guest: guest, epoch: vm.epoch, name: vm.name, diskPath: want.diskPath, memory: vm.memory,
                workload: vm.workload, assigned: assigned))
    }

    /// False when the guest could not start (the disk or its journal refused; reported), true
    /// otherwise, also when a fence or a newer guest overtook the start.
    @discardableResult
    private func start(_ id: VMID, _ entry: Entry) async -> Bool {
        // In `guests` before the first await, so a fence that comes in meanwhile stops it too.
        guests[id] = entry
        do {
            // Creating the disk file is a metadata operation: the volume's coordinator does it.
            try await volumes.prepareDisk(of: id)
            try await entry.guest.start(epoch: entry.epoch)
        } catch {
            if guests[id]?.guest === entry.guest { guests[id] = nil }
            report(id, name: entry.name, epoch: entry.epoch, "\(error)")
            return false
        }
        guard guests[id]?.guest === entry.guest else { return true }  // fenced or replaced meanwhile
        let status = await entry.guest.status
        problems[id] = nil
        logger.info(
            "started \(id) (\(entry.name)) at epoch \(entry.epoch)",
            metadata: [
                "disk": "\(entry.diskPath)", "replayed": "\(status.recordsReplayed)",
                "torn-bytes": "\(status.tornBytesTruncated)",
            ])
        return true
    }

    /// One balancing pass: asks each guest its demand, runs the balancer, gives each running guest
    /// its assignment and starts the waiting VMs whose startup memory it reserved.
    package func balanceMemory() async {
        guard !balancing else { return }
        balancing = true
        defer { balancing = false }
        // The guests' demands first (they are asked across the actor boundary), then one pure pass
        // on what was gathered, then the answers, each checked against a stop that came meanwhile.
        var requests: [MemoryRequest] = []
        var asked: [VMID: any AgentGuest] = [:]
        for (id, entry) in guests.sorted(by: { $0.key < $1.key }) where !frozen.contains(id) {
            requests.append(
                MemoryRequest(
                    vm: id, settings: entry.memory, demand: await entry.guest.demand, assigned: entry.assigned))
            asked[id] = entry.guest
        }
        let starting = fenceReason == nil ? waiting.filter { guests[$0.key] == nil } : [:]
        for (id, want) in starting.sorted(by: { $0.key < $1.key }) {
            requests.append(
                MemoryRequest(
                    vm: id, settings: want.vm.memory, demand: want.vm.workload.demand(at: .zero), assigned: nil))
        }
        for (_, shell) in pendingIncoming.sorted(by: { $0.key < $1.key }) {
            // Its memory as copied, whatever its startup memory: the shell needs all of it.
            var fixed = shell.settings
            fixed.startup = shell.bytes
            fixed.minimum = min(fixed.minimum, shell.bytes)
            fixed.maximum = max(fixed.maximum, shell.bytes)
            requests.append(MemoryRequest(vm: shell.vm, settings: fixed, demand: 0, assigned: nil))
        }
        // Guests that stopped meanwhile hold nothing any more.
        requests.removeAll { request in request.assigned != nil && guests[request.vm]?.guest !== asked[request.vm] }
        // Memory the balancer does not move: guests migrating away, shells of incoming migrations.
        let fixed =
            guests.filter { frozen.contains($0.key) }.values.reduce(UInt64(0)) { $0 + $1.assigned }
            + incomingReservations.values.reduce(UInt64(0)) { $0 + $1.bytes }
        let usable = configuration.usableMemory > fixed ? configuration.usableMemory - fixed : 0
        let answers = balancer.pass(now: configuration.clock.now, usable: usable, requests: requests)
        assignments = Dictionary(uniqueKeysWithValues: answers.map { ($0.vm, $0) })
        // Decreases first (balloons), then increases and starts: the guests' memory adds up to at
        // most the usable memory while the answers are applied too, not only once they all are.
        let shrinking = answers.filter { answer in guests[answer.vm].map { answer.assigned < $0.assigned } ?? false }
        let rest = answers.filter { answer in !(guests[answer.vm].map { answer.assigned < $0.assigned } ?? false) }
        for answer in shrinking + rest {
            if var entry = guests[answer.vm], entry.guest === asked[answer.vm] {
                guard answer.assigned != entry.assigned else { continue }
                entry.assigned = answer.assigned
                guests[answer.vm] = entry
                await entry.guest.assign(bytes: answer.assigned)
            } else if let (migration, shell) = pendingIncoming.first(where: { $0.value.vm == answer.vm }) {
                guard answer.status != .waiting else { continue }
                pendingIncoming[migration] = nil
                incomingReservations[migration] = (shell.vm, shell.bytes)
            } else if let want = starting[answer.vm], guests[answer.vm] == nil, fenceReason == nil {
                guard answer.status != .waiting else {
                    report(
                        answer.vm, name: want.vm.name, epoch: want.vm.epoch,
                        "waiting for memory: it needs \(ByteCount(want.vm.memory.startup)) to start and this node "
                            + "cannot free that much now (\(ByteCount(configuration.usableMemory)) usable)")
                    continue
                }
                waiting[answer.vm] = nil
                await start(want, assigned: answer.assigned)
            }
        }
    }

    // MARK: Live migration

    /// A migration's source takes its guest: it must run here; its assignment is frozen (the
    /// balancer leaves it as the copy takes it) until `release(migrating:)`.
    func migrating(_ vm: VMID) async -> (guest: MigratingGuest, epoch: Epoch, assigned: UInt64)? {
        guard let entry = guests[vm] else { return nil }
        let guest: MigratingGuest
        if let simulated = entry.guest as? Guest {
            guest = .simulated(simulated)
        } else if let real = entry.guest as? QEMUAgentGuest, let (qemu, bootEpoch) = await real.beginOutgoing() {
            guard guests[vm]?.guest === real else {
                await real.endOutgoing(switchedOver: false)
                return nil
            }
            guest = .qemu(real, qemu, bootEpoch: bootEpoch)
        } else {
            return nil
        }
        frozen.insert(vm)
        return (guest, entry.epoch, entry.assigned)
    }

    /// The target's side of a real guest's migration: its QEMU, started as the source's (booted
    /// under `bootEpoch`), paused and listening; answers the socket its stream is to be fed into.
    /// The memory must be reserved first (`reserveIncoming`).
    func startIncomingQEMU(_ migration: MigrationID, vm: VMRecord, bootEpoch: Epoch) async throws -> String {
        guard case .qemu(let spec) = vm.driver else { throw QEMUGuestError("\(vm.id) is not a QEMU guest") }
        guard fenceReason == nil else { throw QEMUGuestError("\(configuration.node) is fenced") }
        guard incomingQEMU[migration] == nil else {
            throw QEMUGuestError("\(migration) already has its QEMU on \(configuration.node)")
        }
        let state = await readState()
        guard let boot = bootFiles(spec, in: state) else {
            throw QEMUGuestError("the volume of \(vm.id)'s kernel or initrd is not in the state")
        }
        guard let volume = state.volumes[vm.disk.volume] else {
            throw QEMUGuestError("the volume of \(vm.id)'s disk, \(vm.disk.volume), is not in the state")
        }
        let guest = qemuGuest(
            vm, spec: spec, boot: boot, diskPath: diskPath(of: vm, on: volume),
            runtime: "\(configuration.node)-\(vm.id)-\(migration)")
        // Kept before the first await, so a fence or a discard that comes in meanwhile stops it too.
        incomingQEMU[migration] = (vm.id, guest)
        do {
            let socket = try await guest.startIncoming(bootEpoch: bootEpoch)
            guard incomingQEMU[migration]?.guest === guest else {
                await guest.stop()
                throw QEMUGuestError("\(migration) was let go while its QEMU started")
            }
            return socket
        } catch {
            if incomingQEMU[migration]?.guest === guest { incomingQEMU[migration] = nil }
            throw error
        }
    }

    /// The migration of `vm` ended (either way): the balancer sizes its guest again, if it still runs here.
    func release(migrating vm: VMID) {
        frozen.remove(vm)
        // A pass stops it now if it switched over.
        changes.signal()
    }

    /// Lets go of an incoming migration's reservation and shell (the source gave up).
    func releaseIncoming(_ migration: MigrationID) async {
        incomingReservations[migration] = nil
        pendingIncoming[migration] = nil
        incoming?.discard(migration)
        if let arriving = incomingQEMU.removeValue(forKey: migration) { await arriving.guest.stop() }
    }

    /// Reserves `bytes` for the shell of an incoming migration, reclaiming from other VMs above
    /// their minimums (by balloon, a step per pass) if need be, for up to `Self.reservePasses`
    /// balancing passes. Nil when reserved, else why not (for the source's abort reason).
    func reserveIncoming(_ migration: MigrationID, vm: VMID, settings: MemorySettings, bytes: UInt64) async -> String? {
        if incomingReservations[migration] != nil { return nil }
        pendingIncoming[migration] = (vm, settings, bytes)
        for _ in 0..<Self.reservePasses {
            guard fenceReason == nil else {
                pendingIncoming[migration] = nil
                return "\(configuration.node) is fenced (\(fenceReason!))"
            }
            await balanceMemory()
            if incomingReservations[migration] != nil { return nil }
            // Released meanwhile (the source gave up): nothing to wait for.
            guard pendingIncoming[migration] != nil else { return "the reservation was let go" }
            try? await configuration.clock.sleep(for: balanceInterval)
        }
        pendingIncoming[migration] = nil
        let held = guests.values.reduce(UInt64(0)) { $0 + $1.assigned }
        return "\(configuration.node) could not free \(ByteCount(bytes)) for \(vm) in \(Self.reservePasses) balancing "
            + "passes (\(ByteCount(configuration.usableMemory)) usable, \(ByteCount(held)) assigned to its VMs)"
    }

    /// How many balancing passes an incoming migration's reservation may wait for memory.
    static let reservePasses = 50

    /// What the node says of its memory in its heartbeats: nil before the first balancing pass.
    public var memoryFacts: NodeMemoryFacts? {
        guard balancer.previousPass != nil else { return nil }
        let vms = assignments.values.sorted { $0.vm < $1.vm }.map {
            VMMemoryFacts(
                vm: $0.vm, assigned: $0.assigned, demand: $0.demand, status: $0.status, pagingBytes: $0.pagingBytes)
        }
        // Shells of incoming migrations hold their memory as much as running guests do.
        let assigned =
            guests.values.reduce(UInt64(0)) { $0 + $1.assigned }
            + incomingReservations.values.reduce(UInt64(0)) { $0 + $1.bytes }
        return NodeMemoryFacts(usable: configuration.usableMemory, assigned: assigned, vms: vms)
    }

    private func stop(_ id: VMID) async {
        guard let entry = guests.removeValue(forKey: id) else { return }
        let key = ObjectIdentifier(entry.guest)
        stopping[key] = entry.guest
        await entry.guest.stop()
        stopping[key] = nil
    }

    private func stopAll() async {
        let all = guests.values.map(\.guest) + stopping.values + incomingQEMU.values.map { $0.guest as any AgentGuest }
        guests = [:]
        incomingQEMU = [:]
        await withTaskGroup(of: Void.self) { group in
            for guest in all { group.addTask { await guest.stop() } }
        }
        for guest in all { stopping[ObjectIdentifier(guest)] = nil }
    }

    /// A checksum as the agent view shows it: 16 hex digits.
    static func hex(_ checksum: UInt64) -> String {
        let digits = String(checksum, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// Records why a VM does not run here; logs only when the reason changes, not every pass.
    private func report(_ id: VMID, name: String, epoch: Epoch, _ error: String) {
        if problems[id]?.error != error || problems[id]?.epoch != epoch {
            logger.error("cannot run \(id) (\(name)) at epoch \(epoch): \(error)")
        }
        problems[id] = (name, epoch, error)
    }

    /// The guest this node runs for the VM named `name`: its epoch and where its console is written
    /// (nil: a guest without one). Nil when no guest runs it here.
    func console(of name: String) -> (vm: VMID, epoch: Epoch, log: String?)? {
        guard let (id, entry) = guests.first(where: { $0.value.name == name }) else { return nil }
        return (id, entry.epoch, entry.guest.consoleLog)
    }

    /// What `GET /v1/agent` shows.
    public var view: AgentView {
        get async {
            var vms: [AgentView.VM] = []
            for (id, entry) in guests.sorted(by: { $0.key < $1.key }) {
                let status = await entry.guest.status
                // Paused before and after the read: the checksum is the paused image's.
                var paused: String?
                if let guest = entry.guest as? Guest, await guest.isPaused {
                    let checksum = await guest.memoryChecksum
                    if await guest.isPaused { paused = Self.hex(checksum) }
                }
                vms.append(
                    AgentView.VM(
                        id: id.description, name: entry.name, epoch: entry.epoch.rawValue, running: status.running,
                        disk: entry.diskPath, journalSequence: status.lastSequence,
                        recordsWritten: status.recordsWritten, recordsReplayed: status.recordsReplayed,
                        pagesTouched: status.residentPages, assigned: status.assignedBytes, demand: status.demandBytes,
                        pausedChecksum: paused, arrival: entry.arrival))
            }
            let qemu = await qemuHost.found.map {
                AgentView.QEMU(accelerator: $0.accelerator.rawValue, reason: $0.reason)
            }
            return AgentView(
                node: configuration.node.description, fenced: fenceReason, vms: vms,
                problems: problems.sorted(by: { $0.key < $1.key }).map {
                    AgentView.Problem(
                        id: $0.key.description, name: $0.value.name, epoch: $0.value.epoch.rawValue,
                        error: $0.value.error)
                }, qemu: qemu)
        }
    }
}

/// A guest as a live migration's source takes it.
enum MigratingGuest {
    /// Copied page by page by the node (docs/live-migration.md).
    case simulated(Guest)
    /// QEMU's own stream, carried by the node (docs/qemu.md); `bootEpoch` is on its command line.
    case qemu(QEMUAgentGuest, QEMUGuest, bootEpoch: Epoch)
}
