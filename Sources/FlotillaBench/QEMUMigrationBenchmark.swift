// `flotilla-bench qemu-migration`: a real guest's live migration with QEMU's stream carried over
// HTTP/2 (as between two nodes) against QEMU migrating straight to its target over TCP.
import ArgumentParser
import ClusterModel
import FlotillaTestKit
import Foundation
import HTTP2
import LiveMigration
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import QEMU

/// Per guest size and workload, one guest boots (software emulation unless `--accel kvm`) and then
/// moves back and forth between two QEMU processes, `--migrations` times per route, the routes
/// taking turns going first: **carried** — out of the source QEMU's UNIX socket, through an
/// HTTP/2 request (`QEMUStreamSender` → an `HTTP2Server` with `QEMUStreamReceiver`) into the
/// target's socket; **relay** — through `socat` (UNIX socket to UNIX socket, 1 MiB buffer), the
/// cost of any relay process, without HTTP/2; **direct** — QEMU to QEMU over TCP on loopback, no
/// process in the way. All hold the guest at pre-switchover and decide at once (no commit), so the
/// differences are the carrying.
/// Reported per route: total time and the pause (guest stopped → running on the target) p50 and
/// largest, QEMU's own downtime p50, bytes sent, the rate (bytes ÷ total time), each route's rate ÷
/// the direct one (medians), each migration's rate ÷ the direct one of its round (median and range:
/// the rounds take turns, so a pair shares the machine's state), and the processor time each party used during the migration (p50, from
/// /proc: the source QEMU, the target QEMU, and the carrier — this process for the carried route,
/// socat for the relay; this process's own share of the other routes is QMP polling): with two
/// guests' QEMUs and the carrier on one machine, it shows whether the cores were the limit.
/// A failed migration fails the run.
struct QEMUMigrationBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qemu-migration",
        abstract: "Real guests' live migration carried over HTTP/2 against QEMU's direct TCP (a markdown table).")

    @Option(help: "The guest kernel (scripts/build-test-guest.sh DIR makes DIR/vmlinuz).") var kernel: String
    @Option(help: "Its initramfs (DIR/initramfs.cpio.gz).") var initrd: String
    @Option(help: "Guest sizes, comma-separated.") var sizes = "256M,1G"
    @Option(help: "MiB/s the guest rewrites, comma-separated (0: idle).") var dirty = "0,8"
    @Option(help: "Share of the guest's memory filled with random data, percent.") var fill = 50
    @Option(help: "Migrations per route and case.") var migrations = 6
    @Option(help: "kvm or tcg.") var accel = "tcg"
    @Option(help: "QEMU.") var qemu = "/usr/bin/qemu-system-x86_64"

    func validate() throws {
        guard (1...200).contains(migrations) else { throw ValidationError("--migrations must be 1–200") }
        guard (0...90).contains(fill) else { throw ValidationError("--fill must be 0–90 (percent)") }
        guard QEMUAccelerator(rawValue: accel) != nil else { throw ValidationError("--accel is kvm or tcg") }
        guard FileManager.default.isExecutableFile(atPath: Self.socat) else {
            throw ValidationError("\(Self.socat) is missing (Debian package socat): the relay route needs it")
        }
        _ = try guestSizes()
        _ = try dirtyRates()
    }

    func guestSizes() throws -> [UInt64] {
        try sizes.split(separator: ",").map {
            guard let size = ByteCount(parsing: String($0))?.bytes, size % (1 << 20) == 0 else {
                throw ValidationError("--sizes takes sizes such as 256M,1G, not \($0)")
            }
            return size
        }
    }

    func dirtyRates() throws -> [Int] {
        try dirty.split(separator: ",").map {
            guard let rate = Int($0), rate >= 0 else { throw ValidationError("--dirty takes MiB/s such as 0,8") }
            return rate
        }
    }

    static let socat = "/usr/bin/socat"

    enum Route: String, CaseIterable { case carried, relay, direct }

    struct Sample {
        var total: Duration
        var paused: Duration
        var qemuDowntime: Duration
        var bytes: UInt64
        /// Processor time (user + system) of the source QEMU, the target QEMU and the carrier.
        var cpu: ProcessorTimes
    }

    struct ProcessorTimes {
        var source: Duration
        var target: Duration
        var carrier: Duration
    }

    /// A process's processor time so far (user + system), from /proc/PID/stat; nil once it is gone.
    static func processorTime(pid: String) -> Duration? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // After the command's closing parenthesis: state is field 3, utime 14 and stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Int64(fields[11]), let system = Int64(fields[12]) else { return nil }
        return .milliseconds((user + system) * 1000 / Int64(sysconf(Int32(_SC_CLK_TCK))))
    }

    /// The processor time of reaped child processes so far (user + system).
    static func childrenProcessorTime() -> Duration {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        func duration(_ time: timeval) -> Duration { .seconds(Int64(time.tv_sec)) + .microseconds(Int64(time.tv_usec)) }
        return duration(usage.ru_utime) + duration(usage.ru_stime)
    }

    func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let accelerator = QEMUAccelerator(rawValue: accel)!
        let receiver = QEMUStreamReceiver()
        var router = Router()
        receiver.register(on: &router)
        var configuration = HTTP2Server.Configuration(host: "127.0.0.1", port: 0)
        // The node's data listener's settings (NodeDaemon).
        configuration.initialStreamWindowSize = 4 << 20
        configuration.connectionWindowSize = 32 << 20
        configuration.maxReadSize = 1 << 20
        configuration.maxFrameSize = 1 << 20
        let server = HTTP2Server(configuration: configuration, router: router)
        let port = try await server.start()
        let client = HTTP2Client(configuration: .init(host: "127.0.0.1", port: port))
        let root = "/tmp/fl-qbench-\(UUID().uuidString.prefix(6))"
        var lines: [String] = []
        var nextID: UInt64 = 0
        var succeeded = false
        defer {
            if succeeded {
                try? FileManager.default.removeItem(atPath: root)
            } else {
                FileHandle.standardError.write(Data("qemu-migration bench: the guests' files kept in \(root)\n".utf8))
            }
        }
        for size in try guestSizes() {
            for rate in try dirtyRates() {
                let fillMiB = size >> 20 * UInt64(fill) / 100
                let machine = QEMUMachine(
                    memoryBytes: size, kernel: kernel, initrd: initrd,
                    kernelArguments: "quiet flotilla.vm=bench flotilla.fill=\(fillMiB) flotilla.dirty=\(rate)")
                var samples: [Route: [Sample]] = [:]
                var current = QEMUGuest(
                    name: "bench", machine: machine, directory: root + "/g0", executable: qemu, group: group)
                try await current.start(accelerator: accelerator)
                try await waitFor("the guest fills \(fillMiB) MiB", limit: .seconds(300)) {
                    current.console().contains("flotilla-guest: filled")
                }
                var turn = 0
                // One unmeasured migration per route first (the first after the boot and the HTTP/2
                // connection's set-up are slower); then rounds of one migration per route, each
                // round's order rotated by one so that every route goes first in turn.
                let routes = Route.allCases
                let order =
                    routes
                    + (0..<migrations).flatMap { round in
                        (0..<routes.count).map { routes[($0 + round) % routes.count] }
                    }
                for (index, route) in order.enumerated() {
                    turn += 1
                    let uptimeBefore = Self.lastUptime(current.console()) ?? 0
                    let target = QEMUGuest(
                        name: "bench", machine: machine, directory: root + "/g\(turn)", executable: qemu, group: group)
                    try await target.start(accelerator: accelerator, paused: true, incomingMigration: true)
                    let sourcePID = await current.pid.map { String($0) } ?? "0"
                    let targetPID = await target.pid.map { String($0) } ?? "0"
                    let before = (
                        source: Self.processorTime(pid: sourcePID), target: Self.processorTime(pid: targetPID),
                        carrier: Self.processorTime(pid: "self")
                    )
                    var relayTime: Duration = .zero
                    let result: QEMUMigrationResult
                    switch route {
                    case .carried:
                        nextID += 1
                        let id = MigrationID(rawValue: nextID)
                        result = try await QEMULiveMigration.run(
                            source: current, target: target,
                            open: { socket in
                                let token = receiver.expect(id, socketPath: socket)
                                return try await QEMUStreamSender.open(
                                    migration: id, token: token, to: client, timeout: .seconds(600))
                            }, decide: { true })
                    case .relay:
                        let incoming = target.directory + "/relay-out.sock"
                        let relayIn = target.directory + "/relay-in.sock"
                        let relay = Process()
                        relay.executableURL = URL(fileURLWithPath: Self.socat)
                        relay.arguments = ["-b", "1048576", "UNIX-LISTEN:" + relayIn, "UNIX-CONNECT:" + incoming]
                        let reapedBefore = Self.childrenProcessorTime()
                        try relay.run()
                        try await waitFor("socat listens", limit: .seconds(10)) {
                            FileManager.default.fileExists(atPath: relayIn)
                        }
                        result = try await QEMULiveMigration.runDirect(
                            source: current, target: target, uri: "unix:" + incoming, sourceURI: "unix:" + relayIn,
                            decide: { true })
                        relay.waitUntilExit()
                        relayTime = Self.childrenProcessorTime() - reapedBefore
                    case .direct:
                        let port = try freeLoopbackPorts(1)[0]
                        result = try await QEMULiveMigration.runDirect(
                            source: current, target: target, uri: "tcp:127.0.0.1:\(port)", decide: { true })
                    }
                    let after = (
                        source: Self.processorTime(pid: sourcePID), target: Self.processorTime(pid: targetPID),
                        carrier: Self.processorTime(pid: "self")
                    )
                    guard result.outcome == .completed, let paused = result.pausedFor,
                        let downtime = result.qemuDowntime, let bytes = result.transferredBytes
                    else { throw ValidationError("a \(route) migration did not complete: \(result)") }
                    guard let sourceBefore = before.source, let sourceAfter = after.source,
                        let targetBefore = before.target, let targetAfter = after.target,
                        let carrierBefore = before.carrier, let carrierAfter = after.carrier
                    else { throw ValidationError("the processor times of the \(route) migration could not be read") }
                    let cpu = ProcessorTimes(
                        source: sourceAfter - sourceBefore, target: targetAfter - targetBefore,
                        carrier: route == .relay ? relayTime : carrierAfter - carrierBefore)
                    if index >= routes.count {
                        samples[route, default: []].append(
                            Sample(
                                total: result.totalTime, paused: paused, qemuDowntime: downtime, bytes: bytes, cpu: cpu)
                        )
                    }
                    // The guest must run on, not only have moved: its uptime goes on past what it
                    // was before the move (a guest whose memory arrived damaged panics or hangs).
                    do {
                        try await waitFor("the guest counts on after a \(route) migration", limit: .seconds(20)) {
                            (Self.lastUptime(target.console()) ?? 0) > uptimeBefore
                        }
                    } catch {
                        throw ValidationError(
                            "migration \(index + 1) (\(route)) left the guest not running; its console: "
                                + target.console(lastBytes: 1500))
                    }
                    await current.stop(grace: .seconds(2))
                    try? FileManager.default.removeItem(atPath: current.directory)
                    current = target
                }
                await current.stop(grace: .seconds(2))
                lines += rows(size: size, rate: rate, samples: samples)
            }
        }
        await client.close()
        await server.shutdown()
        succeeded = true
        print(
            "| guest | dirty | route | migrations | total p50 | paused p50 | paused max | QEMU downtime p50 | sent p50 | rate p50 | ÷ direct | ÷ direct in its round, p50 (range) | CPU source / target / carrier p50 |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for line in lines { print(line) }
    }

    func rows(size: UInt64, rate: Int, samples: [Route: [Sample]]) -> [String] {
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        func rateOf(_ sample: Sample) -> Double { Double(sample.bytes) / seconds(sample.total) }
        let directRate = median(samples[.direct]!.map(rateOf))
        return Route.allCases.map { route in
            let list = samples[route]!
            let routeRate = median(list.map(rateOf))
            // The i-th sample of every route is from round i: each migration against the direct one
            // of its own round, which cancels the machine's slower and faster minutes.
            let paired = zip(list, samples[.direct]!).map { rateOf($0) / rateOf($1) }
            let pairedText =
                route == .direct
                ? "" : String(format: "%.2f (%.2f–%.2f)", median(paired), paired.min()!, paired.max()!)
            return "| \(ByteCount(size)) | \(rate) MiB/s | \(route.rawValue) | \(list.count) "
                + "| \(ms(median(list.map { seconds($0.total) }))) | \(ms(median(list.map { seconds($0.paused) }))) "
                + "| \(ms(list.map { seconds($0.paused) }.max()!)) | \(ms(median(list.map { seconds($0.qemuDowntime) }))) "
                + "| \(ByteCount(UInt64(median(list.map { Double($0.bytes) })))) | \(String(format: "%.0f MB/s", routeRate / 1e6)) "
                + "| \(route == .direct ? "" : String(format: "%.2f", routeRate / directRate)) | \(pairedText) "
                + "| \(ms(median(list.map { seconds($0.cpu.source) }))) / \(ms(median(list.map { seconds($0.cpu.target) }))) "
                + "/ \(ms(median(list.map { seconds($0.cpu.carrier) }))) |"
        }
    }

    func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    func ms(_ seconds: Double) -> String { String(format: "%.1f ms", seconds * 1000) }

    /// The last uptime the test guest printed on `console`.
    static func lastUptime(_ console: String) -> Int? {
        console.components(separatedBy: "uptime=").dropFirst().last.flatMap { Int($0.prefix { $0.isNumber }) }
    }

    func waitFor(_ what: String, limit: Duration, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < deadline else { throw ValidationError("not within \(limit): \(what)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
