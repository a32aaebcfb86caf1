// Whether a node may leave the cluster for good (`flotilla members remove`), and if not, why and what to do.
public import ClusterModel
public import ClusterState

/// One reason a node cannot be removed now; its `description` says what to do about it.
public enum NodeRemovalRefusal: Hashable, Sendable, CustomStringConvertible {
    /// The node is up, so placement, failover and volume moves may still give it work between the
    /// decision and the commit; a drained (paused), draining or down node takes none.
    case takesNewWork(NodeID)
    /// It owns VMs (running, or being started there).
    case ownsVMs(NodeID, names: [String])
    /// It coordinates volumes; `suggested` is a node that could take each one over, if any.
    case coordinatesVolumes(NodeID, [VolumeID], suggested: NodeID?)
    /// It is the source or target of active migrations.
    case inMigrations(NodeID, [MigrationID])
    /// It is the Raft leader; `suggested` is a voter leadership could go to, if any.
    case leads(NodeID, suggested: NodeID?)
    /// It is the only voter: Raft would have no one left to commit anything.
    case lastVoter(NodeID)
    /// The voters left after its removal would not have a majority among the ones the leader hears
    /// from, so the removal itself (and every write after it) could not commit.
    case leavesNoMajority(NodeID, remaining: [NodeID], reachable: [NodeID])

    public var description: String {
        switch self {
        case .takesNewWork(let node):
            "\(node) is up and may still be given VMs or volumes; drain it first: flotilla node drain \(node)"
        case .ownsVMs(let node, let names):
            "\(node) runs \(Self.listed(names)); drain it first: flotilla node drain \(node)"
        case .coordinatesVolumes(let node, let volumes, let suggested):
            "\(node) coordinates "
                + volumes.map { volume in
                    "\(volume) (move it: flotilla volume move \(volume) --to \(suggested.map(\.description) ?? "NODE"))"
                }.joined(separator: ", ")
        case .inMigrations(let node, let migrations):
            "\(node) takes part in active migrations \(Self.listed(migrations.map(\.description))); wait for them "
                + "to end or cancel them: flotilla migration cancel \(migrations.first.map(\.description) ?? "ID")"
        case .leads(let node, let suggested):
            "\(node) is the Raft leader; transfer leadership first: flotilla leader transfer "
                + (suggested.map(\.description) ?? "NODE")
        case .lastVoter(let node):
            "\(node) is the only voter; a cluster cannot remove its last voter"
        case .leavesNoMajority(let node, let remaining, let reachable):
            "removing \(node) would leave the voters \(Self.listed(remaining.map(\.description))), of which only "
                + (reachable.isEmpty ? "none" : Self.listed(reachable.map(\.description)))
                + " answer the leader: not a majority, so nothing could commit; bring the others back first"
        }
    }

    private static func listed(_ items: [String]) -> String {
        items.prefix(8).joined(separator: ", ") + (items.count > 8 ? ", …" : "")
    }
}

/// The decision behind `DELETE /v1/members/{id}`: may `node` leave the Raft membership and the
/// cluster state now?
///
/// A pure function of the committed state and the leader's view of Raft, so every refusal is
/// tested without a cluster. The shell asks it on the leader, then removes the member from Raft
/// first and its node record second: a node that is still a member re-registers a missing record
/// (`NodeRegistrar`), one that is not does not. Requiring a node that takes no new work closes the
/// window between the two steps: nothing can be placed on it meanwhile, and `removeNode` still
/// refuses at apply time if anything was.
public enum NodeRemoval {
    /// Every reason `node` cannot be removed now, in a fixed order; empty when it can.
    ///
    /// - Parameters:
    ///   - voters: the voters of the membership in force.
    ///   - leader: the Raft leader (the node deciding).
    ///   - reachable: the voters the leader has heard from within an election timeout, itself included.
    public static func refusals(
        removing node: NodeID, state: ClusterState, voters: Set<NodeID>, leader: NodeID?, reachable: Set<NodeID>
    ) -> [NodeRemovalRefusal] {
        var refusals: [NodeRemovalRefusal] = []
        if let record = state.nodes[node], record.state.takesNewWork { refusals.append(.takesNewWork(node)) }
        let owned = state.vms.values.filter { $0.owner == node }.sorted { $0.name < $1.name }
        if !owned.isEmpty { refusals.append(.ownsVMs(node, names: owned.map(\.name))) }
        let coordinated = state.volumes.values.filter { $0.coordinator == node }.map(\.id).sorted()
        if !coordinated.isEmpty {
            let others = state.nodes.values.filter { $0.id != node && $0.state.takesNewWork }.map(\.id)
            refusals.append(.coordinatesVolumes(node, coordinated, suggested: others.min()))
        }
        let migrations = state.migrations.values.filter {
            $0.phase.isActive && ($0.source == node || $0.target == node)
        }.map(\.id).sorted()
        if !migrations.isEmpty { refusals.append(.inMigrations(node, migrations)) }
        if leader == node {
            let successor = voters.subtracting([node]).intersection(reachable).min()
            refusals.append(.leads(node, suggested: successor))
        }
        if voters.contains(node) {
            let remaining = voters.subtracting([node])
            if remaining.isEmpty {
                refusals.append(.lastVoter(node))
            } else {
                let answering = remaining.intersection(reachable)
                if answering.count <= remaining.count / 2 {
                    refusals.append(
                        .leavesNoMajority(node, remaining: remaining.sorted(), reachable: answering.sorted()))
                }
            }
        }
        return refusals
    }
}
