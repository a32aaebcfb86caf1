// The leader's failover decisions: nodes down and back up, new owners for their VMs, new coordinators.
public import ClusterModel
public import ClusterState

/// A command the leader should propose, with why (the shell logs it; `setVMOwner` carries it
/// into the event history).
public struct Proposal: Hashable, Sendable, CustomStringConvertible {
    public var command: ClusterCommand
    public var reason: String

    public init(_ command: ClusterCommand, reason: String) {
        self.command = command
        self.reason = reason
    }

    public var description: String { "\(command): \(reason)" }
}

/// Whether a VM running away from its preferred owners is moved back to the most preferred one
/// that is up and has room (cluster setting `failback.policy`).
public enum FailbackPolicy: Hashable, Sendable, CustomStringConvertible {
    /// VMs stay where failover put them (the default, as in a Hyper-V cluster).
    case never
    /// As soon as a more preferred owner is up and has room.
    case immediately
    /// Only while the UTC hour of the day is in `startHour..<endHour` (wrapping past midnight when
    /// `startHour > endHour`, e.g. 22–6), so the move happens out of business hours.
    case window(startHour: Int, endHour: Int)

    public static let key = "failback.policy"
    /// How long a node must have been up (by the event history) before VMs fail back to it, so
    /// a node that flaps does not pull VMs back and forth (each bounce a restart, and a failover
    /// that counts toward throttling).
    public static let settleMilliseconds: UInt64 = 30_000

    /// `never`, `immediately` or `window:H-H` (hours 0–23, UTC); nil for anything else.
    public init?(setting text: String) {
        switch text {
        case "never": self = .never
        case "immediately": self = .immediately
        default:
            guard text.hasPrefix("window:") else { return nil }
            let hours = text.dropFirst("window:".count).split(separator: "-", omittingEmptySubsequences: false)
            guard hours.count == 2, let start = Int(hours[0]), let end = Int(hours[1]), (0...23).contains(start),
                (0...23).contains(end), start != end
            else { return nil }
            self = .window(startHour: start, endHour: end)
        }
    }

    public var description: String {
        switch self {
        case .never: "never"
        case .immediately: "immediately"
        case .window(let start, let end): "window:\(start)-\(end)"
        }
    }

    /// Whether a failback may be decided at `wallClock` (milliseconds since 1970).
    public func allows(atWallClock wallClock: UInt64) -> Bool {
        switch self {
        case .never: return false
        case .immediately: return true
        case .window(let start, let end):
            let hour = Int((wallClock / 3_600_000) % 24)
            return start < end ? (start..<end).contains(hour) : (hour >= start || hour < end)
        }
    }
}

/// The failover policies, from the cluster settings (`flotilla config set`).
public struct FailoverPolicy: Hashable, Sendable {
    /// At most this many failovers of one VM within `period`; then it is left down.
    public var maxFailoversPerVM: Int
    public var period: Duration
    /// Whether and when VMs go back to their preferred owners.
    public var failback: FailbackPolicy
    /// Settings that were set but could not be read; their defaults hold.
    public var problems: [String]

    public static let maxPerVMKey = "failover.max-per-vm"
    public static let periodKey = "failover.period-s"
    public static let defaultMaxPerVM = 3
    public static let defaultPeriodSeconds = 3600

    public init(maxFailoversPerVM: Int = defaultMaxPerVM, period: Duration = .seconds(defaultPeriodSeconds)) {
        self.maxFailoversPerVM = maxFailoversPerVM
        self.period = period
        self.failback = .never
        self.problems = []
    }

