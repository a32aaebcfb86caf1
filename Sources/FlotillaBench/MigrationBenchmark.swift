// `flotilla-bench migration`: live migrations between real nodes, and their transfer rate against a plain TCP copy.
import ArgumentParser
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import Guests
import LiveMigration

/// Runs a local 3-node cluster of `flotilla node` processes on loopback per build, and migrates a
/// guest back and forth between its two followers (the leader, which the benchmark's API calls
/// go to, is neither source nor target), for each guest size and dirty rate.
///
/// Each guest's memory all holds data (startup = minimum = maximum = demand). Dirty rates are
/// shares of the bandwidth measured in the same run: the median rate of the rounds of the size's
/// migrations at 0 % on that build. Per case it reports the downtime (p50, p99: pause on the source
/// to resume on the target, as the migration's stats say), the total time, the rounds, the bytes
/// sent ÷ memory, and the rounds' rate (their bytes ÷ their time) against a plain TCP copy of one
/// full round's bytes between two processes on the same loopback (`tcp-copy`), and that copy
/// with the pages made and checked. The competitors (each build's migration, the two copies)
/// take turns going first. Any failed request or migration fails the run: no table, non-zero exit.
struct MigrationBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migration",
        abstract: "Live migrations between real nodes against a plain TCP copy (a markdown table).")

    @Option(
        help: """
            A flotilla binary, as PATH or NAME=PATH. Repeat it to measure builds side by side in one \
            run: each gets a cluster of its own, and they take turns.
            """)
    var flotilla: [String]

    @Option(help: "Guest sizes, comma-separated (all their memory holds data).") var sizes = "256M,1G"

    @Option(help: "Dirty rates in percent of the bandwidth measured at 0 % (which comes first).")
    var dirty = "0,1,10,50"

    @Option(help: "Migrations per case, back and forth between two nodes.") var migrations = 10

    @Option(help: "The flotilla-bench binary that runs the plain copies (default: this one).") var copier: String?

    @Option(help: "Where the clusters' data and logs go (removed afterwards unless the run fails).")
    var directory: String?

    func validate() throws {
        guard !flotilla.isEmpty else { throw ValidationError("give at least one --flotilla") }
        for build in try builds() where !FileManager.default.isExecutableFile(atPath: build.path) {
            throw ValidationError(
                "--flotilla \(build.path) is not an executable; build it with swift build -c release --product flotilla"
            )
        }
        let rates = try dirtyRates()
        guard rates.first == 0 else {
            throw ValidationError(
                "--dirty must start with 0: the other rates are shares of the bandwidth measured there")
        }
        _ = try guestSizes()
        guard (1...1000).contains(migrations) else { throw ValidationError("--migrations must be 1–1000") }
    }

    func run() async throws {
        let root = directory ?? NSTemporaryDirectory() + "flotilla-bench-migration-\(UUID().uuidString.prefix(8))"
        let builds = try builds().map { try Build(name: $0.name, path: $0.path, directory: root + "/" + $0.name) }
        let copies = try PlainCopies(bench: copier ?? Bundle.main.executablePath ?? CommandLine.arguments[0])
        var succeeded = false
        defer {
            copies.stop()
            for build in builds { build.cluster.stopAll() }
            if succeeded {
                try? FileManager.default.removeItem(atPath: root)
            } else {
                FileHandle.standardError.write(Data("migration bench: logs kept in \(root)\n".utf8))
            }
        }
        for build in builds { try await build.setUp() }
        var rows: [Row] = []
        for size in try guestSizes() {
            let pages = GuestMemory.pages(in: size)
            let roundBytes = pages * PageFrame.size
            for build in builds { try await build.startGuest(size: size) }
            var bandwidth: [String: Double] = [:]
            for percent in try dirtyRates() {
                var dirtyPages: [String: UInt64] = [:]
                for build in builds {
                    let rate = UInt64((Double(percent) / 100 * (bandwidth[build.name] ?? 0) / 4096).rounded())
                    dirtyPages[build.name] = rate
                    try await build.setDirtyRate(rate, size: size)
                }
                var samples: [String: [MigrationSample]] = [:]
                var plain: [Double] = []
                var withPages: [Double] = []
                // Each build's migration, then the two copies; the first of the list moves one on per pair.
                let competitors = builds.map { Competitor.migration($0) } + [.plainCopy, .pageCopy]
                for pair in 0..<migrations {
                    for index in competitors.indices {
                        switch competitors[(index + pair) % competitors.count] {
                        case .migration(let build):
                            samples[build.name, default: []].append(try await build.migrate(size: size, pages: pages))
                        case .plainCopy:
                            plain.append(try await copies.copy(bytes: roundBytes, pages: false))
                        case .pageCopy:
                            withPages.append(try await copies.copy(bytes: roundBytes, pages: true))
                        }
                    }
                }
                for build in builds {
                    let taken = samples[build.name]!
                    if percent == 0 { bandwidth[build.name] = median(taken.map(\.roundsRate)) }
                    rows.append(
                        Row(
                            build: build.name, size: size, percent: percent, dirtyPages: dirtyPages[build.name]!,
                            samples: taken, plain: plain, withPages: withPages))
                }
            }
            for build in builds { try await build.stopGuest(size: size) }
        }
        printTable(rows, named: builds.count > 1 || builds[0].name != "flotilla")
        succeeded = true
    }

    // MARK: The table

    private func printTable(_ rows: [Row], named: Bool) {
        print(
            "| build | guest | dirty rate (share of bandwidth) | migrations | downtime p50 | downtime p99 | total p50 "
                + "| rounds, median (range) | sent ÷ memory | rounds' rate | plain copy | rounds' rate ÷ plain copy "
                + "| copy making and checking pages |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for row in rows {
            let downtimes = row.samples.map(\.downtimeMilliseconds).sorted()
            let rounds = row.samples.map(\.rounds).sorted()
            // Per pair: the migration's rounds against the plain copy of that pair.
            let ratios = zip(row.samples, row.plain).map { $0.roundsRate / $1 }
            print(
                "| \(row.build) | \(ByteCount(row.size)) | \(row.percent) % (\(row.dirtyPages) pages/s) "
                    + "| \(row.samples.count) | \(Self.ms(median(downtimes))) | \(Self.ms(percentile(downtimes, 0.99))) "
                    + "| \(String(format: "%.2f s", median(row.samples.map(\.totalSeconds)))) "
                    + "| \(median(rounds.map(Double.init)).formatted()) (\(rounds.first!)–\(rounds.last!)) "
                    + "| \(String(format: "%.3f", median(row.samples.map(\.sentPerMemory)))) "
                    + "| \(Self.rate(median(row.samples.map(\.roundsRate)))) | \(Self.rate(median(row.plain))) "
                    + "| \(String(format: "%.2f", median(ratios))) | \(Self.rate(median(row.withPages))) |")
        }
        print()
        // The issue's goals, said of every build.
        for build in Set(rows.map(\.build)).sorted() {
            let mine = rows.filter { $0.build == build }
            let calm = mine.filter { $0.percent <= 10 }
            let worst = calm.map { percentile($0.samples.map(\.downtimeMilliseconds).sorted(), 0.99) }.max() ?? 0
            let lowest = mine.map { row in median(zip(row.samples, row.plain).map { $0.roundsRate / $1 }) }.min() ?? 0
            let prefix = named ? "\(build): " : ""
            print(
                "\(prefix)downtime p99 under 50 ms at dirty rates up to 10 %: \(worst < 50 ? "met" : "not met") "
                    + "(worst \(Self.ms(worst))); rounds' rate at least 0.8 of the plain copy: "
                    + "\(lowest >= 0.8 ? "met" : "not met") (lowest \(String(format: "%.2f", lowest)))")
        }
    }

    private static func ms(_ milliseconds: Double) -> String { String(format: "%.1f ms", milliseconds) }
    private static func rate(_ bytesPerSecond: Double) -> String { String(format: "%.2f GB/s", bytesPerSecond / 1e9) }

    // MARK: Arguments

    private func builds() throws -> [(name: String, path: String)] {
        let parsed = flotilla.map { argument -> (name: String, path: String) in
            guard let equals = argument.firstIndex(of: "=") else { return ("flotilla", argument) }
            return (String(argument[..<equals]), String(argument[argument.index(after: equals)...]))
        }
        guard Set(parsed.map(\.name)).count == parsed.count else {
            throw ValidationError("name each --flotilla (NAME=PATH) when there are several")
        }
        return parsed
    }

    private func guestSizes() throws -> [UInt64] {
        try sizes.split(separator: ",").map { text in
            guard let bytes = ByteCount(parsing: String(text))?.bytes, bytes >= 1 << 20 else {
                throw ValidationError("--sizes takes sizes like 256M or 1G, got \(text)")
            }
            return bytes
        }
    }

    private func dirtyRates() throws -> [Int] {
        try dirty.split(separator: ",").map { text in
            guard let percent = Int(text), (0...100).contains(percent) else {
                throw ValidationError("--dirty takes percentages 0–100, got \(text)")
            }
            return percent
        }
    }
}

