import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import QEMU
import TestSupport
import Testing

extension TestGuest {
    static func machine(memoryMiB: UInt64 = 256, arguments: String) -> QEMUMachine {
        QEMUMachine(memoryBytes: memoryMiB << 20, kernel: kernel, initrd: initrd, kernelArguments: "quiet " + arguments)
    }
}

@Suite(
    .serialized, .timeLimit(.minutes(3)),
    .enabled(if: TestGuest.available, Comment(rawValue: TestGuest.missing)))
struct RealGuestTests {
    let group = MultiThreadedEventLoopGroup.singleton
    let reaper = GuestReaper()

    @Test func aRealGuestBootsReportsItsMemoryBalloonsDownAndUpPausesAndStops() async throws {
        let directory = try TestGuest.scratch()
        let disk = directory + "/disk,0.raw"
        #expect(FileManager.default.createFile(atPath: disk, contents: Data(count: 1 << 20)))
        var machine = TestGuest.machine(arguments: "flotilla.vm=real1 flotilla.epoch=4 flotilla.fill=64")
        machine.disks = [QEMUDisk(path: disk, format: .raw)]
        let guest = reaper.track(
            QEMUGuest(name: "real1", machine: machine, directory: directory, executable: TestGuest.qemu, group: group))
        try await guest.start(accelerator: .tcg)
        #expect(try await guest.runState() == "running")
        // The disk is opened as the format given, from the path given (its comma escaped).
        let nodes = try await guest.execute("query-named-block-nodes")
        guard case .array(let list) = nodes else { throw QEMUGuestError("query-named-block-nodes: \(nodes)") }
        let named = Dictionary(list.compactMap { node in node["node-name"]?.string.map { ($0, node) } }) { a, _ in a }
        #expect(named["disk0"]?["drv"]?.string == "raw")
        #expect(named["file0"]?["file"]?.string == disk)
        try await eventually(
            "the guest's /init runs, fills 64 MiB and reports", within: .seconds(90), poll: .milliseconds(200)
        ) {
            guest.console().contains("flotilla-guest: filled 64 MiB")
                && guest.console().contains("vm=real1 epoch=4 uptime=")
        }

        // The guest's own figures, through its balloon driver: 64 MiB filled is in use.
        var stats = try await guest.memoryStatistics()
        try await eventually("the guest reports its memory", within: .seconds(30), poll: .milliseconds(200)) {
            stats = try await guest.memoryStatistics()
            return (stats.demandBytes ?? 0) >= 64 << 20
        }
        #expect(stats.actualBytes == 256 << 20)
        let bootTotal = try #require(stats.guestTotalBytes)

        // Balloon down to 160 MiB: the guest's memory shrinks by what the balloon took, and back.
        try await guest.setMemoryTarget(bytes: 160 << 20)
        try await eventually("the balloon takes 96 MiB", within: .seconds(30), poll: .milliseconds(200)) {
            stats = try await guest.memoryStatistics()
            return stats.actualBytes == 160 << 20 && (stats.guestTotalBytes ?? .max) <= bootTotal - (90 << 20)
        }
        #expect((stats.demandBytes ?? 0) >= 64 << 20)
        try await guest.setMemoryTarget(bytes: 256 << 20)
        try await eventually("the balloon gives the memory back", within: .seconds(30), poll: .milliseconds(200)) {
            stats = try await guest.memoryStatistics()
            return stats.actualBytes == 256 << 20 && stats.guestTotalBytes == bootTotal
        }

        try await guest.pause()
        #expect(try await guest.runState() == "paused")
        try await guest.resume()
        #expect(try await guest.runState() == "running")

        let pid = try #require(await guest.pid)
        await guest.stop()
        #expect(await guest.pid == nil)
        #expect(TestGuest.isGone(pid))
        await #expect(throws: QEMUGuestError.self) { try await guest.runState() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    @Test func theAcceleratorThisHostIsFoundToHaveBootsAGuest() async throws {
        let directory = try TestGuest.scratch()
        let facts = await QEMUHost.detect(
            executable: TestGuest.qemu, kernel: TestGuest.kernel, scratch: directory, limit: .seconds(5))
        #expect(facts.reason.hasPrefix(facts.accelerator == .kvm ? "KVM: " : "software emulation (TCG): "))
        let guest = reaper.track(
            QEMUGuest(
                name: "probe", machine: TestGuest.machine(arguments: "flotilla.vm=probe"), directory: directory,
                executable: TestGuest.qemu, group: group))
        try await guest.start(accelerator: facts.accelerator)
        try await eventually(
            "the guest boots under \(facts.accelerator)", within: .seconds(90), poll: .milliseconds(200)
        ) {
            guest.console().contains("flotilla-guest: up")
        }
        await guest.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    @Test func aGuestThatIgnoresQuitIsKilledAfterTheGracePeriod() async throws {
        let directory = try TestGuest.scratch()
        let guest = reaper.track(
            QEMUGuest(
                name: "stuck", machine: TestGuest.machine(arguments: "flotilla.vm=stuck"), directory: directory,
                executable: TestGuest.qemu, group: group))
        try await guest.start(accelerator: .tcg, paused: true)
        let pid = try #require(await guest.pid)
        // A stopped process answers nothing, `quit` included.
        kill(pid, SIGSTOP)
        await guest.stop(grace: .milliseconds(500))
        #expect(TestGuest.isGone(pid))
        #expect(await guest.pid == nil)
        try? FileManager.default.removeItem(atPath: directory)
    }

    @Test func aKVMProbeThatHangsIsKilledAtItsLimit() async throws {
        let directory = try TestGuest.scratch()
        // Stands in for QEMU whose guest hangs under KVM: it never exits by itself.
        let fake = directory + "/hanging-qemu"
        try "#!/bin/sh\nexec sleep 600\n".write(toFile: fake, atomically: true, encoding: .utf8)
        chmod(fake, 0o755)
        let outcome = await QEMUHost.probeKVM(
            executable: fake, kernel: TestGuest.kernel, scratch: directory, limit: .milliseconds(300))
        #expect(outcome == .hung(.milliseconds(300)))
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Without a kernel the firmware boots the first disk: a raw image and the same as qcow2 each
    /// run their boot sector, whose greeting comes out on the console (with the allow-list's
    /// devices, which QEMU must accept as this code writes them).
    @Test func aRawAndAQcow2DiskImageBootWithoutAKernel() async throws {
        let directory = try TestGuest.scratch()
        for format in [QEMUDisk.Format.raw, .qcow2] {
            let image = directory + "/boot.\(format.rawValue)"
            try TestGuest.bootableImage(at: image, qcow2: format == .qcow2)
            let guest = reaper.track(
                QEMUGuest(
                    name: "image",
                    machine: QEMUMachine(
                        memoryBytes: 64 << 20, disks: [QEMUDisk(path: image, format: format)],
                        devices: QEMUExtraDevice.allCases),
                    directory: directory + "/" + format.rawValue, executable: TestGuest.qemu, group: group))
            try await guest.start(accelerator: .tcg)
            try await eventually(
                "the \(format) image's boot sector runs", within: .seconds(30), poll: .milliseconds(100)
            ) {
                guest.console().contains(TestGuest.bootSectorGreeting)
            }
            await guest.stop()
        }
        // A qcow2 image that names a backing file (here the bootable raw image): the backing file
        // is never opened (a user's image must not make QEMU open files on the host).
        let overlay = directory + "/overlay.qcow2"
        let create = Process()
        create.executableURL = URL(fileURLWithPath: TestGuest.qemuImg)
        create.arguments = ["create", "-q", "-f", "qcow2", "-b", directory + "/boot.raw", "-F", "raw", overlay]
        try create.run()
        create.waitUntilExit()
        #expect(create.terminationStatus == 0)
        let guest = reaper.track(
            QEMUGuest(
                name: "overlay",
                machine: QEMUMachine(memoryBytes: 64 << 20, disks: [QEMUDisk(path: overlay, format: .qcow2)]),
                directory: directory + "/overlay", executable: TestGuest.qemu, group: group))
        try await guest.start(accelerator: .tcg)
        let pid = try #require(await guest.pid)
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")
        }
        #expect(open.contains(overlay))
        #expect(!open.contains(directory + "/boot.raw"), "QEMU opened the backing file: \(open)")
        await guest.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    @Test func aKilledGuestIsGoneAndAGuestThatCannotStartSaysWhyInQEMUsWords() async throws {
        let directory = try TestGuest.scratch()
        let guest = reaper.track(
            QEMUGuest(
                name: "real2", machine: TestGuest.machine(arguments: "flotilla.vm=real2"), directory: directory,
                executable: TestGuest.qemu, group: group))
        try await guest.start(accelerator: .tcg, paused: true)
        #expect(try await guest.runState() == "prelaunch")
        let pid = try #require(await guest.pid)
        await guest.kill()
        #expect(TestGuest.isGone(pid))

        // A disk QEMU cannot open: QEMU exits at start, and the error carries its own message.
        let broken = reaper.track(
            QEMUGuest(
                name: "real3",
                machine: QEMUMachine(
                    memoryBytes: 64 << 20, kernel: TestGuest.kernel,
                    disks: [QEMUDisk(path: TestGuest.kernel, format: .qcow2)]),
                directory: directory + "/3", executable: TestGuest.qemu, group: group))
        await #expect {
            try await broken.start(accelerator: .tcg)
        } throws: { error in
            let text = "\(error)"
            return text.contains("QEMU exited with status 1 at start") && text.contains("qcow2")
        }
        #expect(await broken.pid == nil)

        let missing = reaper.track(
            QEMUGuest(
                name: "real4", machine: QEMUMachine(memoryBytes: 64 << 20, kernel: directory + "/no-kernel"),
                directory: directory + "/4", executable: TestGuest.qemu, group: group))
        await #expect {
            try await missing.start(accelerator: .tcg)
        } throws: { error in
            "\(error)" == "real4 cannot start: \(directory)/no-kernel does not exist"
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Kills every guest a test made when the test ends, however it ends: a test that throws halfway
/// must not leave software-emulated guests burning the CPU under the tests after it.
final class GuestReaper: Sendable {
    private let guests = NIOLockedValueBox<[QEMUGuest]>([])

    func track(_ guest: QEMUGuest) -> QEMUGuest {
        guests.withLockedValue { $0.append(guest) }
        return guest
    }

    deinit {
        for guest in guests.withLockedValue({ $0 }) { guest.killImmediately() }
    }
}
