// Randomized runs of small clusters under loss, duplication, reordering, partitions, crashes and
// compaction, checking Raft's safety properties after every step (Figure 3 of the paper).
import ClusterModel
import Foundation
import RaftCore
import Testing

/// 40 seeds by default; FLOTILLA_RAFT_FUZZ_SEEDS=2000 for a longer hunt.
private let seedCount = Int(ProcessInfo.processInfo.environment["FLOTILLA_RAFT_FUZZ_SEEDS"] ?? "") ?? 40

/// A deterministic source of faults for one run (SplitMix64, like the core's generator).
private struct FaultDice {
    var generator: SeededGenerator
    mutating func roll(_ sides: Int) -> Int { Int.random(in: 0..<sides, using: &generator) }
    mutating func chance(_ percent: Int) -> Bool { roll(100) < percent }
}

private struct SafetyRun {
    struct Shell {
        var node: RaftNode
        var configuration: RaftConfiguration
        var bootstrapMembership: Membership
        var hardState = HardState()
        var snapshot: Snapshot?
        var entries: [Entry] = []
        /// Applied entries in order (index, term), after the snapshot the state machine restored.
        var applied: [(index: LogIndex, term: Term)] = []
        var appliedThrough: LogIndex = 0
    }

    /// Every node that exists so far (founders, then nodes added as learners), in id order.
    var ids: [NodeID]
    /// Ids that may join later.
    let pool: [NodeID]
    let founders: Membership
    let seed: UInt64
    var shells: [NodeID: Shell] = [:]
    var network: [Message] = []
    var isolated: Set<NodeID> = []
    var dice: FaultDice
    var leaders: [Term: NodeID] = [:]
    /// Index → term of every entry any node applied: all nodes must apply the same entry at an index.
    var appliedTerms: [LogIndex: Term] = [:]
    /// Index → a term by which the entry was surely committed (the lowest term of a node applying it).
    var committedBy: [LogIndex: Term] = [:]
    var proposals = 0
    /// Read id → the highest index any node knew to be committed when the read was asked. A
    /// linearizable read must be served at or after it (§6.4).
    var readFloors: [UInt64: LogIndex] = [:]
    var servedReads: Set<UInt64> = []
    var failures: [String] = []

    init(seed: UInt64, nodeCount: Int) throws {
        self.seed = seed
        dice = FaultDice(generator: SeededGenerator(seed: seed))
        ids = (1...UInt64(nodeCount)).map { NodeID($0) }
        pool = (UInt64(nodeCount + 1)...UInt64(nodeCount + 2)).map { NodeID($0) }
        founders = Membership(voters: Set(ids))
        for id in ids { try create(id, membership: founders) }
    }

    private mutating func create(_ id: NodeID, membership: Membership) throws {
        let configuration = RaftConfiguration(
            id: id,
            preVote: seed % 2 == 0,
            checkQuorum: seed % 3 != 0,
            maxEntriesBytesPerMessage: 256,
            maxInflightMessages: 4,
            snapshotChunkBytes: 16,
            maxPromotionLag: 8
        )
        let node = try RaftNode(
            configuration: configuration,
            membership: membership,
            random: SeededGenerator(seed: seed &* 31 &+ id.rawValue)
        )
        shells[id] = Shell(node: node, configuration: configuration, bootstrapMembership: membership)
        if !ids.contains(id) { ids = (ids + [id]).sorted() }
    }

    /// The leader adds a node of the pool as a learner, promotes a learner or removes a member.
    private mutating func changeMembership() throws {
        guard let leader = ids.first(where: { shells[$0]!.node.role == .leader }) else { return }
        let current = shells[leader]!.node.status.membership
        let change: MembershipChange
        switch dice.roll(3) {
        case 0:
            let candidates = pool.filter { !current.contains($0) }
            guard !candidates.isEmpty else { return }
            change = .addLearner(candidates[dice.roll(candidates.count)])
        case 1:
            let learners = current.learners.sorted()
            guard !learners.isEmpty else { return }
            change = .promote(learners[dice.roll(learners.count)])
        default:
            // Keep at least three voters so that the run stays interesting.
            guard current.voters.count > 3 || !current.learners.isEmpty else { return }
            let members = current.voters.count > 3 ? current.members.sorted() : current.learners.sorted()
            change = .remove(members[dice.roll(members.count)])
        }
        guard (try? shells[leader]!.node.changeMembership(change)) != nil else { return }
        if case .addLearner(let node) = change, shells[node] == nil {
            try create(node, membership: Membership())
        }
    }