/// One case of one build: what its migrations took, and the copies measured between them.
private struct Row {
    let build: String
    let size: UInt64
    let percent: Int
    let dirtyPages: UInt64
    let samples: [MigrationSample]
    /// Bytes per second of the plain copies and of the copies making and checking pages.
    let plain: [Double]
    let withPages: [Double]
}

/// What one migration's stats said.
private struct MigrationSample {
    let downtimeMilliseconds: Double
    let totalSeconds: Double
    let rounds: Int
    let sentPerMemory: Double
    /// The rounds' bytes ÷ their time (the copy while the guest runs; not the last pages).
    let roundsRate: Double
}

private enum Competitor {
    case migration(Build)
    case plainCopy
    case pageCopy
}

/// One build under test: its cluster, and the guests it migrates between its two followers.
private final class Build: @unchecked Sendable {
    // Unchecked: used only by the benchmark's one sequential task.
    let name: String
    let cluster: BenchCluster
    /// The leader (the API calls go to it) and the two nodes the guests move between.
    private var leader = 0
    private var ends = (0, 0)
    /// Where each size's guest runs now.
    private var location: [UInt64: Int] = [:]

    init(name: String, path: String, directory: String) throws {
        self.name = name
        cluster = try BenchCluster(
            flotilla: path, size: 3, directory: directory, settings: [:], requestTimeout: .seconds(10))
    }