    /// Reads the policy from the settings; a value that is not a whole number in range keeps its default.
    public init(settings: [String: String]) {
        self.init()
        if let text = settings[Self.maxPerVMKey] {
            if let value = Int(text), (0...1000).contains(value) {
                maxFailoversPerVM = value
            } else {
                problems.append(
                    "\(Self.maxPerVMKey) must be a whole number 0–1000, got \"\(text)\"; using \(Self.defaultMaxPerVM)")
            }
        }
        if let text = settings[FailbackPolicy.key] {
            if let policy = FailbackPolicy(setting: text) {
                failback = policy
            } else {
                problems.append(
                    "\(FailbackPolicy.key) must be never, immediately or window:H-H (UTC hours 0–23, e.g. "
                        + "window:22-6), got \"\(text)\"; using never")
            }
        }
        if let text = settings[Self.periodKey] {
            if let value = Int(text), (1...31_536_000).contains(value) {
                period = .seconds(value)
            } else {
                problems.append(
                    "\(Self.periodKey) must be a whole number of seconds 1–31536000, got \"\(text)\"; using "
                        + "\(Self.defaultPeriodSeconds)")
            }
        }
    }
}

/// Decides, from the committed state and the lease table, what the leader proposes: failover,
/// failback, drain and memory rebalancing (the last three by live migration).
///
/// Pure: the same inputs give the same proposals. Each decision is made on a scratch copy of the
/// state with the earlier proposals applied, so a round's proposals are consistent with each
/// other (a VM placed first uses memory the next one cannot) and every `expectedEpoch` is the one
/// the VM will have when the proposal is applied in order. Calling it again before they commit
/// proposes the same commands; the log refuses the repeats (stale epoch, already in that state),
/// so a round that is repeated changes nothing twice.
public enum FailoverController {
    /// The proposals for this round, in the order they must be proposed.
    ///
    /// - Parameters:
    ///   - now: the leader's monotonic clock, as the lease table measures.
    ///   - wallClock: milliseconds since 1970, as event times are; the failover history
    ///     (throttling) is counted from the events the state keeps.
    ///   - reported: the nodes' last memory reports: placement prefers the node with the most
    ///     memory reported free (admission is by committed memory all the same).
    ///   - leader: the node deciding (a draining leader is not paused before it hands over).
    ///   - warningSince: since when each node has reported a VM in warning without a break (the
    ///     leader's monotonic clock, as `now`): what rebalancing waits on.
    public static func proposals(
        state: ClusterState, leases: LeaseTable, now: Duration, wallClock: UInt64,
        reported: [NodeID: NodeMemoryFacts] = [:], leader: NodeID? = nil, warningSince: [NodeID: Duration] = [:]
    ) -> [Proposal] {
        var decision = Decision(scratch: state, wallClock: wallClock, reported: reported)
        decision.nodesBackUp(leases, now: now)
        decision.nodesDown(leases, now: now)
        decision.coordinators()
        let policy = FailoverPolicy(settings: state.settings)
        decision.pendingVMs(policy)
        decision.failback(policy.failback, leases: leases, now: now)
        decision.drains(leader: leader)
        decision.rebalance(warningSince: warningSince, now: now)
        return decision.proposals
    }

    /// How many times the VM lost its owner to a node going down since `since` (wall clock, ms),
    /// as far as the kept event history tells.
    public static func failovers(of vm: VMID, in state: ClusterState, since: UInt64) -> Int {
        state.events.count {
            $0.vm == vm && $0.kind == .vmPending && $0.command == .setNodeState && $0.time >= since
        }
    }
}

/// One round of decisions, applied to a scratch copy as they are made.
struct Decision {
    var scratch: ClusterState
    let wallClock: UInt64
    let reported: [NodeID: NodeMemoryFacts]
    var proposals: [Proposal] = []

    init(scratch: ClusterState, wallClock: UInt64, reported: [NodeID: NodeMemoryFacts]) {
        self.scratch = scratch
        self.wallClock = wallClock
        self.reported = reported
    }

    /// Keeps a proposal only if it applies to the scratch state.
    mutating func propose(_ command: ClusterCommand, _ reason: String) {
        guard case .applied = scratch.apply(command, proposedAt: wallClock) else { return }
        proposals.append(Proposal(command, reason: reason))
    }

