// What one simulated run looks like: cluster size, clients, faults and how long, all from a seed.
public import ClusterModel
public import RaftCore

/// Which faults a run injects and how often; drawn per seed so seeds explore different mixes.
public struct FaultPlan: Hashable, Sendable {
    public var network: NetworkFaults
    /// How often the simulator considers injecting a fault.
    public var chaosInterval: UInt64
    /// Per chaos round: the chance of starting a partition (if none is active).
    public var partitionProbability: Double
    /// Per chaos round: the chance of crashing a node.
    public var crashProbability: Double
    /// When crashing, the chance of doing it in the middle of the node's next write, before sync.
    public var crashDuringWriteProbability: Double
    /// When a crash loses unsynced writes, the chance that the first lost record is left torn.
    public var tornWriteProbability: Double
    /// Per chaos round: the chance of freezing a node (a long GC or VM pause) for a while.
    public var pauseProbability: Double
    /// Per chaos round: the chance of asking the leader for a membership change.
    public var membershipChangeProbability: Double
    /// Per chaos round: the chance of asking the leader to hand over leadership.
    public var leadershipTransferProbability: Double

    public init(
        network: NetworkFaults, chaosInterval: UInt64, partitionProbability: Double, crashProbability: Double,
        crashDuringWriteProbability: Double, tornWriteProbability: Double, pauseProbability: Double = 0,
        membershipChangeProbability: Double, leadershipTransferProbability: Double
    ) {
        self.network = network
        self.chaosInterval = chaosInterval
        self.partitionProbability = partitionProbability
        self.crashProbability = crashProbability
        self.crashDuringWriteProbability = crashDuringWriteProbability
        self.tornWriteProbability = tornWriteProbability
        self.pauseProbability = pauseProbability
        self.membershipChangeProbability = membershipChangeProbability
        self.leadershipTransferProbability = leadershipTransferProbability
    }

    /// No faults at all: a perfect network and no crashes (the benchmark's setting).
    public static let none = FaultPlan(
        network: .reliable, chaosInterval: 1_000, partitionProbability: 0, crashProbability: 0,
        crashDuringWriteProbability: 0, tornWriteProbability: 0, membershipChangeProbability: 0,
        leadershipTransferProbability: 0)

    /// A mix of faults drawn from the seed: some runs are lossy, some crash-heavy, some calm.
    public static func drawn(using random: inout SimulationRandom) -> FaultPlan {
        let maximumDelay = UInt64(random.int(in: 2...30))
        let network = NetworkFaults(
            lossProbability: Double(random.int(in: 0...10)) / 100,
            duplicateProbability: Double(random.int(in: 0...5)) / 100,
            delay: 1...maximumDelay,
            slowProbability: Double(random.int(in: 0...3)) / 100,
            slowDelay: UInt64(random.int(in: 100...400)))
        return FaultPlan(
            network: network,
            chaosInterval: 200,
            partitionProbability: Double(random.int(in: 5...30)) / 100,
            crashProbability: Double(random.int(in: 5...30)) / 100,
            crashDuringWriteProbability: 0.6,
            tornWriteProbability: 0.5,
            pauseProbability: Double(random.int(in: 0...15)) / 100,
            membershipChangeProbability: Double(random.int(in: 0...15)) / 100,
            leadershipTransferProbability: Double(random.int(in: 0...15)) / 100)
    }
}

/// The core's tunables for a run; drawn per seed so that small messages, narrow pipelines and
/// chunked snapshots get exercised too. PreVote and CheckQuorum are always on.
public struct CoreTuning: Hashable, Sendable {
    public var electionTicks: Int
    public var heartbeatTicks: Int
    public var maxEntriesBytesPerMessage: Int
    public var maxInflightMessages: Int
    public var snapshotChunkBytes: Int
    /// Followers campaign this many ticks after their leader fell silent (nil: after the election timeout).
    public var leaderSilenceTicks: Int?

    public init(
        electionTicks: Int = 10, heartbeatTicks: Int = 1, maxEntriesBytesPerMessage: Int = 1 << 20,
        maxInflightMessages: Int = 256, snapshotChunkBytes: Int = 1 << 20, leaderSilenceTicks: Int? = nil
    ) {
        self.electionTicks = electionTicks
        self.heartbeatTicks = heartbeatTicks
        self.maxEntriesBytesPerMessage = maxEntriesBytesPerMessage
        self.maxInflightMessages = maxInflightMessages
        self.snapshotChunkBytes = snapshotChunkBytes
        self.leaderSilenceTicks = leaderSilenceTicks
    }

    /// The core's defaults.
    public static let defaults = CoreTuning()

    public static func drawn(using random: inout SimulationRandom) -> CoreTuning {
        var tuning = CoreTuning(
            electionTicks: random.element(of: [6, 10, 10, 20]),
            heartbeatTicks: random.element(of: [1, 1, 2]),
            // One entry is about 50 bytes: 64 sends them one by one, 1 MiB in large batches.
            maxEntriesBytesPerMessage: random.element(of: [64, 200, 1 << 20, 1 << 20]),
            maxInflightMessages: random.element(of: [1, 4, 256, 256]),
            snapshotChunkBytes: random.element(of: [16, 100, 1 << 20]))
        // The core's default six runs in eight; the shortest silence the core accepts, or none.
        switch random.int(in: 0...7) {
        case 0: tuning.leaderSilenceTicks = nil
        case 1: tuning.leaderSilenceTicks = tuning.heartbeatTicks + 1
        default:
            tuning.leaderSilenceTicks = RaftConfiguration.defaultLeaderSilenceTicks(
                electionTicks: tuning.electionTicks, heartbeatTicks: tuning.heartbeatTicks)
        }
        return tuning
    }

