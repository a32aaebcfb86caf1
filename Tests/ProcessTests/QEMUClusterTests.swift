// A real guest in a cluster of real nodes: it runs in QEMU on its owner, and when the owner is
// SIGKILLed its QEMU dies with it and the guest boots again on a survivor under the next epoch.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import Guests
import TestSupport
import Testing

/// The journal records the QEMU guests of a VM said they had flushed to its disk
/// (`flotilla-journal: acked vm=ID epoch=E seq=N` on their consoles), gathered whenever the test
/// looks, for the journal checker.
final class ConsoleAcknowledgements: @unchecked Sendable {
    private(set) var records: Set<JournalRecordID> = []
    let vm: String

    init(vm: String) { self.vm = vm }

    /// Reads the consoles of every QEMU running the VM now.
    func look() {
        for process in QEMUClusterTests.qemuProcesses(of: vm) {
            records.formUnion(Self.parse(QEMUClusterTests.console(of: process.commandLine)))
        }
    }

    static func parse(_ console: String) -> [JournalRecordID] {
        // The serial console ends its lines with "\r\n" (one Character in Swift).
        console.split(whereSeparator: \.isNewline).compactMap { line in
            guard let range = line.range(of: "flotilla-journal: acked ") else { return nil }
            var fields: [String: UInt64] = [:]
            for pair in line[range.upperBound...].split(separator: " ") {
                let parts = pair.split(separator: "=")
                if parts.count == 2, let value = UInt64(parts[1]) { fields[String(parts[0])] = value }
            }
            guard let vm = fields["vm"], let epoch = fields["epoch"], let sequence = fields["seq"] else { return nil }
            return JournalRecordID(vm: VMID(vm), epoch: Epoch(epoch), sequence: sequence)
        }
    }

    /// Checks the VM's disk file: every acknowledged record is on it, epochs never go down, no gaps.
    func checkDisk(_ path: String, vm id: VMID, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let journal = try JournalFormat.parse(bytes, file: path, expectedVM: id)
        let violations = JournalChecker.check(journal, acknowledged: records)
        #expect(violations.isEmpty, "\(violations)", sourceLocation: sourceLocation)
        #expect(!records.isEmpty, "no journal record was acknowledged on a console", sourceLocation: sourceLocation)
        #expect(journal.records.count >= records.count, sourceLocation: sourceLocation)
    }
}

