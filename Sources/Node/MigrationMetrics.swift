// The downtime of live migrations this process saw completed, as a Prometheus histogram.
import ClusterModel
import ClusterState
import Synchronization

/// Counts the downtime (pause on the source → resume on the target) of every migration whose
/// final stats this node applies, into cumulative buckets: the `/metrics` histogram
/// `flotilla_migration_downtime_seconds`. Counted per process since it started (a restart resets
/// it, as Prometheus counters may), from the log, so every node of the cluster counts the same.
final class MigrationMetrics: Sendable {
    /// Upper bounds in seconds: 1 ms to 1 s, around the 50 ms downtime target (QEMU's default limit is 300 ms).
    static let bounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]

    struct Histogram: Equatable {
        /// Per bound, migrations with at most that downtime (not cumulative yet); the last slot is +Inf.
        var buckets = [UInt64](repeating: 0, count: MigrationMetrics.bounds.count + 1)
        var sumMicroseconds: UInt64 = 0
        var count: UInt64 = 0
    }

    private let histogram = Mutex(Histogram())

    func observe(downtimeMicroseconds: UInt64) {
        let seconds = Double(downtimeMicroseconds) / 1_000_000
        let slot = Self.bounds.firstIndex { seconds <= $0 } ?? Self.bounds.count
        histogram.withLock { histogram in
            histogram.buckets[slot] += 1
            histogram.sumMicroseconds += downtimeMicroseconds
            histogram.count += 1
        }
    }

    var current: Histogram { histogram.withLock { $0 } }

    /// Counts the migration an applied command completed, if it is the target's final record.
    func applied(_ command: ClusterCommand, in state: ClusterState) {
        guard case .recordMigrationStats(let id, let stats) = command, state.migrations[id]?.phase == .completed,
            stats.totalMilliseconds != nil, let downtime = stats.downtimeMicroseconds
        else { return }
        observe(downtimeMicroseconds: downtime)
    }
}
