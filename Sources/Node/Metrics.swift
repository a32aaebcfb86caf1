// `GET /metrics`: one node's Raft progress and its copy of the cluster state in Prometheus text format.
import ClusterModel
import ClusterState
import RaftCore

/// Renders the metrics page (Prometheus text exposition format 0.0.4); pure, so tests read it directly.
enum Metrics {
    /// `reported`: the nodes' memory reports this node holds (as leader; empty elsewhere).
    /// `downtime`: the migrations this process saw completed (`MigrationMetrics`). `allocations`:
    /// the process's heap allocations, when the benchmarks' malloc counter is preloaded (else nil,
    /// and the page has no such line).
    static func render(
        node: NodeID, status: RaftStatus, state: ClusterState, reported: [NodeID: NodeMemoryFacts] = [:],
        downtime: MigrationMetrics.Histogram = .init(), allocations: UInt64? = nil
    ) -> String {
        var page = MetricsPage()
        let label = "node=\"\(node)\""
        if let allocations {
            page.counter(
                "flotilla_process_heap_allocations_total",
                "Heap allocations by this process since it started (counted by a preloaded malloc shim).",
                [(label, allocations)])
        }
        page.gauge("flotilla_raft_term", "The current Raft term.", [(label, status.term.rawValue)])
        page.gauge(
            "flotilla_raft_commit_index", "The highest log index known committed.", [(label, status.commit.rawValue)])
        page.gauge(
            "flotilla_raft_applied_index", "The highest log index applied to the state.",
            [(label, status.applied.rawValue)])
        page.gauge(
            "flotilla_raft_last_index", "The last index in this node's log.", [(label, status.lastIndex.rawValue)])
        page.counter(
            "flotilla_raft_lease_reads_total",
            "Linearizable reads this node answered as leader from its read lease, with no heartbeat round.",
            [(label, status.leaseReads)])
        let roles: [(String, Role)] = [
            ("leader", .leader), ("follower", .follower), ("candidate", .candidate), ("pre-candidate", .preCandidate),
        ]
        page.gauge(
            "flotilla_raft_role", "1 for this node's Raft role, 0 for the others.",
            roles.map { ("\(label),role=\"\($0.0)\"", status.role == $0.1 ? 1 : 0) })
        page.gauge(
            "flotilla_raft_members", "Raft members by role.",
            [
                ("role=\"voter\"", UInt64(status.membership.voters.count)),
                ("role=\"learner\"", UInt64(status.membership.learners.count)),
            ])
        page.gauge(
            "flotilla_nodes", "Registered nodes by state.",
            NodeState.allCases.map { state_ in
                ("state=\"\(state_)\"", UInt64(state.nodes.values.count { $0.state == state_ }))
            })
        page.gauge(
            "flotilla_vms", "VMs by state.",
            VMState.allCases.map { vmState in
                ("state=\"\(vmState)\"", UInt64(state.vms.values.count { $0.state == vmState }))
            })
        page.gauge(
            "flotilla_volumes", "Cluster Shared Volumes by state.",
            VolumeState.allCases.map { volumeState in
                ("state=\"\(volumeState)\"", UInt64(state.volumes.values.count { $0.state == volumeState }))
            })
        page.gauge(
            "flotilla_migrations_active", "Live migrations in progress.",
            [("", UInt64(state.migrations.values.count { $0.phase.isActive }))])
        let reserved = state.reservedMemory()
        let nodes = state.nodes.keys.sorted()
        page.gauge(
            "flotilla_node_usable_memory_bytes", "A node's usable memory (host memory minus its reserve).",
            nodes.map { ("node=\"\($0)\"", state.nodes[$0]!.usableMemory) })
        page.gauge(
            "flotilla_node_reserved_memory_bytes", "Startup memory of a node's VMs and incoming migrations.",
            nodes.map { ("node=\"\($0)\"", reserved[$0] ?? 0) })
        let reporting = reported.keys.sorted()
        page.gauge(
            "flotilla_node_assigned_memory_bytes",
            "Memory a node has assigned its VMs, by its last report to the leader.",
            reporting.map { ("node=\"\($0)\"", reported[$0]!.assigned) })
        var vms: [(node: NodeID, facts: VMMemoryFacts, name: String)] = []
        for node in reporting {
            for facts in reported[node]!.vms {
                vms.append((node, facts, state.vms[facts.vm]?.name ?? facts.vm.description))
            }
        }
        func vmLabels(_ entry: (node: NodeID, facts: VMMemoryFacts, name: String)) -> String {
            "node=\"\(entry.node)\",vm=\"\(entry.facts.vm)\",name=\"\(Self.escaped(entry.name))\""
        }
        page.gauge(
            "flotilla_vm_assigned_memory_bytes", "Memory a VM is assigned, by its node's last report.",
            vms.map { (vmLabels($0), $0.facts.assigned) })
        page.gauge(
            "flotilla_vm_memory_demand_bytes", "Memory a VM's guest demands, by its node's last report.",
            vms.map { (vmLabels($0), $0.facts.demand) })
        page.gauge(
            "flotilla_vm_paging_bytes", "What a VM's guest demands beyond its assignment (it pages that much).",
            vms.map { (vmLabels($0), $0.facts.pagingBytes) })
        page.gauge(
            "flotilla_vm_memory_status", "1 for a VM's memory status (ok, low, warning, waiting), 0 for the others.",
            vms.flatMap { entry in
                MemoryStatus.allCases.map {
                    ("\(vmLabels(entry)),status=\"\($0.rawValue)\"", entry.facts.status == $0 ? 1 : 0)
                }
            })
        page.counter(
            "flotilla_events_total", "Events recorded over the cluster's life.",
            [("", state.nextEventSequence - 1)])
        page.histogram(
            "flotilla_migration_downtime_seconds",
            "Live migrations' downtime, pause on the source to resume on the target, since this process started.",
            downtime)
        return page.text
    }
}

extension Metrics {
    /// A label value with backslashes, quotes and newlines escaped (the exposition format's rule).
    static func escaped(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }

}

/// Accumulates metric families: HELP and TYPE lines, then one sample per label set.
private struct MetricsPage {
    var text = ""

    mutating func gauge(_ name: String, _ help: String, _ samples: [(labels: String, value: UInt64)]) {
        family(name, help, type: "gauge", samples)
    }

    mutating func counter(_ name: String, _ help: String, _ samples: [(labels: String, value: UInt64)]) {
        family(name, help, type: "counter", samples)
    }

    /// A histogram: cumulative `_bucket` lines by upper bound, then `_sum` and `_count`.
    mutating func histogram(_ name: String, _ help: String, _ histogram: MigrationMetrics.Histogram) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        var cumulative: UInt64 = 0
        for (index, count) in histogram.buckets.enumerated() {
            cumulative += count
            let bound = index < MigrationMetrics.bounds.count ? "\(MigrationMetrics.bounds[index])" : "+Inf"
            text += "\(name)_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        text += "\(name)_sum \(Double(histogram.sumMicroseconds) / 1_000_000)\n\(name)_count \(histogram.count)\n"
    }

    private mutating func family(
        _ name: String, _ help: String, type: String, _ samples: [(labels: String, value: UInt64)]
    ) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        for sample in samples {
            text += sample.labels.isEmpty ? "\(name) \(sample.value)\n" : "\(name){\(sample.labels)} \(sample.value)\n"
        }
    }
}