    private var api: APIClient { cluster.client(leader) }

    func setUp() async throws {
        try cluster.startAll()
        leader = try await cluster.awaitLeader()
        let followers = (1...3).filter { $0 != leader }
        ends = (followers[0], followers[1])
        try await cluster.await("all 3 nodes of \(name) registered") {
            (try? await api.nodes())?.count == 3
        }
        _ = try await api.createVolume("csv1", coordinator: "n\(leader)")
    }

    static func guestName(_ size: UInt64) -> String { "Guest\(ByteCount(size))" }

    /// Creates the guest of `size` and runs it on one end until all its memory holds data.
    func startGuest(size: UInt64) async throws {
        let vm = Self.guestName(size)
        _ = try await api.createVM(
            VMCreation(
                name: vm, startup: size, minimum: size, maximum: size, volume: "csv1",
                workload: WorkloadView(demand: size, dirtyPagesPerSecond: 0)))
        _ = try await api.startVM(vm, on: "n\(ends.0)")
        location[size] = ends.0
        try await waitUntilRunning(vm, on: ends.0, pages: GuestMemory.pages(in: size))
    }

    func setDirtyRate(_ pagesPerSecond: UInt64, size: UInt64) async throws {
        _ = try await api.setVMWorkload(
            Self.guestName(size), WorkloadView(demand: size, dirtyPagesPerSecond: pagesPerSecond))
    }

    func stopGuest(size: UInt64) async throws {
        _ = try await api.stopVM(Self.guestName(size))
    }

