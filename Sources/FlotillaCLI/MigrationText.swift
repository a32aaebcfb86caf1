import ClusterModel
// What the CLI prints of live migrations: the table with their stats, and the four steps of one as they happen.
public import FlotillaAPI
import Foundation

extension ClusterText {
    /// `flotilla migrations`: each with its rounds, bytes, downtime and total time as far as known.
    public static func migrationTable(_ migrations: [MigrationView]) -> String {
        guard !migrations.isEmpty else { return "(none)" }
        return TextTable.render(
            header: ["ID", "VM", "FROM", "TO", "PHASE", "ROUNDS", "SENT", "DOWNTIME", "TOTAL", "REASON"],
            rows: migrations.map { migration in
                let stats = migration.stats
                return [
                    migration.id, migration.vmName ?? migration.vm, migration.source, migration.target,
                    migration.phase, stats.map { String($0.rounds.count) } ?? "",
                    stats.map { MigrationProgress.size($0.totalBytes) } ?? "",
                    stats?.downtimeMicroseconds.map(MigrationProgress.milliseconds) ?? "",
                    stats?.totalMilliseconds.map { MigrationProgress.milliseconds($0 * 1000) } ?? "",
                    migration.reason ?? "",
                ]
            })
    }
}

/// The reference's four steps of a live migration, printed as they happen (`vm migrate --watch`):
/// 1. the target made the VM's shell and reserved its memory;
/// 2. each pre-copy round, with its pages, bytes, time and what the guest dirtied meanwhile;
/// 3. the guest paused for the last copy;
/// 4. the switchover committed, the target resumed the guest and announced it — with the downtime.
///
/// Feed it every view of the migration as it is polled; it returns the lines not printed yet.
/// Pure: the times printed are the ones the migration's record holds.
public struct MigrationProgress: Sendable {
    private var printedRounds = 0
    private var printedShell = false
    private var printedPause = false
    /// Set once the migration ended and that was printed: nothing more will come.
    public private(set) var finished = false
    /// Set when it ended in the switchover (not failed or cancelled).
    public private(set) var switchedOver = false

    public init() {}

    public mutating func lines(for view: MigrationView) -> [String] {
        var lines: [String] = []
        let start = view.timings["preparing"] ?? view.timings["queued"]
        func at(_ phase: String) -> String {
            guard let time = view.timings[phase], let start else { return "" }
            return "+\(Self.milliseconds((time >= start ? time - start : 0) * 1000))"
        }
        if !printedShell, let _ = view.timings["copying"] {
            printedShell = true
            lines.append(
                "1. \(at("copying")): \(view.target) made the shell of \(view.vmName ?? view.vm) and reserved "
                    + (view.stats.map { Self.size($0.memoryBytes) } ?? "its memory"))
        }
        if let stats = view.stats {
            for (index, round) in stats.rounds.enumerated().dropFirst(printedRounds) {
                let throttle = round.throttlePercent > 0 ? ", guest throttled \(round.throttlePercent) %" : ""
                lines.append(
                    "2. round \(index + 1): \(round.bytes / Self.frameBytes) pages, \(Self.size(round.bytes)) in "
                        + "\(Self.milliseconds(round.milliseconds * 1000)); \(Self.size(round.dirtyBytes)) dirtied meanwhile"
                        + throttle)
            }
            printedRounds = stats.rounds.count
        }
        if !printedPause, view.timings["paused"] != nil {
            printedPause = true
            lines.append("3. \(at("paused")): paused on \(view.source) for the last pages and the device state")
        }
        guard !finished, !view.active else { return lines }
        switch view.phase {
        case "completed":
            // The target's final stats (with the downtime) follow the commit; wait for them.
            guard let stats = view.stats, let downtime = stats.downtimeMicroseconds, let total = stats.totalMilliseconds
            else { return lines }
            finished = true
            switchedOver = true
            lines.append(
                "4. \(at("completed")): switchover committed; \(view.target) resumed \(view.vmName ?? view.vm) and "
                    + "announced it — downtime \(Self.milliseconds(downtime)), total \(Self.milliseconds(total * 1000)), "
                    + "\(Self.size(stats.totalBytes)) sent for \(Self.size(stats.memoryBytes)) of memory")
        default:
            finished = true
            lines.append(
                "\(view.id) \(view.phase)\(view.reason.map { ": \($0)" } ?? ""); "
                    + "\(view.vmName ?? view.vm) stays on \(view.source)")
        }
        return lines
    }

    /// `12.3 ms` (below 10 s), else `12.3 s`, from microseconds.
    public static func milliseconds(_ microseconds: UInt64) -> String {
        let value = Double(microseconds) / 1000
        return value < 10_000 ? String(format: "%.1f ms", value) : String(format: "%.1f s", value / 1000)
    }

    /// `512 MiB`: bytes for people.
    public static func size(_ bytes: UInt64) -> String { ByteCount(bytes).description }

    /// A page on the wire: its index (8 bytes) and its 4 KiB.
    static let frameBytes: UInt64 = 8 + 4096
}
