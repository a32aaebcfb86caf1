// The pure CPU cost of the Raft core: a cluster on a free network and disk, no faults, no checks.
import ClusterModel
import RaftCore

#if canImport(Glibc)
    import Glibc
#endif

/// What one benchmark run measured.
public struct SimulationBenchmarkResult: Hashable, Sendable, CustomStringConvertible {
    public var nodeCount: Int
    public var batchSize: Int
    public var committedEntries: Int
    public var seconds: Double
    /// Heap allocations (malloc, calloc, realloc, aligned allocations) during the measured part,
    /// or nil when the malloc counter (scripts/bench-raft-sim.sh preloads it) is not loaded.
    public var allocations: Int?

    public var entriesPerSecond: Double { seconds > 0 ? Double(committedEntries) / seconds : 0 }
    public var allocationsPerEntry: Double? {
        allocations.map { committedEntries > 0 ? Double($0) / Double(committedEntries) : 0 }
    }

    public var description: String {
        let rate = Int(entriesPerSecond.rounded())
        let perEntry =
            allocationsPerEntry.map { "\(Double(Int($0 * 10)) / 10) allocations per committed entry" }
            ?? "allocations not counted (run scripts/bench-raft-sim.sh, which preloads the malloc counter)"
        return "\(nodeCount)-node cluster, batches of \(batchSize): \(committedEntries) entries committed in "
            + "\(Double(Int(seconds * 1000)) / 1000) s = \(rate) committed entries/s; \(perEntry)"
    }
}

/// The benchmark could not run: the cluster never elected a leader or stopped committing.
public struct SimulationBenchmarkError: Error, CustomStringConvertible {
    public var description: String
}

/// Measures committed entries per second of a cluster of real cores inside the simulator with a
/// free network (messages arrive at once, in order) and a free disk (nothing is written).
///
/// This is the ceiling a real cluster is measured against: all that remains is the core's own
/// work (proposing, replicating, acknowledging, committing, handing entries out to apply) plus
/// the few copies a minimal shell must make. The leader proposes `batchSize` commands, then
/// every message is delivered and every `Ready` handled until the cluster is idle; once per
/// round every node ticks, so heartbeats and quorum checks cost what they cost.
public func runSimulationBenchmark(
    entries: Int = 200_000, batchSize: Int = 64, nodeCount: Int = 3
) throws -> SimulationBenchmarkResult {
    guard entries > 0, batchSize > 0, nodeCount > 0 else {
        throw SimulationBenchmarkError(
            description: "entries (\(entries)), batchSize (\(batchSize)) and nodeCount (\(nodeCount)) must be positive")
    }
    var cluster = try BenchmarkCluster(nodeCount: nodeCount)
    try cluster.electFirstNode()

    // Warm up (first-touch allocations, dictionary growth), then measure.
    try cluster.commit(entries: min(entries, 10 * batchSize), batchSize: batchSize)
    let allocationsBefore = MallocCounter.count
    let clock = ContinuousClock()
    let start = clock.now
    let committed = try cluster.commit(entries: entries, batchSize: batchSize)
    let elapsed = clock.now - start
    let allocationsAfter = MallocCounter.count
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    return SimulationBenchmarkResult(
        nodeCount: nodeCount, batchSize: batchSize, committedEntries: committed, seconds: seconds,
        allocations: allocationsAfter.flatMap { after in allocationsBefore.map { Int(after - $0) } })
}

/// The smallest shell that satisfies the `Ready` contract when persisting is free.
private struct BenchmarkCluster {
    var nodes: [RaftNode]
    var inbox: [Message] = []
    var applied: [LogIndex]
    var snapshotIndex: [LogIndex]
    var committedAtLeader = 0
    var sequence: UInt64 = 0
    let command = KeyValueCommand.put(key: 1, value: 42).encoded
    /// Entries applied past the last snapshot before a node compacts (keeps memory flat).
    let compactionInterval: UInt64 = 8_192

    init(nodeCount: Int) throws {
        let voters = Set((1...nodeCount).map { NodeID(UInt64($0)) })
        var random = SimulationRandom(seed: 1)
        nodes = try (1...nodeCount).map { id throws -> RaftNode in
            try RaftNode(
                configuration: RaftConfiguration(id: NodeID(UInt64(id))), membership: Membership(voters: voters),
                random: random.splitForNode())
        }
        applied = Array(repeating: 0, count: nodeCount)
        snapshotIndex = applied
    }

    mutating func electFirstNode() throws {
        nodes[0].campaign()
        try pump()
        guard nodes[0].role == .leader else {
            throw SimulationBenchmarkError(description: "n1 did not win its election on a perfect network")
        }
    }

    /// Proposes and commits `entries` commands at the leader; returns how many were committed.
    @discardableResult
    mutating func commit(entries: Int, batchSize: Int) throws -> Int {
        let target = committedAtLeader + entries
        let startCommitted = committedAtLeader
        while committedAtLeader < target {
            for _ in 0..<min(batchSize, target - committedAtLeader) {
                sequence += 1
                try nodes[0].propose(command, requestID: RequestID(client: 1, sequence: sequence))
            }
            for slot in nodes.indices { nodes[slot].tick() }
            let before = committedAtLeader
            try pump()
            guard committedAtLeader > before else {
                throw SimulationBenchmarkError(description: "the cluster stopped committing at \(committedAtLeader)")
            }
        }
        return committedAtLeader - startCommitted
    }

    /// Handles every `Ready` and delivers every message until the cluster is idle.
    mutating func pump() throws {
        var progressed = true
        while progressed {
            progressed = false
            for slot in nodes.indices {
                while nodes[slot].hasReady {
                    progressed = true
                    let ready = nodes[slot].ready()
                    inbox.append(contentsOf: ready.messages)
                    if let snapshot = ready.snapshot {
                        applied[slot] = snapshot.metadata.index
                        snapshotIndex[slot] = snapshot.metadata.index
                    }
                    if let last = ready.committedEntries.last {
                        applied[slot] = last.entry.index
                        if slot == 0 {
                            committedAtLeader += ready.committedEntries.count(where: \.isCommand)
                        }
                    }
                    nodes[slot].advance(ready)
                    if applied[slot] - snapshotIndex[slot] >= compactionInterval {
                        try nodes[slot].compact(snapshotAt: applied[slot], data: [])
                        snapshotIndex[slot] = applied[slot]
                    }
                }
            }
            if !inbox.isEmpty {
                progressed = true
                let delivering = inbox
                inbox.removeAll(keepingCapacity: true)
                for message in delivering {
                    try nodes[Int(message.to.rawValue) - 1].step(message)
                }
            }
        }
    }
}

extension CommittedEntry {
    fileprivate var isCommand: Bool {
        if case .command = entry.payload { true } else { false }
    }
}
