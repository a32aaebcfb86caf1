// Seeded random command sequences: invariants after every command, snapshots that resume exactly, no crash on garbage.
import ClusterModel
import ClusterState
import Testing

/// Applies `sequences` random sequences; after every command the invariants hold, a rejection
/// changed nothing, the command and result survive their binary forms, and a state restored from a
/// snapshot taken part-way applies the rest to the same state and the same snapshot bytes.
/// A failure names the seed of its sequence, which replays it alone.
@Test func randomCommandSequencesKeepTheInvariantsAndResumeFromSnapshots() throws {
    let sequences: UInt64 = 2500
    var applied: [CommandKind: Int] = [:]
    var rejected: [Rejection.Kind: Int] = [:]
    var commands = 0
    // Stop at the first failing sequence: its seed is the one to replay.
    for seed in 1...sequences {
        guard try checkSequence(seed: seed, applied: &applied, rejected: &rejected, commands: &commands) else { return }
    }
    // The generator must actually exercise the state machine: every command applies somewhere,
    // every rejection kind occurs, and neither side dominates.
    for kind in CommandKind.allCases where kind != .registerMember {
        #expect(applied[kind, default: 0] > 0, "\(kind) never applied")
    }
    for kind in Rejection.Kind.allCases { #expect(rejected[kind, default: 0] > 0, "no \(kind) rejection") }
    let appliedCount = applied.values.reduce(0, +)
    print(
        "STATS", commands, appliedCount,
        applied.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key)=\($0.value)" }, rejected)
    #expect(appliedCount > commands / 4 && appliedCount < commands * 3 / 4, "\(appliedCount) of \(commands) applied")
}

private func checkSequence(
    seed: UInt64, applied: inout [CommandKind: Int], rejected: inout [Rejection.Kind: Int], commands: inout Int
) throws -> Bool {
    var generator = RandomCommands(seed: seed)
    var state = ClusterState()
    // Start from a small cluster often enough that VMs get to run.
    var prologue: [ClusterCommand] = []
    if seed % 4 != 0 {
        for id: UInt64 in 1...3 {
            prologue.append(
                .registerNode(
                    NodeRegistration(id: NodeID(id), addresses: addresses(id), role: .voter, usableMemory: 4 * gib)))
        }
        prologue.append(.createVolume("csv1", path: "volumes/csv1", coordinator: 1))
    }
    let length = Int.random(in: 10...60, using: &generator.random)
    let cut = Int.random(in: 0...length, using: &generator.random)
    var restored: ClusterState?
    var time: UInt64 = 1_700_000_000_000 + seed
    for step in 0..<(prologue.count + length) {
        if step == prologue.count + cut {
            restored = try ClusterState(snapshot: state.snapshot)
            if restored != state {
                Issue.record("seed \(seed): the snapshot after \(step) commands does not restore the same state")
                return false
            }
        }
        let command = step < prologue.count ? prologue[step] : generator.next(for: state)
        time += UInt64.random(in: 0...5000, using: &generator.random)
        let envelope = CommandEnvelope(proposedAt: time, command: command)
        guard (try? CommandEnvelope(decoding: envelope.encoded)) == envelope else {
            Issue.record("seed \(seed) step \(step): \(command) does not survive its encoding")
            return false
        }
        let before = state
        let result = state.apply(envelope)
        commands += 1
        switch result {
        case .applied: applied[command.kind, default: 0] += 1
        case .rejected(let rejection):
            rejected[rejection.kind, default: 0] += 1
            if state != before {
                Issue.record("seed \(seed) step \(step): rejected \(command) changed the state: \(rejection)")
                return false
            }
        }
        guard (try? CommandResult(decoding: result.encoded)) == result else {
            Issue.record("seed \(seed) step \(step): \(result) does not survive its encoding")
            return false
        }
        let violations = state.invariantViolations(since: before)
        guard violations.isEmpty else {
            Issue.record("seed \(seed) step \(step): after \(command) → \(result): \(violations)")
            return false
        }
        if var copy = restored {
            let again = copy.apply(envelope)
            restored = copy
            guard again == result else {
                Issue.record("seed \(seed) step \(step): the restored state answered \(again), the original \(result)")
                return false
            }
        }
    }
    let resumed = try restored ?? ClusterState(snapshot: state.snapshot)
    guard resumed == state, resumed.snapshot == state.snapshot else {
        Issue.record("seed \(seed): resuming from the snapshot reached another state or other snapshot bytes")
        return false
    }
    return true
}

/// Random bytes, and valid encodings with damage, decode or throw; they never crash. Whatever
/// does decode as a command is still validated by apply: the invariants hold after it.
@Test func garbageNeverCrashesDecodingOrApply() {
    var random = SeededGenerator(seed: 0x5EED)
    var generator = RandomCommands(seed: 7)
    var state = ClusterState()
    for id: UInt64 in 1...3 {
        _ = state.apply(
            .registerNode(
                NodeRegistration(id: NodeID(id), addresses: addresses(id), role: .voter, usableMemory: 4 * gib)),
            proposedAt: 1)
    }
    var samples: [[UInt8]] = []
    for _ in 0..<400 {
        let command = generator.next(for: state)
        _ = state.apply(command, proposedAt: 2)
        samples.append(CommandEnvelope(proposedAt: 3, command: command).encoded)
    }
    let snapshot = state.snapshot
    var decodedCommands = 0
    var decodedSnapshots = 0
    for round in 0..<20_000 {
        var bytes: [UInt8]
        switch round % 4 {
        case 0:
            bytes = (0..<Int.random(in: 0...48, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
        case 1, 2:
            bytes = samples.randomElement(using: &random)!
            for _ in 0...Int.random(in: 0...2, using: &random) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
        default:
            bytes = snapshot
            for _ in 0...Int.random(in: 0...3, using: &random) {
                bytes[Int.random(in: 1..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
        }
        if let envelope = try? CommandEnvelope(decoding: bytes) {
            decodedCommands += 1
            var copy = state
            _ = copy.apply(envelope)
            let violations = copy.invariantViolations(since: state)
            if !violations.isEmpty {
                Issue.record("a damaged entry \(bytes) decoded as \(envelope.command) and broke \(violations)")
                return
            }
        }
        _ = try? CommandResult(decoding: bytes)
        if var damaged = try? ClusterState(snapshot: bytes) {
            decodedSnapshots += 1
            // A damaged snapshot may hold an inconsistent state; applying to it still must not trap.
            for _ in 0..<3 { _ = damaged.apply(generator.next(for: damaged), proposedAt: 4) }
        }
    }
    // Damage must reach apply often enough for the check above to mean something.
    #expect(decodedCommands > 1000, "only \(decodedCommands) damaged entries decoded")
    #expect(decodedSnapshots > 100, "only \(decodedSnapshots) damaged snapshots decoded")
}

@Test func truncatedEntriesResultsAndSnapshotsAlwaysThrow() {
    var generator = RandomCommands(seed: 11)
    var state = ClusterState()
    for id: UInt64 in 1...3 {
        _ = state.apply(
            .registerNode(
                NodeRegistration(id: NodeID(id), addresses: addresses(id), role: .voter, usableMemory: 4 * gib)),
            proposedAt: 1)
    }
    var prefixesDecoded: [String] = []
    // The decoders throw only `WireFormatError` (typed throws), so "does not decode" means that error.
    func decodes(_ decode: () throws -> Void) -> Bool { (try? decode()) != nil }
    for _ in 0..<200 {
        let command = generator.next(for: state)
        let result = state.apply(command, proposedAt: 2)
        let entry = CommandEnvelope(proposedAt: 2, command: command).encoded
        for cut in 0..<entry.count where decodes({ _ = try CommandEnvelope(decoding: Array(entry[0..<cut])) }) {
            prefixesDecoded.append("\(cut) bytes of \(command)")
        }
        let answer = result.encoded
        for cut in 0..<answer.count where decodes({ _ = try CommandResult(decoding: Array(answer[0..<cut])) }) {
            prefixesDecoded.append("\(cut) bytes of \(result)")
        }
    }
    let snapshot = state.snapshot
    for cut in 0..<snapshot.count where decodes({ _ = try ClusterState(snapshot: Array(snapshot[0..<cut])) }) {
        prefixesDecoded.append("\(cut) bytes of the snapshot")
    }
    #expect(prefixesDecoded.isEmpty)
    #expect(state.vms.count > 3, "the commands built too little state for its snapshot to mean much")
}
