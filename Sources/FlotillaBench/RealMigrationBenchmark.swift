// `flotilla-bench real-migration`: live migrations of real guests (QEMU) and of simulated guests of
// the same size, driven by a cluster of real nodes, side by side.
import ArgumentParser
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation

/// A 3-node cluster of `flotilla node` processes on loopback; per guest size and dirty rate, a real
/// guest (the test guest in QEMU, `--fill` percent of its memory random data that it rewrites at
/// the rate) and a simulated guest of the same size (the same share of its memory holding data,
/// dirtied at the same rate) move back and forth between the two followers, `--migrations` times
/// each, taking turns going first. Every migration goes through the whole protocol: prepare,
/// copy, `paused` and the switchover committed through the log. Reported per driver: the downtime
/// (p50 and largest; for the real guest QEMU's figure, the guest's stop to the stream's end, the
/// commit included; for the simulated one the pause on the source to the resume on the target),
/// the total time and the bytes sent, from the migrations' records. A failed request or migration
/// fails the run (no table, non-zero exit).
struct RealMigrationBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "real-migration",
        abstract: "Real and simulated guests' live migrations through a cluster, side by side (a markdown table).")

    @Option(help: "The flotilla binary the nodes run.") var flotilla: String
    @Option(help: "The guest kernel (scripts/build-test-guest.sh DIR makes DIR/vmlinuz).") var kernel: String
    @Option(help: "Its initramfs (DIR/initramfs.cpio.gz).") var initrd: String
    @Option(help: "Guest sizes, comma-separated.") var sizes = "256M,1G"
    @Option(help: "MiB/s the guests rewrite, comma-separated (0: idle).") var dirty = "0,8"
    @Option(help: "Share of the guests' memory that holds data, percent.") var fill = 50
    @Option(help: "Migrations per guest and case.") var migrations = 6
    @Option(help: "Where the cluster's data and logs go (removed afterwards unless the run fails).")
    var directory: String?

    func validate() throws {
        guard FileManager.default.isExecutableFile(atPath: flotilla) else {
            throw ValidationError("--flotilla \(flotilla) is not an executable")
        }
        for file in [kernel, initrd] where !FileManager.default.fileExists(atPath: file) {
            throw ValidationError("\(file) is missing; scripts/build-test-guest.sh makes it")
        }
        guard (1...200).contains(migrations) else { throw ValidationError("--migrations must be 1–200") }
        guard (1...90).contains(fill) else { throw ValidationError("--fill must be 1–90 (percent)") }
        _ = try guestSizes()
        _ = try dirtyRates()
    }

    private func guestSizes() throws -> [UInt64] {
        try sizes.split(separator: ",").map {
            guard let size = ByteCount(parsing: String($0))?.bytes, size % (1 << 20) == 0, size >= 128 << 20 else {
                throw ValidationError("--sizes takes whole MiB of at least 128M, such as 256M,1G, not \($0)")
            }
            return size
        }
    }

    private func dirtyRates() throws -> [Int] {
        try dirty.split(separator: ",").map {
            guard let rate = Int($0), (0...1024).contains(rate) else {
                throw ValidationError("--dirty takes MiB/s such as 0,8")
            }
            return rate
        }
    }

    private enum Driver: String, CaseIterable {
        case qemu
        case simulated
    }

    private struct Sample {
        var downtimeMilliseconds: Double
        var totalSeconds: Double
        var bytes: UInt64
    }

    func run() async throws {
        let root = directory ?? "/tmp/fl-rbench-\(UUID().uuidString.prefix(6))"
        try await BenchCluster.withCluster(flotilla: flotilla, root: root, bench: "real-migration") { cluster, leader in
            let api = cluster.client(leader)
            let ends = (1...3).filter { $0 != leader }
            let boot = root + "/shared/volumes/csv1/boot"
            try FileManager.default.createDirectory(atPath: boot, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: kernel, toPath: boot + "/vmlinuz")
            try FileManager.default.copyItem(atPath: initrd, toPath: boot + "/initramfs.cpio.gz")

            var lines: [String] = []
            for size in try guestSizes() {
                for rate in try dirtyRates() {
                    let filled = ((size / 100 * UInt64(fill)) >> 20) << 20
                    let names: [Driver: String] = [
                        .qemu: "real-\(size >> 20)m-\(rate)", .simulated: "sim-\(size >> 20)m-\(rate)",
                    ]
                    _ = try await api.createVM(
                        VMCreation(
                            name: names[.qemu]!, startup: size, minimum: size, maximum: size, volume: "csv1",
                            driver: GuestDriverView(
                                kind: "qemu", kernel: "csv1:boot/vmlinuz", initrd: "csv1:boot/initramfs.cpio.gz",
                                append: "quiet flotilla.fill=\(filled >> 20) flotilla.dirty=\(rate)")))
                    _ = try await api.createVM(
                        VMCreation(
                            name: names[.simulated]!, startup: size, minimum: size, maximum: size, volume: "csv1",
                            workload: WorkloadView(demand: filled, dirtyPagesPerSecond: UInt64(rate) * 256)))
                    for driver in Driver.allCases { _ = try await api.startVM(names[driver]!, on: "n\(ends[0])") }
                    // Ready: the real guest has written its fill (its console says so), the simulated one
                    // holds its pages.
                    let real = try await api.vm(names[.qemu]!)
                    let console = "\(root)/n\(ends[0])/qemu/n\(ends[0])-\(real.id)-e\(real.epoch)/console.log"
                    try await poll("both guests of \(ByteCount(size)) run with their data", within: .seconds(300)) {
                        let simulated = try await api.vm(names[.simulated]!)
                        return simulated.state == "running" && (simulated.memory.demand ?? 0) >= filled
                            && Self.console(console).contains("flotilla-guest: filled")
                    }
                    var samples: [Driver: [Sample]] = [:]
                    var location = ends[0]
                    for turn in 0..<migrations {
                        let target = location == ends[0] ? ends[1] : ends[0]
                        let order = turn % 2 == 0 ? Driver.allCases : Driver.allCases.reversed()
                        for driver in order {
                            let (sample, migration) = try await migrate(names[driver]!, to: target, api: api)
                            samples[driver, default: []].append(sample)
                            guard driver == .qemu else { continue }
                            // The real guest runs on at the target, not only moved: it reports its uptime
                            // there (a guest whose memory arrived damaged panics or hangs).
                            let vm = try await api.vm(names[.qemu]!)
                            let arrived = "\(root)/n\(target)/qemu/n\(target)-\(vm.id)-\(migration)/console.log"
                            try await poll(
                                "\(names[.qemu]!) counts on at n\(target) after \(migration)", within: .seconds(20)
                            ) {
                                Self.console(arrived).contains("uptime=")
                            }
                        }
                        location = target
                    }
                    for driver in Driver.allCases {
                        _ = try await api.stopVM(names[driver]!)
                        let list = samples[driver]!
                        let downtimes = list.map(\.downtimeMilliseconds).sorted()
                        lines.append(
                            "| \(ByteCount(size)) | \(rate) MiB/s | \(driver.rawValue) | \(list.count) "
                                + "| \(String(format: "%.1f ms", median(downtimes))) "
                                + "| \(String(format: "%.1f ms", downtimes.last!)) "
                                + "| \(String(format: "%.2f s", median(list.map(\.totalSeconds)))) "
                                + "| \(ByteCount(UInt64(median(list.map { Double($0.bytes) })))) |")
                    }
                }
            }
            print("| guest | dirty | driver | migrations | downtime p50 | downtime max | total p50 | sent p50 |")
            print("|---|---|---|---|---|---|---|---|")
            for line in lines { print(line) }
        }
    }

    private static func console(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// Migrates `vm` to node `target` and waits for its final stats; returns them and the migration's id.
    private func migrate(_ vm: String, to target: Int, api: APIClient) async throws -> (Sample, String) {
        let started = try await api.migrateVM(vm, to: "n\(target)")
        var ended: MigrationView?
        try await poll("\(started.id) of \(vm) to n\(target) to end", within: .seconds(600)) {
            let view = try await api.migration(started.id)
            guard !view.active else { return false }
            guard view.phase == "completed" else {
                throw BenchError(
                    description: "\(started.id) of \(vm) ended \(view.phase): \(view.reason ?? "no reason")")
            }
            guard view.stats?.downtimeMicroseconds != nil, view.stats?.totalMilliseconds != nil else { return false }
            ended = view
            return true
        }
        try await poll("\(vm) running on n\(target)", within: .seconds(60)) {
            let view = try await api.vm(vm)
            return view.state == "running" && view.owner == "n\(target)"
        }
        let stats = ended!.stats!
        return (
            Sample(
                downtimeMilliseconds: Double(stats.downtimeMicroseconds!) / 1000,
                totalSeconds: Double(stats.totalMilliseconds!) / 1000, bytes: stats.totalBytes),
            started.id
        )
    }
}