    /// The core's configuration for node `id`.
    public func configuration(for id: NodeID) -> RaftConfiguration {
        RaftConfiguration(
            id: id, electionTicks: electionTicks, heartbeatTicks: heartbeatTicks, preVote: true, checkQuorum: true,
            maxEntriesBytesPerMessage: maxEntriesBytesPerMessage, maxInflightMessages: maxInflightMessages,
            snapshotChunkBytes: snapshotChunkBytes, leaderSilenceTicks: leaderSilenceTicks)
    }
}

/// Everything that defines one simulated run; two runs with equal configurations are identical.
public struct SimulationConfiguration: Hashable, Sendable {
    public var seed: UInt64
    /// Voters at the start: 3 or 5.
    public var nodeCount: Int
    /// Nodes that membership changes may add beyond the first ones.
    public var spareNodeCount: Int
    public var clientCount: Int
    /// Clients work on keys 0..<keyCount; few keys make many operations overlap on one register.
    public var keyCount: UInt32
    public var faults: FaultPlan
    public var core: CoreTuning
    /// Simulated time units between two ticks of a node with an exact clock.
    public var tickInterval: UInt64
    /// Each node's clock runs fast or slow by up to this many percent (fixed per node and run).
    public var clockDriftPercent: Int
    /// How long faults are injected.
    public var chaosDuration: UInt64
    /// After the chaos: the network heals, crashed nodes restart, clients finish their work.
    public var quietDuration: UInt64
    /// How long a client waits for an answer before trying again (maybe elsewhere).
    public var clientTimeout: UInt64
    /// Entries a node applies past its last snapshot before it compacts its log.
    public var compactionThreshold: UInt64
    /// When set, a leader syncs its batches off its loop, as `RaftDriver` does: it writes a batch,
    /// goes on, and its sync returns up to this many time units later (`RaftNode.persisted`).
    /// Nil: every batch is synced before it is advanced.
    public var leaderSyncDelay: UInt64?
    /// Clients' reads go through the leader's read lease (`RaftConfiguration.readLease`): a lease
    /// lasts one nominal tick shortened by the clock drift both ways (`leaseUnits`), measured on
    /// the leader's own drifting clock; voters promise for 2 ticks. Every node keeps promises
    /// (and holds one from its start) either way, as nodes do.
    public var readLease: Bool
    /// Whether to require that every client's last operation finishes once the cluster is healed.
    public var requiresProgressAfterHealing: Bool
    /// How many trace lines a failure report shows.
    public var traceCapacity: Int
    /// Whether to print every trace line as it happens (replaying one seed).
    public var echoesTrace: Bool

    public init(
        seed: UInt64, nodeCount: Int, spareNodeCount: Int = 2, clientCount: Int = 4, keyCount: UInt32 = 3,
        faults: FaultPlan, core: CoreTuning = .defaults, tickInterval: UInt64 = 10, clockDriftPercent: Int = 20,
        chaosDuration: UInt64 = 20_000,
        quietDuration: UInt64 = 8_000,
        clientTimeout: UInt64 = 400, compactionThreshold: UInt64 = 40, leaderSyncDelay: UInt64? = nil,
        readLease: Bool = false, requiresProgressAfterHealing: Bool = true,
        traceCapacity: Int = 200, echoesTrace: Bool = false
    ) {
        self.seed = seed
        self.nodeCount = nodeCount
        self.spareNodeCount = spareNodeCount
        self.clientCount = clientCount
        self.keyCount = keyCount
        self.faults = faults
        self.core = core
        self.tickInterval = tickInterval
        self.clockDriftPercent = clockDriftPercent
        self.chaosDuration = chaosDuration
        self.quietDuration = quietDuration
        self.clientTimeout = clientTimeout
        self.compactionThreshold = compactionThreshold
        self.leaderSyncDelay = leaderSyncDelay
        self.readLease = readLease
        self.requiresProgressAfterHealing = requiresProgressAfterHealing
        self.traceCapacity = traceCapacity
        self.echoesTrace = echoesTrace
    }

    /// How long a lease lasts, in time units of the leader's clock: the one tick interval a
    /// 2-tick promise (`LeasePromise.promiseTicks`) guarantees on the fastest clock, over the rate
    /// of the slowest one, `tickInterval × (100 − drift) / (100 + drift)`, rounded down.
    public var leaseUnits: UInt64 {
        tickInterval * UInt64(100 - clockDriftPercent) / UInt64(100 + clockDriftPercent)
    }

    /// The standard run for a seed: even seeds run 3 nodes, odd seeds 5, and the faults are
    /// drawn from the seed, so the seed alone reproduces the run.
    public static func standard(seed: UInt64, nodeCount: Int? = nil) -> SimulationConfiguration {
        var random = SimulationRandom(seed: seed ^ 0x5EED_F00D_CAFE_D00D)
        let faults = FaultPlan.drawn(using: &random)
        let core = CoreTuning.drawn(using: &random)
        // Drawn last, so the faults and tuning of a seed are what they were before it existed. Most
        // runs sync as the node does (off the leader's loop); a quarter sync before advancing.
        let leaderSyncDelay = random.element(of: [nil, 1, 5, 30] as [UInt64?])
        // Also drawn after what came before it; two runs in three read through a lease, as nodes do.
        let readLease = random.element(of: [false, true, true])
        return SimulationConfiguration(
            seed: seed, nodeCount: nodeCount ?? (seed % 2 == 0 ? 3 : 5), faults: faults, core: core,
            leaderSyncDelay: leaderSyncDelay, readLease: readLease)
    }
}