    mutating func step() throws {
        let target = ids[dice.roll(ids.count)]
        switch dice.roll(100) {
        case 0..<30:
            shells[target]!.node.tick()
        case 30..<70:
            deliverOne()
        case 70..<74:
            if !network.isEmpty { network.remove(at: dice.roll(network.count)) }
        case 74..<77:
            if !network.isEmpty { network.append(network[dice.roll(network.count)]) }
        case 77..<87:
            for id in ids where shells[id]!.node.role == .leader {
                for _ in 0...dice.roll(3) {
                    proposals += 1
                    _ = try? shells[id]!.node.propose(Array("p\(proposals)".utf8))
                }
            }
        case 87..<89:
            try restart(target)
        case 89..<91:
            // Cutting off the leader is the interesting case: a new leader, a stale one, stale reads.
            let leader = ids.first { shells[$0]!.node.role == .leader }
            isolated = dice.chance(40) ? [] : [dice.chance(50) ? leader ?? target : target]
        case 91..<93:
            let shell = shells[target]!
            if shell.appliedThrough > shell.node.status.snapshotIndex,
                let snapshot = try? shells[target]!.node.compact(
                    snapshotAt: shell.appliedThrough,
                    data: Self.snapshotData(at: shell.appliedThrough)
                )
            {
                shells[target]!.snapshot = snapshot
                shells[target]!.entries.removeAll { $0.index <= snapshot.metadata.index }
            }
        case 93..<95:
            if shells[target]!.node.role == .leader {
                let others = ids.filter { $0 != target }
                _ = try? shells[target]!.node.transferLeadership(to: others[dice.roll(others.count)])
            }
        case 95..<97:
            try changeMembership()
        default:
            // Half the reads go to a node that believes it leads — possibly a deposed, cut-off one.
            let leaders = ids.filter { shells[$0]!.node.role == .leader }
            let reader = !leaders.isEmpty && dice.chance(50) ? leaders[dice.roll(leaders.count)] : target
            let read = UInt64(readFloors.count + 1)
            readFloors[read] = ids.map { shells[$0]!.node.status.commit }.max() ?? 0
            _ = try? shells[reader]!.node.readIndex(context: withUnsafeBytes(of: read) { Array($0) })
        }
        for id in ids where shells[id]!.node.hasReady && dice.chance(80) {
            process(id)
        }
        checkElectionSafety()
    }

    private mutating func deliverOne() {
        guard !network.isEmpty else { return }
        let message = network.remove(at: dice.roll(network.count))
        if isolated.contains(message.from) || isolated.contains(message.to) || shells[message.to] == nil { return }
        do { try shells[message.to]!.node.step(message) } catch { failures.append("step failed: \(error)") }
    }

    /// Persists, sends and applies one Ready, in the documented order.
    mutating func process(_ id: NodeID) {
        var shell = shells[id]!
        let ready = shell.node.ready()
        if let snapshot = ready.snapshot {
            shell.snapshot = snapshot
            shell.entries = []
        }
        if let first = ready.entries.first {
            shell.entries.removeAll { $0.index >= first.index }
            shell.entries.append(contentsOf: ready.entries)
        }
        if let hardState = ready.hardState { shell.hardState = hardState }
        network.append(contentsOf: ready.messages)
        for read in ready.readStates {
            let readID = read.context.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            servedReads.insert(readID)
            if let floor = readFloors[readID], read.index < floor {
                failures.append("linearizable read: read \(readID) served at \(read.index) below commit \(floor)")
            }
        }
        if let snapshot = ready.snapshot {
            // Chunks must reassemble into exactly the bytes the leader's application wrote.
            if snapshot.data != Self.snapshotData(at: snapshot.metadata.index) {
                failures.append("\(id) installed a garbled snapshot at \(snapshot.metadata.index)")
            }
            shell.applied = []
            shell.appliedThrough = snapshot.metadata.index
        }
        for committed in ready.committedEntries {
            let entry = committed.entry
            if entry.index != shell.appliedThrough + 1 {
                failures.append("\(id) applied \(entry.index) after \(shell.appliedThrough)")
            }
            shell.appliedThrough = entry.index
            shell.applied.append((entry.index, entry.term))
            if let known = appliedTerms[entry.index], known != entry.term {
                failures.append(
                    "state machine safety: index \(entry.index) applied with terms \(known) and \(entry.term)")
            }
            appliedTerms[entry.index] = entry.term
            // The applying node's term bounds from above the term in which the entry committed.
            committedBy[entry.index] = min(committedBy[entry.index] ?? shell.node.term, shell.node.term)
        }
        shell.node.advance(ready)
        shells[id] = shell
    }

    /// The application state at `index`, made long enough to travel in several chunks.
    static func snapshotData(at index: LogIndex) -> [UInt8] {
        Array(String(repeating: "state at \(index);", count: 8).utf8)
    }

    /// A crash loses nothing the shell persisted (each Ready is persisted synchronously).
    private mutating func restart(_ id: NodeID) throws {
        var shell = shells[id]!
        shell.node = try RaftNode(
            configuration: shell.configuration,
            hardState: shell.hardState,
            snapshot: shell.snapshot,
            entries: shell.entries,
            bootstrapMembership: shell.bootstrapMembership,
            random: SeededGenerator(seed: UInt64(dice.roll(1 << 30)))
        )
        shell.applied = []
        shell.appliedThrough = shell.snapshot?.metadata.index ?? 0
        shells[id] = shell
        network.removeAll { $0.to == id }
    }

