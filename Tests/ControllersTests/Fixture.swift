// A small cluster state built command by command, and a leader that runs failover rounds on a fake clock.
import ClusterModel
import ClusterState
import Controllers
import Testing

let gib: UInt64 = 1 << 30

struct Fixture {
    var state = ClusterState()
    /// The wall clock the next command is proposed at (ms since 1970); one second per command.
    var wallClock: UInt64 = 1_700_000_000_000

    static func threeNodes(usableMemory: UInt64 = 8 * gib) -> Fixture {
        var fixture = Fixture()
        for id: UInt64 in 1...3 {
            fixture.applied(
                .registerNode(
                    NodeRegistration(
                        id: NodeID(id),
                        addresses: MemberAddresses(
                            peer: Endpoint(host: "10.0.0.\(id)", port: 7201),
                            client: Endpoint(host: "10.0.0.\(id)", port: 7101)),
                        role: .voter, usableMemory: usableMemory)))
        }
        fixture.applied(.createVolume("csv1", path: "volumes/csv1", coordinator: 1))
        return fixture
    }

    mutating func apply(_ command: ClusterCommand) -> CommandResult {
        wallClock += 1000
        let before = state
        let result = state.apply(command, proposedAt: wallClock)
        let violations = state.invariantViolations(since: before)
        #expect(violations.isEmpty, "after \(command): \(violations)")
        return result
    }

    mutating func applied(_ command: ClusterCommand, sourceLocation: SourceLocation = #_sourceLocation) {
        if let rejection = apply(command).rejection {
            Issue.record("\(command) was rejected: \(rejection)", sourceLocation: sourceLocation)
        }
    }

    /// Creates a VM and starts it on `node`; returns its id.
    @discardableResult
    mutating func runningVM(
        _ name: String, on node: NodeID, startup: UInt64 = 1 * gib, priority: RestartPriority = .medium,
        preferred: [NodeID] = [], antiAffinity: String? = nil, driver: GuestDriver = .simulated
    ) -> VMID {
        let id = state.nextVMID
        applied(
            .createVM(
                VMSpec(
                    name: name, memory: MemorySettings(startup: startup, minimum: startup / 2, maximum: startup * 4),
                    restartPriority: priority, preferredOwners: preferred, antiAffinityClass: antiAffinity,
                    disk: DiskFile(volume: "csv1", file: "\(name).disk"), driver: driver)))
        applied(.startVM(id, on: node))
        return id
    }

    func vm(_ id: VMID) -> VMRecord { state.vms[id]! }

    /// Runs every running migration to its switchover, as its source and target would.
    mutating func completeMigrations() {
        for migration in state.migrations.values.sorted(by: { $0.id < $1.id }) where migration.phase.isRunning {
            if migration.phase == .preparing { applied(.advanceMigration(migration.id, to: .copying)) }
            if state.migrations[migration.id]?.phase == .copying {
                applied(.advanceMigration(migration.id, to: .paused))
            }
            applied(.finishMigration(migration.id))
        }
        // Finished ones free slots: queued ones start, and run too.
        if state.migrations.values.contains(where: \.phase.isRunning) { completeMigrations() }
    }
}

/// The leader: a lease table fed by heartbeats from the nodes it is told are alive, and rounds of
/// the failover controller whose proposals are applied in order, like the log would.
struct Leader {
    var fixture: Fixture
    var table: LeaseTable
    /// The leader's monotonic clock.
    var now: Duration
    /// Every proposal made so far, in order.
    var made: [Proposal] = []
    /// Whether the migrations a round starts run to their switchover before the next round, as
    /// their sources would (false: they stay where the round left them).
    var migrationsComplete = true
    /// The nodes' memory reports, as heartbeats would have brought them.
    var reported: [NodeID: NodeMemoryFacts] = [:]
    /// Since when each node has reported a VM in warning.
    var warningSince: [NodeID: Duration] = [:]
    /// The node this leader runs on.
    var id: NodeID = 1

    init(_ fixture: Fixture, startedAt: Duration = .seconds(1000)) {
        self.fixture = fixture
        self.now = startedAt
        // A leader was last heard of as this one took over (it was the predecessor's last heartbeat).
        self.table = LeaseTable(
            timings: LeaseTimings(lease: .seconds(2), margin: .milliseconds(500)), startedAt: now,
            predecessorContact: now)
    }

    var state: ClusterState { fixture.state }

    /// Lets `span` pass in heartbeat intervals of 200 ms; the `alive` nodes heartbeat each time,
    /// and a controller round runs after each interval.
    mutating func run(for span: Duration, alive: Set<NodeID>) {
        let end = now + span
        while now < end {
            now += .milliseconds(200)
            for node in alive.sorted() {
                // The leader confirmed its leadership with a majority just now.
                _ = table.heartbeat(
                    from: node, facts: NodeFacts(), in: fixture.state, appliedIndex: 0, confirmedContact: now, now: now)
            }
            round()
        }
    }

    /// One controller round; its proposals are applied in order. Returns them.
    @discardableResult
    mutating func round() -> [Proposal] {
        let proposals = FailoverController.proposals(
            state: fixture.state, leases: table, now: now, wallClock: fixture.wallClock, reported: reported,
            leader: id, warningSince: warningSince)
        for proposal in proposals { fixture.applied(proposal.command) }
        made += proposals
        if migrationsComplete { fixture.completeMigrations() }
        return proposals
    }
}
