// What the node agent runs a VM's guest with: the simulated guest, or a real one in QEMU.
import ClusterModel
import ClusterState
import Foundation
import Guests
import NIOPosix
import QEMU

/// A guest as the agent drives it, whatever runs it.
protocol AgentGuest: AnyObject, Sendable {
    /// Runs it under `epoch`; throws (and it stays stopped) when it cannot.
    func start(epoch: Epoch) async throws
    /// Ends it; once this returns it writes nothing more.
    func stop() async
    var status: GuestStatus { get async }
    /// The memory it needs now, for the balancer.
    var demand: UInt64 { get async }
    /// The memory the balancer gives it.
    func assign(bytes: UInt64) async
    /// Its VM's workload changed (a simulated guest follows it; a real one has its own).
    func follow(_ workload: Workload) async
    /// Where its serial console is written; nil for a guest that has none (the simulated one).
    nonisolated var consoleLog: String? { get }
}

extension Guest: AgentGuest {
    nonisolated var consoleLog: String? { nil }
}

/// Where QEMU is and what it runs guests with, found once per node.
actor QEMUHostSettings {
    static let executable = "/usr/bin/qemu-system-x86_64"
    private var facts: QEMUHostFacts?

    /// What was found, once a guest has started (nil before).
    var found: QEMUHostFacts? { facts }

    /// The accelerator, probed with `kernel` the first time (KVM only if a kernel boots under it).
    /// Without a kernel to probe with (a guest that boots its disk) and none probed yet: TCG for
    /// this guest, and the question stays open for the next.
    func accelerator(probe kernel: String?, scratch: String) async -> QEMUHostFacts {
        if let facts { return facts }
        guard let kernel else {
            return QEMUHostFacts(
                accelerator: .tcg,
                reason:
                    "software emulation (TCG): KVM is probed with a guest's kernel, and this node has booted none yet")
        }
        let found = await QEMUHost.detect(executable: Self.executable, kernel: kernel, scratch: scratch)
        facts = found
        return found
    }
}

