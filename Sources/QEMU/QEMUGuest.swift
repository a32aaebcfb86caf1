// A real virtual machine: one qemu-system process supervised by its node, driven over QMP.
import Foundation
import NIOConcurrencyHelpers
public import NIOCore

/// What QEMU and the guest's own balloon driver say about the guest's memory.
public struct QEMUMemoryStatistics: Sendable, Hashable {
    /// The memory the guest has now (its boot size less what the balloon holds).
    public var actualBytes: UInt64
    /// The guest's own figures, refreshed every second by its balloon driver; nil until it has
    /// reported (the driver loads during boot).
    public var guestTotalBytes: UInt64?
    public var guestFreeBytes: UInt64?
    public var guestAvailableBytes: UInt64?

    public init(
        actualBytes: UInt64, guestTotalBytes: UInt64? = nil, guestFreeBytes: UInt64? = nil,
        guestAvailableBytes: UInt64? = nil
    ) {
        self.actualBytes = actualBytes
        self.guestTotalBytes = guestTotalBytes
        self.guestFreeBytes = guestFreeBytes
        self.guestAvailableBytes = guestAvailableBytes
    }

    /// The memory the guest uses (total less available), what a dynamic-memory agent balances on;
    /// nil until the guest has reported.
    public var demandBytes: UInt64? {
        guard let total = guestTotalBytes, let available = guestAvailableBytes ?? guestFreeBytes else { return nil }
        return total > available ? total - available : 0
    }

    /// Reads `query-balloon`'s answer and the balloon device's `guest-stats` (QEMU reports a
    /// statistic the guest has not given as -1).
    package static func parse(balloon: QMPValue, guestStats: QMPValue?) -> QEMUMemoryStatistics? {
        guard let actual = balloon["actual"]?.count else { return nil }
        let stats = guestStats?["stats"]
        let reported = (guestStats?["last-update"]?.count ?? 0) > 0
        func figure(_ name: String) -> UInt64? { reported ? stats?[name]?.count : nil }
        return QEMUMemoryStatistics(
            actualBytes: actual, guestTotalBytes: figure("stat-total-memory"),
            guestFreeBytes: figure("stat-free-memory"), guestAvailableBytes: figure("stat-available-memory"))
    }
}

