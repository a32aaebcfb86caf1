// `flotilla guest try`: one real guest on this host, without a cluster.
import ArgumentParser
import ClusterModel
import FlotillaCLI
import Foundation
import QEMU
import UnixSignals

struct GuestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guest", abstract: "Real guests on this host (QEMU), without a cluster.",
        subcommands: [Try.self])

    struct Try: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Boot one guest with QEMU as a node would, and show what the node would see.",
            discussion: """
                Finds the accelerator (KVM only if a kernel boots under it, else software emulation), \
                starts qemu-system-x86_64 bound to this process (it dies with it, even on SIGKILL), \
                prints the guest's console and, every few seconds, the memory its balloon driver \
                reports. Ctrl-C (or --seconds) stops it. scripts/build-test-guest.sh DIR makes a small \
                guest: --kernel DIR/vmlinuz --initrd DIR/initramfs.cpio.gz.
                """)

        @Option(help: "A Linux kernel to boot.") var kernel: String?
        @Option(help: "Its initial RAM disk.") var initrd: String?
        @Option(help: "Kernel arguments (console=ttyS0 is always there).") var append = ""
        @Option(help: "A disk image to open (and boot without --kernel): PATH[:raw|qcow2], default raw.")
        var disk: [String] = []
        @Option(help: "Memory, e.g. 256M.") var memory = "256M"
        @Option(help: "Virtual processors.") var vcpus = 1
        @Option(help: "auto (probe), kvm or tcg.") var accel = "auto"
        @Option(help: "Where the guest's files go (control socket, console).") var dir = ".flotilla/guest-try"
        @Option(help: "Stop after this many seconds (default: run until Ctrl-C).") var seconds: Double?
        @Option(help: "The QEMU executable.") var qemu = "/usr/bin/qemu-system-x86_64"

        func run() async throws {
            let memoryBytes = try bytes(memory, option: "--memory")
            let disks = try disk.map(Self.parseDisk)
            let accelerator: QEMUAccelerator?
            switch accel {
            case "auto": accelerator = nil
            default:
                guard let chosen = QEMUAccelerator(rawValue: accel) else {
                    throw ValidationError("--accel is auto, kvm or tcg, not \"\(accel)\"")
                }
                accelerator = chosen
            }
            if let seconds, !(seconds > 0) { throw ValidationError("--seconds must be more than 0") }
            let absolute = { (path: String) in
                path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
            }
            let machine = QEMUMachine(
                vcpus: vcpus, memoryBytes: memoryBytes, kernel: kernel.map(absolute), initrd: initrd.map(absolute),
                kernelArguments: append, disks: disks.map { QEMUDisk(path: absolute($0.path), format: $0.format) })
            guard machine.problems.isEmpty else {
                throw ValidationError(machine.problems.joined(separator: "; "))
            }
            let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
            let limit = seconds
            do {
                try await GuestTrial.run(
                    GuestTrial.Options(
                        machine: machine, accelerator: accelerator, directory: absolute(dir), executable: qemu),
                    say: { line in
                        // Line by line even into a file or pipe (a log someone follows).
                        FileHandle.standardOutput.write(Data((line + "\n").utf8))
                    },
                    until: {
                        // Ctrl-C or SIGTERM, or the time limit, whichever comes first.
                        await withTaskGroup(of: Void.self) { group in
                            group.addTask { for await _ in signals { return } }
                            if let limit {
                                group.addTask { try? await Task.sleep(for: .milliseconds(Int64(limit * 1000))) }
                            }
                            await group.next()
                            group.cancelAll()
                        }
                    })
            } catch let error as QEMUGuestError {
                throw ValidationError(error.description)
            }
        }

        static func parseDisk(_ text: String) throws -> QEMUDisk {
            var path = text
            var format = QEMUDisk.Format.raw
            if let colon = text.lastIndex(of: ":"),
                let named = QEMUDisk.Format(rawValue: String(text[text.index(after: colon)...]))
            {
                path = String(text[..<colon])
                format = named
            }
            guard !path.isEmpty else { throw ValidationError("--disk is PATH[:raw|qcow2], not \"\(text)\"") }
            return QEMUDisk(path: path, format: format)
        }
    }
}
