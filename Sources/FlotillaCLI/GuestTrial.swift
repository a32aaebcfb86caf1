// `flotilla guest try`: boots one real guest with QEMU on this host, as a node would, and shows
// what the node would see — the accelerator and why, the console, the memory the guest reports.
// For an operator checking a host and a guest image before a cluster runs them.
import ClusterModel
import Foundation
import NIOPosix
public import QEMU

public enum GuestTrial {
    /// What to boot and how.
    public struct Options: Sendable {
        public var machine: QEMUMachine
        /// nil: probe this host (KVM only if a kernel boots under it).
        public var accelerator: QEMUAccelerator?
        public var directory: String
        public var executable: String
        /// How often the memory figures are printed.
        public var statisticsEvery: Duration

        public init(
            machine: QEMUMachine, accelerator: QEMUAccelerator?, directory: String, executable: String,
            statisticsEvery: Duration = .seconds(5)
        ) {
            self.machine = machine
            self.accelerator = accelerator
            self.directory = directory
            self.executable = executable
            self.statisticsEvery = statisticsEvery
        }
    }

    /// Boots the guest and reports until `until` returns (Ctrl-C, a time limit); then stops it.
    public static func run(
        _ options: Options, say: @escaping @Sendable (String) -> Void, until: @escaping @Sendable () async -> Void
    ) async throws {
        let accelerator: QEMUAccelerator
        if let chosen = options.accelerator {
            accelerator = chosen
            say("accelerator: \(chosen.rawValue) (as asked)")
        } else if let kernel = options.machine.kernel {
            let facts = await QEMUHost.detect(
                executable: options.executable, kernel: kernel, scratch: options.directory)
            accelerator = facts.accelerator
            say("accelerator: \(facts.accelerator.rawValue) — \(facts.reason)")
        } else {
            accelerator = .tcg
            say("accelerator: tcg — KVM is probed with a kernel; give --kernel or --accel kvm")
        }
        let guest = QEMUGuest(
            name: "try", machine: options.machine, directory: options.directory, executable: options.executable,
            group: MultiThreadedEventLoopGroup.singleton)
        let started = ContinuousClock.now
        try await guest.start(accelerator: accelerator)
        say(
            "QEMU pid \(await guest.pid ?? 0) running; console \(guest.files.consoleLog), control socket \(guest.files.controlSocket)"
        )
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await follow(guest, started: started, say: say) }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: options.statisticsEvery)
                    guard !Task.isCancelled else { return }
                    if let stats = try? await guest.memoryStatistics() { say(memoryLine(stats)) }
                }
            }
            group.addTask { await until() }
            await group.next()
            group.cancelAll()
        }
        await guest.stop()
        say("stopped")
    }

    /// Prints the console's lines as they come; the first with the time since QEMU started.
    static func follow(_ guest: QEMUGuest, started: ContinuousClock.Instant, say: @Sendable (String) -> Void) async {
        var offset: UInt64 = 0
        // Bytes, not a String: the console ends lines with "\r\n", one Character that is not "\n".
        var partial: [UInt8] = []
        var first = true
        while !Task.isCancelled {
            if let handle = FileHandle(forReadingAtPath: guest.files.consoleLog) {
                try? handle.seek(toOffset: offset)
                let data = (try? handle.readToEnd()) ?? Data()
                try? handle.close()
                offset += UInt64(data.count)
                partial += data
                while let newline = partial.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: partial[..<newline], as: UTF8.self)
                        .trimmingCharacters(in: .whitespacesAndNewlines)
                    partial.removeSubrange(...newline)
                    guard !line.isEmpty else { continue }
                    if first {
                        say("first console line \(ContinuousClock.now - started) after start")
                        first = false
                    }
                    say("console: \(line)")
                }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// One line of memory figures: the balloon's size and what the guest says it uses.
    public static func memoryLine(_ stats: QEMUMemoryStatistics) -> String {
        var line = "memory: actual \(ByteCount(stats.actualBytes))"
        if let total = stats.guestTotalBytes { line += ", guest total \(ByteCount(total))" }
        if let available = stats.guestAvailableBytes { line += ", available \(ByteCount(available))" }
        if let demand = stats.demandBytes { line += ", in use \(ByteCount(demand))" }
        if stats.guestTotalBytes == nil { line += " (the guest's balloon driver has not reported yet)" }
        return line
    }
}