    var nodesInOrder: [NodeRecord] { scratch.nodes.values.sorted { $0.id < $1.id } }

    mutating func nodesBackUp(_ leases: LeaseTable, now: Duration) {
        for node in nodesInOrder where node.state == .down && leases.isHeartbeating(node.id, now: now) {
            propose(.setNodeState(node.id, .up, reason: "heartbeats again"), "\(node.id) heartbeats again")
        }
    }

    mutating func nodesDown(_ leases: LeaseTable, now: Duration) {
        // A node that heartbeats is alive and gets a lease with its next heartbeat (one just brought
        // back up may hold no grant from this leader yet): it is never declared down.
        for node in nodesInOrder
        where node.state.canOwnVMs && leases.leaseIsGone(node.id, now: now) && !leases.isHeartbeating(node.id, now: now)
        {
            let silence =
                leases.silence(of: node.id, now: now).map { "no heartbeat for \(Self.seconds($0))" }
                ?? "no heartbeat since this leader took over \(Self.seconds(now - leases.startedAt)) ago"
            let reason = "\(silence); no lease it holds can still be valid"
            propose(.setNodeState(node.id, .down, reason: reason), "\(node.id) is down: \(reason)")
        }
    }

    /// Volumes whose coordinator is down get the first up node with the fewest volumes, or their
    /// old coordinator back if it is up again.
    mutating func coordinators() {
        for volume in scratch.volumes.values.sorted(by: { $0.id < $1.id }) {
            let coordinatorState = scratch.nodes[volume.coordinator]?.state
            guard volume.state == .offline || coordinatorState == .down else { continue }
            let up = nodesInOrder.filter { $0.state.takesNewWork }
            let target: NodeID?
            if coordinatorState == .up {
                target = volume.coordinator
            } else {
                let load = Dictionary(grouping: scratch.volumes.values, by: \.coordinator).mapValues(\.count)
                target = up.min { (load[$0.id] ?? 0, $0.id) < (load[$1.id] ?? 0, $1.id) }?.id
            }
            guard let target else { continue }
            let reason =
                target == volume.coordinator
                ? "failover: its coordinator \(target) is up again"
                : "failover: its coordinator \(volume.coordinator) is \(coordinatorState?.description ?? "gone")"
            propose(
                .moveVolume(volume.id, coordinator: target, reason: reason),
                "\(volume.id): \(reason); \(target) coordinates it now")
        }
    }

    /// Pending VMs that should run, in restart-priority order (high, medium, low; then by id).
    mutating func pendingVMs(_ policy: FailoverPolicy) {
        let pending = scratch.vms.values.filter {
            $0.state == .pending && $0.desiredState == .running && scratch.activeMigration(of: $0.id) == nil
        }
        let since = wallClock - min(wallClock, UInt64(policy.period.components.seconds) * 1000)
        for vm in pending.sorted(by: { ($0.restartPriority.rawValue, $0.id) < ($1.restartPriority.rawValue, $1.id) }) {
            guard let current = scratch.vms[vm.id] else { continue }
            let lostOwner = lostOwnerToNodeDown(current)
            if current.restartPriority == .none {
                // Only a VM failover stranded is told why; one the operator started keeps its reason.
                guard let lostOwner else { continue }
                leavePending(
                    current,
                    "its owner \(lostOwner) went down and its restart priority is none, so failover "
                        + "leaves it down; start it to run it again")
                continue
            }
            let failures = FailoverController.failovers(of: vm.id, in: scratch, since: since)
            if failures > policy.maxFailoversPerVM {
                leavePending(
                    current,
                    "lost its owner \(failures) times in the last \(Self.seconds(policy.period)); "
                        + "\(FailoverPolicy.maxPerVMKey) is \(policy.maxFailoversPerVM), so it stays down until "
                        + "the period has passed; start it to run it sooner")
                continue
            }
            switch scratch.placement(for: current, reported: reported) {
            case .node(let target):
                let why =
                    lostOwner.map { "failover from \($0), which went down" } ?? "placed now that it fits"
                propose(
                    .setVMOwner(
                        vm.id, owner: target, expectedEpoch: current.epoch,
                        reason: "\(why) (restart priority "
                            + "\(current.restartPriority))"),
                    "\(vm.id) (\(vm.name)) → \(target): \(why)")
            case .pending(let reason):
                leavePending(current, reason)
            }
        }
    }

