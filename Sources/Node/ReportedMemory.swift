// The leader's soft state of memory: what each node said of its memory in its last heartbeat.
import ClusterModel
import Synchronization

/// Each node's last memory report, as the leader received it with a heartbeat.
///
/// Soft state (DESIGN.md §3): never in the log, lost with the leader, rebuilt from the next round
/// of heartbeats. The API shows it on the VM and node views; placement prefers the node with the
/// most memory reported free.
final class ReportedMemory: Sendable {
    private struct Reports {
        var latest: [NodeID: NodeMemoryFacts] = [:]
        /// Since when each node has reported a VM in warning in every report (rebalancing waits on it).
        var warningSince: [NodeID: Duration] = [:]
    }

    private let reports = Mutex(Reports())

    /// Records a node's report, received at `now` (the leader's monotonic clock).
    func record(_ facts: NodeMemoryFacts, from node: NodeID, at now: Duration = .zero) {
        reports.withLock { reports in
            reports.latest[node] = facts
            if facts.vms.contains(where: { $0.status == .warning }) {
                reports.warningSince[node] = reports.warningSince[node] ?? now
            } else {
                reports.warningSince[node] = nil
            }
        }
    }

    /// Leadership ended: what was reported to this node is no news for anyone.
    func forget() {
        reports.withLock { $0 = Reports() }
    }

    var current: [NodeID: NodeMemoryFacts] { reports.withLock { $0.latest } }

    /// Since when each node has had a VM in warning in every report without a break.
    var warningSince: [NodeID: Duration] { reports.withLock { $0.warningSince } }
}