@Suite(.serialized, .timeLimit(.minutes(4)), .enabled(if: TestGuest.available, Comment(rawValue: TestGuest.missing)))
struct QEMUClusterTests {
    /// The QEMU processes running guest `vm` on this machine, with their command lines.
    static func qemuProcesses(of vm: String) -> [(pid: Int32, commandLine: String)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> (Int32, String)? in
            guard let pid = Int32(entry),
                let bytes = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
            else { return nil }
            let commandLine = bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(
                separator: " ")
            guard commandLine.contains("qemu-system"), commandLine.contains("guest=\(vm),"), !TestGuest.isGone(pid)
            else { return nil }
            return (pid, commandLine)
        }
    }

    /// The console log a guest's QEMU writes (from its command line).
    static func console(of commandLine: String) -> String {
        guard let range = commandLine.range(of: "file,id=console,path=") else { return "" }
        let path = String(commandLine[range.upperBound...].prefix { $0 != " " })
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    @Test func aQEMUGuestFollowsItsVMFromAKilledNodeToASurvivorUnderTheNextEpoch() async throws {
        // What it boots lies on the volume, where every node finds it.
        let (cluster, client, leader) = try await Self.clusterWithBootFiles()
        let victimNumber = leader % 3 + 1
        let victim = "n\(victimNumber)"

        // A bad request first: the reason comes back, nothing is created.
        await #expect {
            _ = try await client.createVM(
                VMCreation(
                    name: "bad", startup: 256 << 20, volume: "csv1",
                    driver: GuestDriverView(kind: "qemu", kernel: "vmlinuz")))
        } throws: { error in
            "\(error)".contains("driver.kernel is VOLUME:PATH")
        }
        // It appends a record to its disk (the VM's disk file on csv1) every 100 ms.
        let driver = GuestDriverView(
            kind: "qemu", kernel: "csv1:boot/vmlinuz", initrd: "csv1:boot/initramfs.cpio.gz",
            append: "quiet flotilla.journal=100")
        let created = try await client.createVM(
            VMCreation(name: "web", startup: 256 << 20, volume: "csv1", driver: driver))
        #expect(
            created.driver
                == GuestDriverView(
                    kind: "qemu", vcpus: 1, kernel: driver.kernel, initrd: driver.initrd, append: driver.append,
                    diskFormat: "raw"))
        let acknowledged = ConsoleAcknowledgements(vm: "web")
        let vmID = try #require(VMID(parsing: created.id))
        _ = try await client.startVM("web", on: victim)
        let first = try #require(try await client.vms().first { $0.name == "web" })
        #expect(first.owner == victim)

        var running: (pid: Int32, commandLine: String)?
        try await eventually(
            "web boots in QEMU on \(victim) at epoch \(first.epoch)", within: .seconds(90), poll: .milliseconds(200)
        ) {
            running = Self.qemuProcesses(of: "web").first
            guard let running else { return false }
            return running.commandLine.contains("flotilla.epoch=\(first.epoch)")
                && Self.console(of: running.commandLine).contains("vm=web epoch=\(first.epoch) uptime=")
        }
        let old = try #require(running)
        // The owner says what it runs QEMU guests with, and why (here: no KVM that runs guests).
        let agent = try await cluster.client(victimNumber).agent()
        let qemu = try #require(agent.qemu)
        #expect(["kvm", "tcg"].contains(qemu.accelerator))
        #expect(qemu.reason.hasPrefix(qemu.accelerator == "kvm" ? "KVM: " : "software emulation (TCG): "))

        try await eventually("web acknowledges journal records", within: .seconds(30), poll: .milliseconds(200)) {
            acknowledged.look()
            return !acknowledged.records.isEmpty
        }
        cluster.kill9(victimNumber)
        try await eventually("the killed node's QEMU dies with it") { TestGuest.isGone(old.pid) }
        var moved: VMView?
        try await cluster.await("web running on a survivor", within: .seconds(30)) {
            moved = try? await client.vms().first { $0.name == "web" }
            return moved?.state == "running" && moved?.owner != nil && moved?.owner != victim
        }
        let epoch = try #require(moved).epoch
        #expect(epoch == first.epoch + 2)
        try await eventually(
            "web boots again on \(moved!.owner!) at epoch \(epoch)", within: .seconds(90), poll: .milliseconds(200)
        ) {
            let all = Self.qemuProcesses(of: "web")
            guard all.count == 1, let again = all.first else { return false }
            return again.commandLine.contains("flotilla.epoch=\(epoch)")
                && Self.console(of: again.commandLine).contains("vm=web epoch=\(epoch) uptime=")
        }
        // Its console through the API, asked of a node that does not run it (which forwards), and
        // followed from where that answer ended.
        let owner = try #require(moved?.owner)
        let asked = try #require((1...3).first { "n\($0)" != owner && $0 != victimNumber })
        let console = try await cluster.client(asked).console("web")
        #expect(console.node == owner && console.epoch == epoch)
        #expect(console.text.contains("vm=web epoch=\(epoch) uptime="), "\(console.text)")
        try await eventually("web's console grows past byte \(console.next)") {
            guard let more = try? await cluster.client(asked).console("web", offset: console.next) else { return false }
            return more.start == console.next && more.text.contains("uptime=")
        }

        // Dynamic memory: with room to shrink, the balancer's assignment becomes the balloon's target
        // and the guest's own memory (MemTotal, on its console) follows it down, and back up.
        func guestMemoryKiB() -> Int? {
            guard let again = Self.qemuProcesses(of: "web").first else { return nil }
            let console = Self.console(of: again.commandLine)
            return console.components(separatedBy: " mem=").last.flatMap { Int($0.prefix { $0.isNumber }) }
        }
        var booted = 0
        try await eventually("web reports its memory") {
            booted = guestMemoryKiB() ?? 0
            return booted > 0
        }
        _ = try await client.setVMMemory("web", MemoryChange(minimum: 128 << 20))
        try await eventually("the balloon takes web's memory down towards its minimum", within: .seconds(60)) {
            (guestMemoryKiB() ?? .max) <= booted - 100_000
        }
        try await cluster.await("the API shows web's assignment and the demand its guest reports") {
            guard let memory = try? await client.vms().first(where: { $0.name == "web" })?.memory else { return false }
            return (memory.assigned ?? .max) <= 140 << 20 && (memory.demand ?? 0) > 0
        }
        _ = try await client.setVMMemory("web", MemoryChange(minimum: 256 << 20))
        try await eventually("the balloon gives web its memory back", within: .seconds(60)) {
            (guestMemoryKiB() ?? 0) >= booted - 2_000
        }

        // A guest whose QEMU dies under it (killed from outside) is noticed by its owner and booted
        // again there, at the same epoch, by one QEMU.
        acknowledged.look()
        let crashed = try #require(Self.qemuProcesses(of: "web").first)
        kill(crashed.pid, SIGKILL)
        try await eventually(
            "web boots again after its QEMU was killed", within: .seconds(90), poll: .milliseconds(200)
        ) {
            let all = Self.qemuProcesses(of: "web")
            guard all.count == 1, let again = all.first, again.pid != crashed.pid else { return false }
            return again.commandLine.contains("flotilla.epoch=\(epoch)")
                && Self.console(of: again.commandLine).contains("vm=web epoch=\(epoch) uptime=")
        }

        // Stopped through the API: no QEMU runs it any more; its disk proves that every record a
        // guest acknowledged is there, under epochs that never went down (the killed node's guest
        // wrote nothing after the survivor's started).
        try await Self.stopAndCheckJournal(acknowledged, vm: vmID, client: client, cluster: cluster)
        await client.close()
        await cluster.close()
    }

    /// A cluster of three nodes with csv1 holding the test guest's kernel and initramfs, and a
    /// client of the leader.
    static func clusterWithBootFiles() async throws -> (ProcessCluster, APIClient, leader: Int) {
        let cluster = try ProcessCluster(size: 3, electionTicks: 50)
        try cluster.startAll()
        let leader = try await cluster.awaitLeader()
        let client = APIClient(
            endpoint: Endpoint(host: "127.0.0.1", port: cluster.clientPorts[leader - 1]), timeout: .seconds(10),
            noLeaderPatience: .seconds(10))
        try await cluster.await("all three nodes registered") {
            (try? await client.nodes())?.map(\.id) == ["n1", "n2", "n3"]
        }
        _ = try await client.createVolume("csv1", coordinator: "n\(leader)")
        let boot = cluster.sharedRoot + "/volumes/csv1/boot"
        try FileManager.default.createDirectory(atPath: boot, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestGuest.kernel, toPath: boot + "/vmlinuz")
        try FileManager.default.copyItem(atPath: TestGuest.initrd, toPath: boot + "/initramfs.cpio.gz")
        return (cluster, client, leader)
    }

    /// Waits for web to acknowledge one more journal record, stops it, sees its QEMU end, and checks
    /// its disk file on csv1 against every record its guests acknowledged.
    static func stopAndCheckJournal(
        _ acknowledged: ConsoleAcknowledgements, vm: VMID, client: APIClient, cluster: ProcessCluster
    ) async throws {
        try await eventually("web journals again", within: .seconds(30), poll: .milliseconds(200)) {
            let before = acknowledged.records.count
            acknowledged.look()
            return acknowledged.records.count > before
        }
        _ = try await client.stopVM("web")
        try await eventually("web's QEMU ends when the VM stops") { qemuProcesses(of: "web").isEmpty }
        try acknowledged.checkDisk(cluster.sharedRoot + "/volumes/csv1/web.vhdx", vm: vm)
    }

    /// Migrates `vm` to `target` and waits until the copy runs (the migration is `copying` and the
    /// target's QEMU, paused, takes the stream: two QEMUs run the guest).
    static func migrationUnderway(_ vm: String, to target: String, client: APIClient, cluster: ProcessCluster)
        async throws -> String
    {
        let id = try await client.migrateVM(vm, to: target).id
        try await cluster.await("\(id) copies to \(target)", within: .seconds(60)) {
            (try? await client.migration(id))?.phase == "copying" && qemuProcesses(of: vm).count == 2
        }
        return id
    }

    @Test func aQEMUGuestLiveMigratesWithoutARebootAndAKilledTargetOrSourceLeavesOneQEMU() async throws {
        let (cluster, client, leader) = try await Self.clusterWithBootFiles()
        // The two nodes that are not the leader take turns as source and target, and are killed.
        let a = leader % 3 + 1
        let b = a % 3 + 1
        // It fills 64 MiB and rewrites 4 MiB of it every second while it moves.
        let driver = GuestDriverView(
            kind: "qemu", kernel: "csv1:boot/vmlinuz", initrd: "csv1:boot/initramfs.cpio.gz",
            append: "quiet flotilla.fill=64 flotilla.dirty=4 flotilla.journal=200")
        let vmID = try #require(
            VMID(
                parsing: try await client.createVM(
                    VMCreation(name: "web", startup: 256 << 20, volume: "csv1", driver: driver)
                ).id))
        let acknowledged = ConsoleAcknowledgements(vm: "web")
        _ = try await client.startVM("web", on: "n\(a)")
        let booted = try await client.vm("web")
        try await eventually(
            "web boots on n\(a), fills its memory and counts", within: .seconds(120), poll: .milliseconds(200)
        ) {
            guard let running = Self.qemuProcesses(of: "web").first else { return false }
            let console = Self.console(of: running.commandLine)
            return console.contains("filled 64 MiB") && (TestGuest.lastUptime(console) ?? 0) >= 1
        }
        let source = try #require(Self.qemuProcesses(of: "web").first)

        // 1. A live migration: the guest goes on on the target, its uptime counting on (a reboot
        //    prints "up" and counts from 0), with the downtime reported; the source's QEMU is gone.
        let before = try #require(TestGuest.lastUptime(Self.console(of: source.commandLine)))
        acknowledged.look()
        let id = try await client.migrateVM("web", to: "n\(b)").id
        var ended: MigrationView?
        try await cluster.await("\(id) ends with its final stats", within: .seconds(120)) {
            ended = try? await client.migration(id)
            return ended.map { !$0.active && ($0.phase != "completed" || $0.stats?.totalMilliseconds != nil) } ?? false
        }
        #expect(ended?.phase == "completed", "\(String(describing: ended))")
        let moved = try await client.vm("web")
        #expect(moved.owner == "n\(b)" && moved.epoch == booted.epoch + 1)
        #expect((ended?.stats?.downtimeMicroseconds ?? 0) > 0, "\(cluster.logTails(lines: 12))")
        #expect((ended?.stats?.totalBytes ?? 0) >= 64 << 20)
        try await eventually("web counts on on n\(b) by one QEMU", within: .seconds(30), poll: .milliseconds(200)) {
            let all = Self.qemuProcesses(of: "web")
            guard all.count == 1, let target = all.first, target.pid != source.pid else { return false }
            return (TestGuest.lastUptime(Self.console(of: target.commandLine)) ?? 0) > before
        }
        let runningAfter = Self.qemuProcesses(of: "web")
        if runningAfter.count != 1
            || (runningAfter.first.flatMap { TestGuest.lastUptime(Self.console(of: $0.commandLine)) } ?? 0) <= before
        {
            Issue.record(
                "web's QEMU processes' consoles: \(runningAfter.map { Self.console(of: $0.commandLine).suffix(3000) })")
        }
        let onB = try #require(Self.qemuProcesses(of: "web").first)
        #expect(!Self.console(of: onB.commandLine).contains("flotilla-guest: up"))
        #expect(TestGuest.isGone(source.pid))

        // A slow link from here on, so a copy runs long enough to kill a node in the middle of it.
        _ = try await client.setSetting("migration.max-bandwidth-mib-s", to: "8")

        // 2. The target killed during the copy: the guest runs on on its source, untouched.
        acknowledged.look()
        let toA = try await Self.migrationUnderway("web", to: "n\(a)", client: client, cluster: cluster)
        cluster.kill9(a)
        try await cluster.await("\(toA) fails with its target gone", within: .seconds(60)) {
            (try? await client.migration(toA)).map { !$0.active && $0.phase == "failed" } ?? false
        }
        try await eventually("only the source's QEMU runs web", within: .seconds(30)) {
            Self.qemuProcesses(of: "web").map(\.pid) == [onB.pid]
        }
        let still = try await client.vm("web")
        #expect(still.owner == "n\(b)" && still.epoch == moved.epoch && still.state == "running")
        let counted = try #require(TestGuest.lastUptime(Self.console(of: onB.commandLine)))
        try await eventually("web counts on on n\(b)", within: .seconds(30), poll: .milliseconds(200)) {
            (TestGuest.lastUptime(Self.console(of: onB.commandLine)) ?? 0) > counted
        }

        // 3. The source killed during the copy: its QEMU dies with it, the target's is let go, and
        //    the guest boots once more on a survivor under a new epoch.
        try cluster.start(a)
        try await cluster.await("n\(a) is back, holding a lease", within: .seconds(60)) {
            guard let agent = try? await cluster.client(a).agent(), agent.fenced == nil else { return false }
            return (try? await client.nodes())?.first { $0.id == "n\(a)" }?.state == "up"
        }
        let toAgain = try await Self.migrationUnderway("web", to: "n\(a)", client: client, cluster: cluster)
        acknowledged.look()
        cluster.kill9(b)
        try await cluster.await("\(toAgain) fails with its source gone", within: .seconds(60)) {
            (try? await client.migration(toAgain)).map { !$0.active && $0.phase == "failed" } ?? false
        }
        var failedOver: VMView?
        try await cluster.await("web runs on a survivor", within: .seconds(60)) {
            failedOver = try? await client.vm("web")
            return failedOver?.state == "running" && failedOver?.owner != nil && failedOver?.owner != "n\(b)"
        }
        let epoch = try #require(failedOver).epoch
        try await eventually(
            "web boots again on \(failedOver!.owner!) by one QEMU", within: .seconds(120), poll: .milliseconds(200)
        ) {
            let all = Self.qemuProcesses(of: "web")
            guard all.count == 1, let again = all.first else { return false }
            return again.commandLine.contains("flotilla.epoch=\(epoch)")
                && Self.console(of: again.commandLine).contains("vm=web epoch=\(epoch) uptime=")
        }
        #expect(TestGuest.isGone(onB.pid))
        // The journal went on across the migration and the failover, one writer at a time.
        try await Self.stopAndCheckJournal(acknowledged, vm: vmID, client: client, cluster: cluster)
        await client.close()
        await cluster.close()
    }

    @Test func aVMThatBootsItsQcow2DiskFromTheVolumeRunsAndFailsOverWithIt() async throws {
        let (cluster, client, leader) = try await Self.clusterWithBootFiles()
        let owner = leader % 3 + 1
        // Its disk: a qcow2 image on csv1 whose boot sector greets on the console; no kernel.
        let images = cluster.sharedRoot + "/volumes/csv1/img"
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        try TestGuest.bootableImage(at: images + "/web.qcow2", qcow2: true)
        let created = try await client.createVM(
            VMCreation(
                name: "img", startup: 64 << 20, volume: "csv1", diskFile: "img/web.qcow2",
                driver: GuestDriverView(kind: "qemu")))
        #expect(created.driver == GuestDriverView(kind: "qemu", vcpus: 1, diskFormat: "qcow2"))
        _ = try await client.startVM("img", on: "n\(owner)")
        var first: (pid: Int32, commandLine: String)?
        try await eventually("img boots its disk on n\(owner)", within: .seconds(60), poll: .milliseconds(200)) {
            first = Self.qemuProcesses(of: "img").first
            return first.map { Self.console(of: $0.commandLine).contains(TestGuest.bootSectorGreeting) } ?? false
        }
        let booted = try #require(first)
        #expect(!booted.commandLine.contains("-kernel"))
        #expect(booted.commandLine.contains(#""driver":"qcow2""#) && booted.commandLine.contains("img/web.qcow2"))

        cluster.kill9(owner)
        try await eventually("img's QEMU dies with its node") { TestGuest.isGone(booted.pid) }
        try await cluster.await("img runs on a survivor", within: .seconds(30)) {
            let vm = try? await client.vm("img")
            return vm?.state == "running" && vm?.owner != nil && vm?.owner != "n\(owner)"
        }
        try await eventually("img boots its disk again, by one QEMU", within: .seconds(60), poll: .milliseconds(200)) {
            let all = Self.qemuProcesses(of: "img")
            guard all.count == 1, let again = all.first else { return false }
            return Self.console(of: again.commandLine).contains(TestGuest.bootSectorGreeting)
        }
        _ = try await client.stopVM("img")
        try await eventually("img's QEMU ends when the VM stops") { Self.qemuProcesses(of: "img").isEmpty }
        await client.close()
        await cluster.close()
    }
}