    /// Running VMs away from their preferred owners go to the most preferred one that is up and has
    /// room, if the policy allows it now, by live migration: the guest keeps running while it moves.
    ///
    /// Only onto a node that has been up for `settleMilliseconds` and heartbeats this leader, never
    /// next to a VM of the same anti-affinity class (placement kept them apart), and only from an
    /// owner that is up (a paused or draining node's VMs are the operator's business) — not a VM
    /// this round already placed, and not one whose migration failed within
    /// `migrationRetryMilliseconds`. Past the migration limits the state queues them.
    mutating func failback(_ policy: FailbackPolicy, leases: LeaseTable, now: Duration) {
        guard policy.allows(atWallClock: wallClock) else { return }
        let placedThisRound = Set(
            proposals.compactMap { proposal -> VMID? in
                if case .setVMOwner(let vm, _, _, _) = proposal.command { return vm }
                return nil
            })
        let candidates = scratch.vms.values.filter {
            $0.state == .running && !$0.preferredOwners.isEmpty && !placedThisRound.contains($0.id)
                && scratch.activeMigration(of: $0.id) == nil && !recentlyFailedMigration(of: $0.id)
        }
        for vm in candidates.sorted(by: { $0.id < $1.id }) {
            guard let owner = vm.owner, scratch.nodes[owner]?.state == .up else { continue }
            let rank = vm.preferredOwners.firstIndex(of: owner) ?? vm.preferredOwners.count
            for candidate in vm.preferredOwners.prefix(rank) where takesFailback(candidate, of: vm, leases, now) {
                guard scratch.memoryProblem(migrating: vm, to: candidate, reported: reported) == nil else { continue }
                let reason = "failback to preferred owner \(candidate) (\(FailbackPolicy.key) \(policy))"
                propose(
                    .beginMigration(vm.id, target: candidate, reason: reason),
                    "\(vm.id) (\(vm.name)) → \(candidate): \(reason), by live migration")
                if scratch.activeMigration(of: vm.id) != nil { break }
            }
        }
    }

    private func takesFailback(_ node: NodeID, of vm: VMRecord, _ leases: LeaseTable, _ now: Duration) -> Bool {
        guard scratch.nodes[node]?.state == .up, leases.isHeartbeating(node, now: now) else { return false }
        let lastChange = scratch.events.last {
            $0.node == node && ($0.kind == .nodeStateChanged || $0.kind == .nodeRegistered)
        }
        if let lastChange, wallClock < lastChange.time + FailbackPolicy.settleMilliseconds { return false }
        if let group = vm.antiAffinityClass {
            let crowded = scratch.vms.values.contains {
                $0.id != vm.id && $0.owner == node && $0.antiAffinityClass == group
            }
            if crowded { return false }
        }
        return true
    }

    /// Records why a VM stays pending, unless that is already its reason.
    mutating func leavePending(_ vm: VMRecord, _ reason: String) {
        guard vm.pendingReason != reason else { return }
        propose(
            .setVMOwner(vm.id, owner: nil, expectedEpoch: vm.epoch, reason: reason),
            "\(vm.id) (\(vm.name)) stays pending: \(reason)")
    }

    /// The node whose going down left the VM pending, if that is the last thing that happened to it.
    func lostOwnerToNodeDown(_ vm: VMRecord) -> NodeID? {
        guard let last = scratch.events.last(where: { $0.vm == vm.id }),
            last.kind == .vmPending, last.command == .setNodeState
        else { return nil }
        return last.node
    }

    static func seconds(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(Double(milliseconds) / 1000) s"
    }
}
