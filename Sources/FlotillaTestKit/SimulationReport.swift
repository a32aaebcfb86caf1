// What a simulated run reports: its counters when it passes, the seed and trace when it fails.

/// Counters of one run (or, added up, of many).
public struct SimulationStatistics: Hashable, Sendable {
    public var seeds = 0
    /// Events the simulator processed.
    public var steps = 0
    public var simulatedTime: UInt64 = 0
    /// The highest log index known committed at the end of the run.
    public var committedEntries: UInt64 = 0
    /// Client commands applied, counted once per node that applied them.
    public var appliedCommands = 0
    public var completedOperations = 0
    public var pendingOperations = 0
    /// Per-key sub-histories the linearizability checker searched.
    public var linearizabilityChecks = 0
    public var leadersElected = 0
    public var crashes = 0
    public var crashesDuringWrite = 0
    public var tornWrites = 0
    /// Hard states written without an fsync because only the commit index moved.
    public var unsyncedCommitWrites = 0
    /// Crashes (not mid-write) that lost such unsynced commit-only hard states.
    public var crashesLosingCommit = 0
    /// Leader batches whose sync ran off the loop and returned later (`RaftNode.persisted`).
    public var syncsOffLoop = 0
    /// Crashes that lost entries a leader had written and was still syncing off its loop (not
    /// counting those that lost only commit-only hard states).
    public var crashesLosingLeaderWrites = 0
    /// Followers told that their leader's process died (`RaftNode.leaderProcessGone`).
    public var deadLeaderNotices = 0
    /// Reads a leader answered from its read lease, without a heartbeat round.
    public var leaseReads = 0
    public var restarts = 0
    public var partitions = 0
    public var pauses = 0
    public var membershipChanges = 0
    public var leadershipTransfers = 0
    public var snapshotsInstalled = 0
    public var messagesSent = 0
    public var messagesDropped = 0

    public init() {}

    public mutating func add(_ other: SimulationStatistics) {
        seeds += other.seeds
        steps += other.steps
        simulatedTime += other.simulatedTime
        committedEntries += other.committedEntries
        appliedCommands += other.appliedCommands
        completedOperations += other.completedOperations
        pendingOperations += other.pendingOperations
        linearizabilityChecks += other.linearizabilityChecks
        leadersElected += other.leadersElected
        crashes += other.crashes
        crashesDuringWrite += other.crashesDuringWrite
        tornWrites += other.tornWrites
        unsyncedCommitWrites += other.unsyncedCommitWrites
        crashesLosingCommit += other.crashesLosingCommit
        syncsOffLoop += other.syncsOffLoop
        crashesLosingLeaderWrites += other.crashesLosingLeaderWrites
        deadLeaderNotices += other.deadLeaderNotices
        leaseReads += other.leaseReads
        restarts += other.restarts
        partitions += other.partitions
        pauses += other.pauses
        membershipChanges += other.membershipChanges
        leadershipTransfers += other.leadershipTransfers
        snapshotsInstalled += other.snapshotsInstalled
        messagesSent += other.messagesSent
        messagesDropped += other.messagesDropped
    }

    /// The one-line summary `make test` prints.
    public var summary: String {
        "simulated \(seeds) seeds, \(steps) steps, \(committedEntries) committed entries, "
            + "\(linearizabilityChecks) linearizability checks (\(completedOperations) client operations, "
            + "\(leadersElected) leaders, \(crashes) crashes of which \(crashesDuringWrite) mid-write and "
            + "\(tornWrites) torn, \(crashesLosingCommit) losing unsynced commits, \(syncsOffLoop) leader syncs off the loop, "
            + "\(crashesLosingLeaderWrites) crashes losing a leader's unsynced writes, \(deadLeaderNotices) dead-leader notices, \(leaseReads) lease reads, \(partitions) partitions, \(pauses) pauses, \(membershipChanges) membership changes, "
            + "\(leadershipTransfers) leadership transfers, \(snapshotsInstalled) snapshots installed)"
    }
}

/// A run that broke an invariant: everything needed to understand and replay it.
public struct SimulationFailure: Error, Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var nodeCount: Int
    /// Simulated time and step at which the violation was seen.
    public var time: UInt64
    public var step: Int
    public var invariant: String
    public var detail: String
    /// The last events before the failure, oldest first.
    public var trace: [String]

    public init(
        seed: UInt64, nodeCount: Int, time: UInt64, step: Int, invariant: String, detail: String, trace: [String]
    ) {
        self.seed = seed
        self.nodeCount = nodeCount
        self.time = time
        self.step = step
        self.invariant = invariant
        self.detail = detail
        self.trace = trace
    }

    /// A shell command that replays exactly this run and prints every event.
    public var replayCommand: String {
        "FLOTILLA_SIM_SEED=\(seed) FLOTILLA_SIM_NODES=\(nodeCount) swift test --filter SimulationTests"
    }

    public var description: String {
        var lines = [
            "simulation seed \(seed) (\(nodeCount) nodes) failed at t=\(time), step \(step)",
            "\(invariant) violated: \(detail)",
            "last \(trace.count) events:",
        ]
        lines += trace.map { "  \($0)" }
        lines.append("\(invariant) violated (seed \(seed)); replay with:")
        lines.append("  \(replayCommand)")
        return lines.joined(separator: "\n")
    }
}