/// Why a guest could not start or be driven.
public struct QEMUGuestError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A guest running in its own QEMU process. Its files (control socket, console log, QEMU's own
/// output) live in `directory`; the process dies with this one (see `BoundProcess`).
public actor QEMUGuest {
    public nonisolated let name: String
    public nonisolated let machine: QEMUMachine
    public nonisolated let directory: String
    public nonisolated let files: QEMURuntimeFiles
    /// The RAM it has beyond its machine's memory, on the accelerator it was started on.
    private var ramPadding: UInt64 = 0
    /// QEMU's own stdout and stderr (its errors at start, for example).
    public nonisolated let outputLog: String
    private let executable: String
    private let group: any EventLoopGroup
    /// The running process, also readable without the actor (`killImmediately`).
    private nonisolated let running = NIOLockedValueBox<BoundProcess?>(nil)
    private var process: BoundProcess? {
        get { running.withLockedValue { $0 } }
        set { running.withLockedValue { $0 = newValue } }
    }
    private var control: QMPClient?
    /// Set while `start` runs (between its awaits, other calls reach the actor).
    private var starting = false
    /// Set by `stop` or `kill` while the guest is starting: the start ends by killing it.
    private var stopRequested = false

    /// A UNIX socket's path must fit `sun_path` (108 bytes, with its terminating zero).
    public static let maximumSocketPath = 107

    /// Throws when `path` is too long for a UNIX socket (`what` names it in the error).
    package static func checkSocketPath(_ path: String, _ what: String) throws {
        guard path.utf8.count <= maximumSocketPath else {
            throw QEMUGuestError(
                "\(what) \(path) is longer than \(maximumSocketPath) bytes, too long for a UNIX socket; use a shorter data directory"
            )
        }
    }

    public init(name: String, machine: QEMUMachine, directory: String, executable: String, group: any EventLoopGroup) {
        self.name = name
        self.machine = machine
        self.directory = directory
        self.executable = executable
        self.group = group
        self.files = QEMURuntimeFiles(
            controlSocket: directory + "/qmp.sock", consoleLog: Self.consoleLog(in: directory))
        self.outputLog = directory + "/qemu.log"
    }

    /// The process's id while it runs.
    public var pid: Int32? { process?.pid }

    /// Starts the process and connects to its control socket. With `paused`, the guest waits for
    /// `resume()`; with `incomingMigration`, for a migration stream instead of booting.
    public func start(accelerator: QEMUAccelerator, paused: Bool = false, incomingMigration: Bool = false)
        async throws
    {
        guard process == nil, !starting else {
            throw QEMUGuestError("\(name) is already running or starting")
        }
        let problems = machine.problems + missingFiles()
        guard problems.isEmpty else {
            throw QEMUGuestError("\(name) cannot start: " + problems.joined(separator: "; "))
        }
        try Self.checkSocketPath(files.controlSocket, "\(name): the control socket's path")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: files.controlSocket)
        let launch = QEMULaunch(
            name: name, accelerator: accelerator, startPaused: paused, incomingMigration: incomingMigration)
        ramPadding = QEMUMachine.ramPadding(on: accelerator)
        // From here the actor is re-entered at every await: `starting` refuses a second start, and a
        // kill or stop meanwhile (a fence) sets `stopRequested`, which ends this start.
        starting = true
        stopRequested = false
        defer { starting = false }
        let started = try await BoundProcess.start(
            executable: executable, arguments: machine.arguments(files: files, launch: launch), outputPath: outputLog)
        process = started
        do {
            control = try await connectControl(started)
            // The balloon driver refreshes the guest's memory figures every second from now on.
            try await control!.execute(
                "qom-set",
                [
                    "path": .string("/machine/peripheral/\(QEMUMachine.balloonID)"),
                    "property": "guest-stats-polling-interval", "value": 1,
                ])
            guard !stopRequested else { throw QEMUGuestError("\(name) was stopped while it started") }
        } catch {
            started.signal(SIGKILL)
            await finish(started)
            throw error
        }
    }

    /// Connects to the control socket once QEMU has made it; fails with QEMU's own words if it exits first.
    private func connectControl(_ process: BoundProcess) async throws -> QMPClient {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            if process.hasExited {
                let exit = await process.waitForExit()
                throw QEMUGuestError("\(name): QEMU \(exit) at start: \(ConsoleLog.tail(of: outputLog, bytes: 2000))")
            }
            if FileManager.default.fileExists(atPath: files.controlSocket) {
                if let client = try? await QMPClient.connect(socketPath: files.controlSocket, group: group) {
                    return client
                }
            }
            guard ContinuousClock.now < deadline else {
                throw QEMUGuestError("\(name): QEMU's control socket did not answer within 30 s")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    private func missingFiles() -> [String] {
        var missing: [String] = []
        if !FileManager.default.isExecutableFile(atPath: executable) {
            missing.append("QEMU is not installed at \(executable) (Debian: apt-get install qemu-system-x86)")
        }
        // Paths are looked for only once they are acceptable (`problems` names the others).
        guard machine.problems.isEmpty else { return missing }
        let paths = [machine.kernel, machine.initrd].compactMap { $0 } + machine.disks.map(\.path)
        for path in paths where !FileManager.default.fileExists(atPath: path) {
            missing.append("\(path) does not exist")
        }
        return missing
    }

    /// Runs a QMP command on the running guest.
    @discardableResult
    public func execute(_ command: String, _ arguments: [String: QMPValue] = [:]) async throws -> QMPValue {
        guard let control else { throw QEMUGuestError("\(name) is not running") }
        return try await control.execute(command, arguments)
    }

    /// How many QMP events named `name` the guest's QEMU sent so far (`QMPClient.eventCount`).
    public func eventCount(_ name: String) async throws -> UInt64 {
        guard let control else { throw QEMUGuestError("\(self.name) is not running") }
        return try await control.eventCount(name)
    }

    /// Waits for an event named `name` after the `seen`-th, at most `timeout` (`QMPClient.waitForEvent`).
    @discardableResult
    public func waitForEvent(_ name: String, after seen: UInt64, timeout: Duration) async throws -> UInt64 {
        guard let control else { throw QEMUGuestError("\(self.name) is not running") }
        return try await control.waitForEvent(name, after: seen, timeout: timeout)
    }

    /// QEMU's run state: `running`, `paused`, `prelaunch`, `inmigrate`, `postmigrate`, `shutdown`, …
    public func runState() async throws -> String {
        try await execute("query-status")["status"]?.string ?? "unknown"
    }

    /// Stops the guest's processors; its memory and devices stay as they are.
    public func pause() async throws { try await execute("stop") }

    /// Runs the guest's processors again (or for the first time, after a paused start).
    public func resume() async throws { try await execute("cont") }

    /// Asks the balloon for `bytes` of guest memory: the guest gives back pages down to it or takes
    /// them back up to its boot size, at its own pace. Sizes here and in `memoryStatistics` leave out
    /// the RAM a TCG guest has beyond its memory (`QEMUMachine.ramSize`), which the balloon never takes.
    public func setMemoryTarget(bytes: UInt64) async throws {
        try await execute("balloon", ["value": .number(Double(bytes + ramPadding))])
    }

    public func memoryStatistics() async throws -> QEMUMemoryStatistics {
        let balloon = try await execute("query-balloon")
        let stats = try? await execute(
            "qom-get",
            ["path": .string("/machine/peripheral/\(QEMUMachine.balloonID)"), "property": "guest-stats"])
        guard let statistics = QEMUMemoryStatistics.parse(balloon: balloon, guestStats: stats) else {
            throw QEMUGuestError("\(name): QEMU's balloon answer has no size: \(balloon)")
        }
        var memory = statistics
        memory.actualBytes -= min(ramPadding, memory.actualBytes)
        return memory
    }

    /// Ends the process: `quit` over QMP, SIGKILL if it has not ended within `grace` (whether or
    /// not QEMU answered).
    public func stop(grace: Duration = .seconds(5)) async {
        if starting { stopRequested = true }
        guard let process else { return }
        let control = self.control
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = try? await control?.execute("quit") }
            // The group waits for every child, so the timer does the killing itself.
            group.addTask {
                try? await Task.sleep(for: grace)
                if !Task.isCancelled { process.signal(SIGKILL) }
            }
            _ = await process.waitForExit()
            group.cancelAll()
        }
        await finish(process)
    }

    /// Ends the process at once (SIGKILL): what fencing does. A guest still starting is killed as
    /// soon as its process exists.
    public func kill() async {
        if starting { stopRequested = true }
        guard let process else { return }
        process.signal(SIGKILL)
        await finish(process)
    }

    /// SIGKILLs the process now, without waiting for the actor or the process: for paths that
    /// cannot wait (a test's clean-up, a handler that must not suspend). `kill()` is the way
    /// otherwise: it also waits for the end and forgets the process.
    public nonisolated func killImmediately() {
        running.withLockedValue { $0 }?.signal(SIGKILL)
    }

    private func finish(_ process: BoundProcess) async {
        _ = await process.waitForExit()
        if self.process === process {
            control?.close()
            control = nil
            self.process = nil
        }
    }

    /// How the process ended, waiting for it: for a supervisor that must notice a guest that died.
    public func waitForExit() async -> ProcessExit? {
        guard let process else { return nil }
        return await process.waitForExit()
    }

    /// The last `bytes` of the guest's serial console.
    public nonisolated func console(lastBytes bytes: Int = 4096) -> String {
        ConsoleLog.tail(of: files.consoleLog, bytes: bytes)
    }

    /// Where a guest started in `directory` writes its serial console.
    public static func consoleLog(in directory: String) -> String { directory + "/console.log" }
}
