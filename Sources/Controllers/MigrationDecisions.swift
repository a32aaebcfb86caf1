// The leader's decisions that move running VMs by live migration: drain and memory rebalancing.
public import ClusterModel
public import ClusterState

extension FailoverController {
    /// A migration of a VM that failed or was cancelled is not tried again for it (by drain,
    /// failback or rebalancing) before this long has passed, so a VM whose copy cannot converge
    /// does not hold the link in a loop.
    public static let migrationRetryMilliseconds: UInt64 = 30_000

    /// Whether `node`, draining, has nothing left but (perhaps) the leadership: it owns no VM,
    /// coordinates no volume and takes part in no migration. The leader then pauses it — or,
    /// when it is the leader itself, hands leadership over first.
    public static func isDrained(_ node: NodeID, in state: ClusterState) -> Bool {
        !state.vms.values.contains { $0.owner == node }
            && !state.volumes.values.contains { $0.coordinator == node }
            && !state.migrations.values.contains { $0.phase.isActive && ($0.source == node || $0.target == node) }
    }

    /// Whom a draining leader hands leadership to once it is drained: the voter that is up,
    /// heartbeats and has the most of the log (`matched`), lowest id on a tie; nil while it is
    /// not drained or no voter qualifies.
    public static func leadershipHandover(
        from leader: NodeID, in state: ClusterState, voters: Set<NodeID>, matched: [NodeID: LogIndex],
        heartbeating: (NodeID) -> Bool
    ) -> NodeID? {
        guard state.nodes[leader]?.state == .draining, isDrained(leader, in: state) else { return nil }
        let candidates = voters.filter { $0 != leader && state.nodes[$0]?.state == .up && heartbeating($0) }
        return candidates.max { (matched[$0] ?? 0, $1) < (matched[$1] ?? 0, $0) }
    }
}

extension Decision {
    /// Every draining node: its running VMs are live-migrated away (by restart priority, then id;
    /// past the limits the state queues them), its volumes get other coordinators, and once it
    /// holds nothing — and does not lead — it is paused. The leader hands its leadership over
    /// itself (`leadershipHandover`): a node cannot pause the leader from inside.
    mutating func drains(leader: NodeID?) {
        for node in nodesInOrder where node.state == .draining {
            let owned = scratch.vms.values.filter {
                $0.owner == node.id && $0.state == .running && scratch.activeMigration(of: $0.id) == nil
            }
            for vm in owned.sorted(by: { ($0.restartPriority.rawValue, $0.id) < ($1.restartPriority.rawValue, $1.id) })
            where !recentlyFailedMigration(of: vm.id) {
                switch scratch.placement(for: vm, reported: reported, excluding: [node.id]) {
                case .node(let target):
                    guard scratch.memoryProblem(migrating: vm, to: target, reported: reported) == nil else { continue }
                    propose(
                        .beginMigration(vm.id, target: target, reason: "drain of \(node.id)"),
                        "\(vm.id) (\(vm.name)) → \(target): drain of \(node.id), by live migration")
                case .pending:
                    continue
                }
            }
            for volume in scratch.volumes.values.sorted(by: { $0.id < $1.id }) where volume.coordinator == node.id {
                let load = Dictionary(grouping: scratch.volumes.values, by: \.coordinator).mapValues(\.count)
                let up = nodesInOrder.filter { $0.state.takesNewWork }
                guard let target = up.min(by: { (load[$0.id] ?? 0, $0.id) < (load[$1.id] ?? 0, $1.id) })?.id else {
                    continue
                }
                propose(
                    .moveVolume(volume.id, coordinator: target, reason: "drain of \(node.id)"),
                    "\(volume.id): drain of \(node.id); \(target) coordinates it now")
            }
            if node.id != leader, FailoverController.isDrained(node.id, in: scratch) {
                propose(
                    .setNodeState(
                        node.id, .paused, reason: "drained: its VMs, volumes and leadership moved", expected: .draining),
                    "\(node.id) is drained: paused")
            }
        }
    }

    /// Rebalancing by live migration (`rebalance.memory` on): a node with a VM in `warning` (it
    /// pages for want of memory) for at least `rebalance.after-s` gives up one VM — the one of the
    /// lowest memory priority, the largest assignment first (it frees the most) — to a node that
    /// has reported room for its demand and has no VM in warning itself. At most one rebalancing
    /// migration runs at a time, and a VM is not moved again for ten times `rebalance.after-s`.
    ///
    /// `warningSince`: since when (the leader's monotonic clock) each node has reported a VM in
    /// warning without a break.
    mutating func rebalance(warningSince: [NodeID: Duration], now: Duration) {
        guard Setting.rebalancesMemory(scratch.settings) else { return }
        let after = Setting.wholeNumber(Setting.rebalanceAfterKey, in: scratch.settings)
        let cooldown = UInt64(after) * 10_000
        // Nothing else moves while a migration runs: its memory is not where the reports say yet.
        guard !scratch.migrations.values.contains(where: \.phase.isActive) else { return }
        for (node, since) in warningSince.sorted(by: { $0.key < $1.key })
        where now - since >= .seconds(after) && scratch.nodes[node]?.state == .up {
            let candidates = scratch.vms.values.filter { vm in
                vm.owner == node && vm.state == .running && !movedRecently(vm.id, within: cooldown)
            }
            let facts = Dictionary(
                (reported[node]?.vms ?? []).map { ($0.vm, $0) }, uniquingKeysWith: { first, _ in first })
            let demand = { (vm: VMRecord) in facts[vm.id] }
            let ordered = candidates.sorted { left, right in
                (left.memory.priority, -Int64(clamping: demand(left)?.assigned ?? 0), left.id)
                    < (right.memory.priority, -Int64(clamping: demand(right)?.assigned ?? 0), right.id)
            }
            for vm in ordered {
                let needs = demand(vm)?.demand ?? vm.memory.startup
                let roomy = nodesInOrder.filter { target in
                    guard target.id != node, target.state.takesNewWork, let facts = reported[target.id] else {
                        return false
                    }
                    return facts.free >= needs && !facts.vms.contains { $0.status == .warning }
                }
                guard let target = roomy.max(by: { (reported[$0.id]!.free, $1.id) < (reported[$1.id]!.free, $0.id) })
                else { continue }
                let before = proposals.count
                let reason =
                    "rebalancing: \(node) has had a VM in warning for \(Self.seconds(now - since)); \(target.id) has "
                    + "\(ByteCount(reported[target.id]!.free)) free (\(Setting.rebalanceMemoryKey) on)"
                propose(
                    .beginMigration(vm.id, target: target.id, reason: reason),
                    "\(vm.id) (\(vm.name)) → \(target.id): \(reason)")
                if proposals.count > before { return }
            }
        }
    }

    /// Whether a migration of `vm` failed or was cancelled within `migrationRetryMilliseconds`.
    func recentlyFailedMigration(of vm: VMID) -> Bool {
        scratch.migrations.values.contains { migration in
            guard migration.vm == vm, migration.phase == .failed || migration.phase == .cancelled,
                let ended = migration.timings[migration.phase]
            else { return false }
            return wallClock < ended + FailoverController.migrationRetryMilliseconds
        }
    }

    /// Whether `vm` took part in any migration that ended (or began) within `milliseconds`.
    private func movedRecently(_ vm: VMID, within milliseconds: UInt64) -> Bool {
        scratch.migrations.values.contains { migration in
            guard migration.vm == vm else { return false }
            let last = migration.timings.values.max() ?? 0
            return wallClock < last + milliseconds
        }
    }
}