    /// Election safety (one leader per term) and, for each new leader, leader completeness (§5.4.3):
    /// its log holds every entry committed in an earlier term. (A deposed node can still win an older
    /// term with late votes; it need not hold entries committed in later terms.)
    private mutating func checkElectionSafety() {
        for id in ids where shells[id]!.node.role == .leader {
            let term = shells[id]!.node.term
            if let other = leaders[term] {
                if other != id { failures.append("election safety: \(other) and \(id) both lead term \(term)") }
                continue
            }
            leaders[term] = id
            let status = shells[id]!.node.status
            let earlier = committedBy.filter { $0.value < term }
            for entry in shells[id]!.node.logEntries(from: 0) where earlier[entry.index] != nil {
                if let applied = appliedTerms[entry.index], applied != entry.term {
                    failures.append(
                        "leader completeness: \(id) leads term \(term) with \(entry), applied term \(applied)")
                }
            }
            if let highest = earlier.keys.max(), highest > status.lastIndex {
                failures.append(
                    "leader completeness: \(id) leads term \(term) with last index \(status.lastIndex) < \(highest)")
            }
        }
    }

    /// Log matching (§5.3): two logs with the same term at an index are identical up to it.
    mutating func checkLogMatching() {
        let logs = ids.map { id in
            Dictionary(uniqueKeysWithValues: shells[id]!.node.logEntries(from: 0).map { ($0.index, $0) })
        }
        for first in logs.indices {
            for second in logs.indices where second > first {
                let shared = Set(logs[first].keys).intersection(logs[second].keys).sorted(by: >)
                guard let top = shared.first(where: { logs[first][$0]!.term == logs[second][$0]!.term }) else {
                    continue
                }
                for index in shared where index <= top && logs[first][index] != logs[second][index] {
                    failures.append(
                        "log matching: \(ids[first]) and \(ids[second]) agree at \(top) but differ at \(index)")
                    return
                }
            }
        }
    }

    /// Heals everything and runs without faults until the cluster converges.
    /// Then every member asks for a linearizable read, and each must be served.
    mutating func settle() {
        isolated = []
        var readsAsked: Set<UInt64>?
        var askedInTerm: Term = 0
        for _ in 0..<400 {
            for id in ids { shells[id]!.node.tick() }
            for _ in 0..<20 {
                for id in ids where shells[id]!.node.hasReady { process(id) }
                let batch = network
                network = []
                for message in batch where shells[message.to] != nil {
                    do { try shells[message.to]!.node.step(message) } catch { failures.append("\(error)") }
                }
                if network.isEmpty && !ids.contains(where: { shells[$0]!.node.hasReady }) { break }
            }
            checkElectionSafety()
            // Nodes removed from the cluster stop hearing from it; only members must converge.
            // A removed leader cut off before it learned of its removal may still think it leads an
            // old term (nothing tells it otherwise without CheckQuorum); the newest term's leader counts.
            let leaders = ids.filter { shells[$0]!.node.role == .leader }
            guard let leader = leaders.max(by: { shells[$0]!.node.term < shells[$1]!.node.term }) else { continue }
            let members = shells[leader]!.node.status.membership.members.sorted()
            let leaderLast = shells[leader]!.node.status.lastIndex
            let caughtUp = members.allSatisfy {
                shells[$0]!.node.status.commit == leaderLast && shells[$0]!.appliedThrough == leaderLast
            }
            let leaderTerm = shells[leader]!.node.term
            let agreed = members.allSatisfy { shells[$0]!.node.leader == leader && shells[$0]!.node.term == leaderTerm }
            guard caughtUp && agreed else { continue }
            // Reads asked under an earlier leader may be dropped with its leadership: ask again.
            if let asked = readsAsked, askedInTerm == leaderTerm {
                if asked.isSubset(of: servedReads) { return }
                continue
            }
            readsAsked = []
            askedInTerm = leaderTerm
            for member in members {
                let read = UInt64(readFloors.count + 1)
                readFloors[read] = leaderLast
                readsAsked?.insert(read)
                do { try shells[member]!.node.readIndex(context: withUnsafeBytes(of: read) { Array($0) }) } catch {
                    failures.append("read on \(member) with leader \(leader) refused: \(error)")
                }
            }
        }
        failures.append("no convergence: " + ids.map { "\(shells[$0]!.node.status)" }.joined(separator: "; "))
    }
}

@Test(arguments: 1...seedCount)
func randomizedRunsKeepRaftSafe(seed: Int) throws {
    var run = try SafetyRun(seed: UInt64(seed), nodeCount: seed % 2 == 0 ? 3 : 5)
    for step in 0..<4000 {
        try run.step()
        if step % 250 == 0 { run.checkLogMatching() }
        if !run.failures.isEmpty { break }
    }
    if run.failures.isEmpty { run.settle() }
    #expect(run.failures.isEmpty, "seed \(seed): \(run.failures.prefix(3).joined(separator: "\n"))")
    #expect(run.appliedTerms.count > 5, "seed \(seed): the cluster made too little progress to mean anything")
}
