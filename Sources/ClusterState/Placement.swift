// Where a VM should run: admission, anti-affinity, preferred owners, most free memory (docs/state.md).
public import ClusterModel

/// Placement's answer for one VM.
public enum Placement: Hashable, Sendable {
    case node(NodeID)
    /// Nowhere fits; the reason names what the VM needs and the most any up node has free.
    case pending(reason: String)
}

extension ClusterState {
    /// Picks the node a VM should run on, from the committed state alone (pure: `startVM` calls
    /// it at apply time, and failover can call it on the state it decides from).
    ///
    /// 1. Admission: only nodes that are up and have the VM's startup memory free (the VM's own
    ///    reservation, if it has one, does not count against it).
    /// 2. Anti-affinity: if any of those runs no VM of the VM's class (and is not the target of
    ///    one migrating), only those remain. A class never makes a VM pending on its own.
    /// 3. Preferred owners: the first of the VM's preferred owners, in its order, that remains.
    /// 4. Otherwise the node with the most free memory; a tie goes to the lowest node id. Free
    ///    memory is what `reported` says a node has not assigned (its last memory report to the
    ///    leader, less the startup memory of VMs placed on it since), where there is a report; the
    ///    committed free memory otherwise. Admission (1) is always by committed memory: a report
    ///    steers placement, it never admits more than the state does.
    ///
    /// Pure: `reported` is an argument (empty at apply time, where only the log counts). Nodes in
    /// `excluding` are not considered (a live migration's target is never its source).
    public func placement(
        for vm: VMRecord, reported: [NodeID: NodeMemoryFacts] = [:], excluding: Set<NodeID> = []
    ) -> Placement {
        let reserved = reservedMemory(excluding: vm.id)
        func free(_ node: NodeRecord) -> UInt64 {
            let used = reserved[node.id] ?? 0
            return node.usableMemory > used ? node.usableMemory - used : 0
        }
        func reportedFree(_ node: NodeRecord) -> UInt64 {
            guard let report = reported[node.id] else { return free(node) }
            let known = Set(report.vms.map(\.vm))
            let unreported = vms.values.filter { $0.owner == node.id && $0.id != vm.id && !known.contains($0.id) }
                .reduce(UInt64(0)) { $0 + $1.memory.startup }
            return min(free(node), report.free > unreported ? report.free - unreported : 0)
        }
        let up = nodes.values.filter { $0.state.takesNewWork && !excluding.contains($0.id) }.sorted { $0.id < $1.id }
        var candidates = up.filter { free($0) >= vm.memory.startup }
        guard !candidates.isEmpty else {
            let needs = "needs \(ByteCount(vm.memory.startup)) startup memory"
            guard let roomiest = Self.mostFree(up, free) else {
                return .pending(reason: "\(needs); no \(excluding.isEmpty ? "" : "other ")node is up")
            }
            return .pending(
                reason: "\(needs); the most free on any up node is \(ByteCount(free(roomiest))) (\(roomiest.id))")
        }
        if let antiAffinityClass = vm.antiAffinityClass {
            let crowded = nodesRunning(antiAffinityClass, excluding: vm.id)
            let apart = candidates.filter { !crowded.contains($0.id) }
            if !apart.isEmpty { candidates = apart }
        }
        for preferred in vm.preferredOwners {
            if let node = candidates.first(where: { $0.id == preferred }) { return .node(node.id) }
        }
        return .node(Self.mostFree(candidates, reportedFree)?.id ?? candidates[0].id)
    }

    /// The node with the most free memory; `nodes` is in id order, so a tie goes to the lowest id.
    private static func mostFree(_ nodes: [NodeRecord], _ free: (NodeRecord) -> UInt64) -> NodeRecord? {
        guard var best = nodes.first else { return nil }
        for node in nodes.dropFirst() where free(node) > free(best) { best = node }
        return best
    }

    /// The nodes that run a VM of the class or are the target of one migrating.
    private func nodesRunning(_ antiAffinityClass: String, excluding excluded: VMID) -> Set<NodeID> {
        var crowded: Set<NodeID> = []
        for other in vms.values where other.id != excluded && other.antiAffinityClass == antiAffinityClass {
            if let owner = other.owner { crowded.insert(owner) }
        }
        for migration in migrations.values where migration.phase.isActive && migration.vm != excluded {
            if vms[migration.vm]?.antiAffinityClass == antiAffinityClass { crowded.insert(migration.target) }
        }
        return crowded
    }
}

extension ClusterState {
    /// Whether `target` has memory for `vm` as it is now, by the nodes' last reports: the VM's
    /// assignment on its owner (its startup memory without a report) against what the target has
    /// free plus what its balancer can take back from its VMs above their minimums. Nil when it
    /// fits or the target has not reported (admission by committed memory decides then), else why not.
    public func memoryProblem(migrating vm: VMRecord, to target: NodeID, reported: [NodeID: NodeMemoryFacts])
        -> String?
    {
        guard let facts = reported[target] else { return nil }
        let needed =
            vm.owner.flatMap { owner in reported[owner]?.vms.first { $0.vm == vm.id }?.assigned } ?? vm.memory.startup
        let reclaimable = facts.vms.reduce(UInt64(0)) { sum, other in
            guard let minimum = vms[other.vm]?.memory.minimum, other.assigned > minimum else { return sum }
            return sum + (other.assigned - minimum)
        }
        let room = facts.free + reclaimable
        guard needed > room else { return nil }
        return "\(vm.id) (\(vm.name)) holds \(ByteCount(needed)) now; \(target) has \(ByteCount(facts.free)) free and "
            + "can take back \(ByteCount(reclaimable)) from its VMs; pick another node, or lower the VM's memory"
    }
}