/// A VM's guest in QEMU, as the agent drives it: started at its epoch (on the kernel command line,
/// `flotilla.vm=NAME flotilla.id=N flotilla.epoch=N`), with its VM's disk file on the volume as its
/// virtio disk (raw, at least `minimumDiskBytes`), with its VM's maximum memory, ballooned to the balancer's
/// assignment; its demand is what the guest itself reports in use. `stop` ends the process (a real
/// guest is not shut down inside: the cluster's stop is a power-off, as a fence is).
actor QEMUAgentGuest: AgentGuest {
    nonisolated let vm: VMID
    private let name: String
    private let spec: QEMUGuestSpec
    private let memory: MemorySettings
    /// Nil: it boots its disk.
    private let kernel: String?
    private let initrd: String?
    private let directory: String
    /// The VM's disk file on its volume: the guest's first disk.
    private let disk: String
    private let host: QEMUHostSettings
    private var guest: QEMUGuest?
    private var epoch: Epoch?
    /// The epoch on its kernel command line: the one it booted under, which a live migration
    /// carries to the next node unchanged (the target's QEMU must be started as the source was).
    private(set) var bootEpoch: Epoch?
    /// Set while a live migration has the guest (out of here, or into here before its
    /// switchover): QEMU's run state is then the migration's business, not a failure.
    private var migrating = false
    /// Set once it migrated away: it runs elsewhere, and this process only waits to be stopped.
    private var handedOver = false
    private var assigned: UInt64
    private var lastDemand: UInt64?
    /// Set once the process answered after its start; cleared when it stops or fails.
    private var started = false
    /// When QEMU was last asked for the guest's memory figures.
    private var lastAsked: Duration?
    private let clock: NodeClock

    init(
        vm: VMID, name: String, spec: QEMUGuestSpec, memory: MemorySettings, kernel: String?, initrd: String?,
        disk: String, directory: String, host: QEMUHostSettings, clock: NodeClock
    ) {
        self.disk = disk
        self.clock = clock
        self.vm = vm
        self.name = name
        self.spec = spec
        self.memory = memory
        self.kernel = kernel
        self.initrd = initrd
        self.directory = directory
        self.host = host
        self.assigned = memory.maximum
    }

    func start(epoch: Epoch) async throws {
        guard guest == nil else { return }
        let guest = try await launch(bootEpoch: epoch, incoming: false)
        self.epoch = epoch
        // A stop that came in meanwhile took the guest (and ended the start): nothing runs.
        if self.guest === guest { started = true }
    }

    /// Starts its QEMU booting under `bootEpoch`, or paused and waiting for a migration's stream.
    private func launch(bootEpoch: Epoch, incoming: Bool) async throws -> QEMUGuest {
        // A raw disk under a kernel is made long enough for a journal; a disk to boot is left as it is.
        if kernel != nil && spec.diskFormat == .raw { try Self.sizeDisk(disk) }
        var arguments = ""
        if kernel != nil {
            arguments =
                (["flotilla.vm=\(name)", "flotilla.id=\(vm.rawValue)", "flotilla.epoch=\(bootEpoch.rawValue)"]
                + (spec.kernelArguments.isEmpty ? [] : [spec.kernelArguments])).joined(separator: " ")
        }
        let machine = QEMUMachine(
            vcpus: spec.vcpus, memoryBytes: memory.maximum, kernel: kernel, initrd: initrd,
            kernelArguments: arguments, disks: [QEMUDisk(path: disk, format: spec.diskFormat == .raw ? .raw : .qcow2)],
            devices: spec.devices.compactMap(QEMUExtraDevice.init(rawValue:)))
        let facts = await host.accelerator(probe: kernel, scratch: directory)
        let guest = QEMUGuest(
            name: name, machine: machine, directory: directory, executable: QEMUHostSettings.executable,
            group: MultiThreadedEventLoopGroup.singleton)
        self.guest = guest
        self.bootEpoch = bootEpoch
        do {
            try await guest.start(accelerator: facts.accelerator, paused: incoming, incomingMigration: incoming)
        } catch {
            if self.guest === guest { self.guest = nil }
            throw error
        }
        return guest
    }

    /// The least a VM's disk file holds for a QEMU guest: a disk QEMU opens is as large as its
    /// file, and the volume makes an empty file.
    static let minimumDiskBytes = 16 << 20

    /// Makes the disk file `minimumDiskBytes` long if it is shorter (the new bytes are zeros, and
    /// take no space until written).
    static func sizeDisk(_ path: String) throws {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
            throw QEMUGuestError("the VM's disk file \(path) is missing")
        }
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        guard size < minimumDiskBytes else { return }
        guard truncate(path, minimumDiskBytes) == 0 else {
            throw QEMUGuestError(
                "cannot make the disk file \(path) \(minimumDiskBytes >> 20) MiB: \(String(cString: strerror(errno)))")
        }
    }

    // MARK: Live migration

    /// The target's side, before the copy: its QEMU started as the source's was (`bootEpoch` on its
    /// command line), paused and listening for the stream; answers the socket to feed.
    func startIncoming(bootEpoch: Epoch) async throws -> String {
        guard guest == nil else { throw QEMUGuestError("\(name) already has a QEMU here") }
        migrating = true
        let guest = try await launch(bootEpoch: bootEpoch, incoming: true)
        do {
            return try await QEMULiveMigration.listen(target: guest)
        } catch {
            await stop()
            throw error
        }
    }

    /// The target's side once the switchover is committed: the guest runs here, under `epoch`,
    /// with the memory it came with, once QEMU has the whole stream. Throws when QEMU could not
    /// load it (the VM then boots from its disk, as after a failover).
    func takeOver(epoch: Epoch, assigned: UInt64) async throws {
        guard let guest, migrating else { throw QEMUGuestError("\(name) has no incoming migration here") }
        do {
            try await QEMULiveMigration.resumeTarget(guest, within: .seconds(60))
        } catch {
            // QEMU says why it could not load the stream on its output, which goes with its directory.
            let said = ConsoleLog.tail(of: guest.outputLog, bytes: 600).split(separator: "\n").suffix(3)
            await stop()
            throw QEMUGuestError(
                "the migrated guest did not resume here: \(error)"
                    + (said.isEmpty ? "" : " (QEMU: \(said.joined(separator: " / ")))"))
        }
        guard self.guest === guest else { throw QEMUGuestError("\(name) was stopped while it took over") }
        self.epoch = epoch
        self.assigned = assigned
        migrating = false
        started = true
    }

    /// The source's side: the running QEMU and the epoch it booted under, for the migration;
    /// nil when it does not run (yet).
    func beginOutgoing() -> (guest: QEMUGuest, bootEpoch: Epoch)? {
        guard started, !migrating, let guest, let bootEpoch else { return nil }
        migrating = true
        return (guest, bootEpoch)
    }

    /// The outgoing migration ended: switched over, this process only waits for the agent to stop
    /// it; otherwise the guest runs on here.
    func endOutgoing(switchedOver: Bool) {
        migrating = false
        handedOver = switchedOver
    }

    func stop() async {
        guard let guest else { return }
        self.guest = nil
        started = false
        migrating = false
        await guest.stop(grace: .seconds(1))
        // Its socket and console go with it (a guest that failed keeps them until it is stopped,
        // for a look at its console).
        try? FileManager.default.removeItem(atPath: directory)
    }

    nonisolated var consoleLog: String? { QEMUGuest.consoleLog(in: directory) }

    /// While starting, or stopped by the agent: not running and no failure (the agent leaves it be).
    /// A guest that ran and no longer does is a failure, and its process is killed first, so the
    /// agent, which then forgets it and may start it again, never leaves a QEMU running behind it.
    var status: GuestStatus {
        get async {
            var running = false
            var failure: String?
            // Migrated away (`handedOver`): not running here, and no failure (the agent stops it).
            if started, let guest, !handedOver {
                let state = try? await guest.runState()
                if migrating {
                    // The migration stops and resumes it: only a process that no longer answers failed.
                    running = state != nil
                    if !running {
                        failure = "QEMU's control connection is gone during a live migration (the process exited?)"
                    }
                } else if let state {
                    running = state == "running" || state == "paused"
                    if !running { failure = "QEMU reports the guest \(state)" }
                } else {
                    failure = "QEMU's control connection is gone (the process exited?)"
                }
                if failure != nil {
                    self.guest = nil
                    started = false
                    await guest.kill()
                }
            }
            return GuestStatus(
                vm: vm, running: running, epoch: epoch, assignedBytes: assigned, demandBytes: lastDemand ?? assigned,
                failure: failure)
        }
    }

    /// The guest's balloon driver refreshes its figures once a second; the balancer asks every pass
    /// (100 ms), so QEMU is asked at most once a second.
    var demand: UInt64 {
        get async {
            if let guest, lastAsked.map({ clock.now - $0 >= .seconds(1) }) ?? true {
                lastAsked = clock.now
                if let demand = try? await guest.memoryStatistics().demandBytes { lastDemand = demand }
            }
            return lastDemand ?? assigned
        }
    }

    /// The agent calls this only when the assignment changed.
    func assign(bytes: UInt64) async {
        // The balloon cannot give more than the guest booted with.
        assigned = min(bytes, memory.maximum)
        try? await guest?.setMemoryTarget(bytes: assigned)
    }

    func follow(_ workload: Workload) async {}
}