    /// Migrates the guest of `size` to the other end and waits until it runs there with all its pages.
    func migrate(size: UInt64, pages: Int) async throws -> MigrationSample {
        let vm = Self.guestName(size)
        let target = location[size] == ends.0 ? ends.1 : ends.0
        let started = try await api.migrateVM(vm, to: "n\(target)")
        var ended: MigrationView?
        try await poll("\(name): \(started.id) of \(vm) to n\(target) to end", within: .seconds(300)) {
            let view = try await api.migration(started.id)
            guard !view.active else { return false }
            guard view.phase == "completed" else {
                throw BenchError(
                    description: "\(name): \(started.id) of \(vm) ended \(view.phase): \(view.reason ?? "no reason")")
            }
            // The target records the downtime and the total once the guest runs there.
            guard view.stats?.downtimeMicroseconds != nil, view.stats?.totalMilliseconds != nil else { return false }
            ended = view
            return true
        }
        location[size] = target
        try await waitUntilRunning(vm, on: target, pages: pages)
        let stats = ended!.stats!
        let roundBytes = stats.rounds.reduce(0) { $0 + $1.bytes }
        let roundMilliseconds = stats.rounds.reduce(0) { $0 + $1.milliseconds }
        return MigrationSample(
            downtimeMilliseconds: Double(stats.downtimeMicroseconds!) / 1000,
            totalSeconds: Double(stats.totalMilliseconds!) / 1000, rounds: stats.rounds.count,
            sentPerMemory: Double(stats.totalBytes) / Double(stats.memoryBytes),
            roundsRate: Double(roundBytes) / (Double(max(roundMilliseconds, 1)) / 1000))
    }

    /// Waits until `node`'s agent runs `vm` with all of its `pages` holding data.
    private func waitUntilRunning(_ vm: String, on node: Int, pages: Int) async throws {
        try await poll("\(name): \(vm) running on n\(node) with its \(pages) pages", within: .seconds(60)) {
            let agent = try await cluster.client(node).agent()
            return agent.vms.contains { $0.name == vm && $0.running && $0.pagesTouched == pages }
        }
    }
}

/// Polls `condition` every 20 ms until it holds; a condition that throws (a failed request) or
/// never holds within `limit` fails the run.
func poll(_ what: String, within limit: Duration, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw BenchError(description: "\(what): not within \(limit)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// The plain copies' two processes: a receiver that lives through the run, a sender per copy.
private final class PlainCopies: @unchecked Sendable {
    // Unchecked: used only by the benchmark's one sequential task.
    private let bench: String
    private let receiver: Process
    private let port: Int

    init(bench: String) throws {
        self.bench = bench
        receiver = Process()
        receiver.executableURL = URL(fileURLWithPath: bench)
        receiver.arguments = ["tcp-copy", "receive"]
        let output = Pipe()
        receiver.standardOutput = output
        try receiver.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let more = output.fileHandleForReading.availableData
            guard !more.isEmpty else { throw BenchError(description: "the tcp-copy receiver did not say its port") }
            line += more
        }
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw BenchError(description: "the tcp-copy receiver said no port") }
        self.port = port
    }

    /// Copies `bytes` to the receiver in a new sender process; returns the bytes per second.
    func copy(bytes: Int, pages: Bool) async throws -> Double {
        let sender = Process()
        sender.executableURL = URL(fileURLWithPath: bench)
        sender.arguments =
            ["tcp-copy", "send", "--port", "\(port)", "--bytes", "\(bytes)"] + (pages ? ["--pages"] : [])
        let output = Pipe()
        sender.standardOutput = output
        let status = try await withCheckedThrowingContinuation {
            (continuation: CheckedContinuation<Int32, any Error>) in
            sender.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try sender.run() } catch { continuation.resume(throwing: error) }
        }
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard status == 0, let nanoseconds = Double(said.trimmingCharacters(in: .whitespacesAndNewlines)),
            nanoseconds > 0
        else {
            throw BenchError(description: "a tcp-copy of \(bytes) bytes failed (exit \(status)): \(said)")
        }
        return Double(bytes) / (nanoseconds / 1e9)
    }

    func stop() {
        receiver.terminate()
        receiver.waitUntilExit()
    }
}

func median(_ values: [Double]) -> Double { percentile(values.sorted(), 0.5) }

/// The nearest-rank percentile of sorted values (p99 of fewer than 100 is the largest).
private func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return sorted[max(0, Int((Double(sorted.count) * fraction).rounded(.up)) - 1)]
}
