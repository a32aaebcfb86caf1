// The leader's soft state of memory: what each node said of its memory in its last heartbeat.
import ClusterModel
import Synchronization

/// Each node's last memory report, as the leader received it with a heartbeat.
///
/// Soft state (DESIGN.md §3): never in the log, lost with the leader, rebuilt from the next round
/// of heartbeats. The API shows it on the VM and node views; placement prefers the node with the
/// most memory reported free.
final class ReportedMemory: Sendable {
    private let reports = Mutex<[NodeID: NodeMemoryFacts]>([:])

    func record(_ facts: NodeMemoryFacts, from node: NodeID) {
        reports.withLock { $0[node] = facts }
    }

    /// Leadership ended: what was reported to this node is no news for anyone.
    func forget() {
        reports.withLock { $0.removeAll() }
    }

    var current: [NodeID: NodeMemoryFacts] { reports.withLock { $0 } }
}
