// The planner's promises checked after every round of random guests, links and policies, with noise.
import ClusterModel
import LiveMigration
import Testing

/// Random migrations from a seed: a failure names its seed, and `promisesHoldForOneSeed` replays it.
@Suite struct PreCopyPropertyTests {
    static let seedsPerBatch: UInt64 = 150

    @Test(arguments: 0..<4)
    func everyPromiseHoldsAfterEveryRoundOfRandomMigrations(batch: UInt64) {
        for seed in (batch * Self.seedsPerBatch)..<((batch + 1) * Self.seedsPerBatch) {
            guard Self.check(seed: seed) else { return }
        }
    }

    /// Put a failing seed here to replay it alone.
    @Test func promisesHoldForOneSeed() {
        _ = Self.check(seed: 12_345)
    }

    /// Runs migration `seed` twice; records the first broken promise (with the seed, the round and
    /// the planner's state) and returns false if one broke.
    static func check(seed: UInt64) -> Bool {
        var first = RandomMigration(seed: seed)
        let problems = first.runAndCheck()
        guard problems.isEmpty else {
            Issue.record("seed \(seed): \(problems.joined(separator: "; "))\n\(first.story)")
            return false
        }
        var again = RandomMigration(seed: seed)
        _ = again.runAndCheck()
        guard again.migration.actions == first.migration.actions,
            again.migration.planner.rounds == first.migration.planner.rounds
        else {
            Issue.record("seed \(seed): a second run answered differently\n\(first.story)\n\(again.story)")
            return false
        }
        return true
    }
}

/// One migration drawn from a seed: guest, link, policy and noise.
private struct RandomMigration {
    var migration: SimulatedMigration
    let policy: PreCopyPolicy

    init(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        let dataBytes = UInt64(Self.logUniform(from: 20, to: 35, using: &random))
        let memoryBytes = dataBytes + UInt64(Double(dataBytes) * Double.random(in: 0...1, using: &random))
        let linkRate = Self.logUniform(from: 20, to: 34, using: &random)
        let dirtyShare: Double
        switch Int.random(in: 0..<4, using: &random) {
        case 0: dirtyShare = 0
        case 1: dirtyShare = Double.random(in: 0...0.1, using: &random)
        case 2: dirtyShare = Double.random(in: 0...1, using: &random)
        default: dirtyShare = Double.random(in: 0.5...3, using: &random)
        }
        let throttleInitial = Int.random(in: 1...99, using: &random)
        policy = PreCopyPolicy(
            downtimeTarget: .milliseconds(Int.random(in: 1...1000, using: &random)),
            maxRounds: Int.random(in: 1...20, using: &random),
            timeLimit: .milliseconds(Int.random(in: 1000...120_000, using: &random)),
            stallRounds: Int.random(in: 1...5, using: &random),
            autoConverge: Bool.random(using: &random),
            throttleInitial: throttleInitial,
            throttleStep: Int.random(in: 1...99, using: &random),
            throttleMax: Int.random(in: throttleInitial...99, using: &random))
        migration = SimulatedMigration(
            dataBytes: dataBytes, memoryBytes: memoryBytes, dirtyRate: linkRate * dirtyShare, linkRate: linkRate,
            policy: policy)
        migration.noise = Double.random(in: 0...0.5, using: &random)
        migration.random = SeededGenerator(seed: random.next())
    }

    /// From 2^`from` to 2^`to`, every power of two as likely.
    static func logUniform(from: Int, to: Int, using random: inout SeededGenerator) -> Double {
        Double(UInt64(1) << Int.random(in: from..<to, using: &random)) * Double.random(in: 1..<2, using: &random)
    }

    /// The most rounds the planner may run: the round limit; with auto-converge, then a raise
    /// after every round up to the highest throttle, and the round limit again at it.
    var roundBound: Int {
        guard policy.autoConverge else { return policy.maxRounds }
        let raises = 1 + (policy.throttleMax - policy.throttleInitial + policy.throttleStep - 1) / policy.throttleStep
        return 2 * policy.maxRounds + raises
    }

    /// Runs the migration to its end, checking every answer; the broken promises, if any.
    mutating func runAndCheck() -> [String] {
        var action = migration.start()
        guard action == .copy(round: 1, throttlePercent: 0) else { return ["start answered \(action)"] }
        var throttle = 0
        while case .copy(let round, let nextThrottle) = action {
            guard round <= roundBound else { return ["round \(round) is beyond the bound of \(roundBound)"] }
            guard round == migration.planner.rounds.count + 1 else {
                return ["asked for round \(round) after \(migration.planner.rounds.count) rounds"]
            }
            if let problem = throttleProblem(from: throttle, to: nextThrottle) { return ["round \(round): \(problem)"] }
            throttle = nextThrottle
            action = migration.runRound(throttle: throttle)
            let problems = check(action)
            guard problems.isEmpty else { return problems.map { "after round \(round): \($0)" } }
        }
        return []
    }

    /// The throttle never decreases, stays within its bounds, rises by the policy's steps, and is 0
    /// without auto-converge.
    func throttleProblem(from previous: Int, to next: Int) -> String? {
        guard policy.autoConverge else { return next == 0 ? nil : "throttled by \(next) % without auto-converge" }
        guard next != previous else { return nil }
        let expected = previous == 0 ? policy.throttleInitial : min(previous + policy.throttleStep, policy.throttleMax)
        return next == expected ? nil : "throttle went from \(previous) % to \(next) %, not \(expected) %"
    }

    func check(_ action: PreCopyAction) -> [String] {
        let planner = migration.planner
        guard let last = planner.rounds.last else { return ["no round recorded"] }
        let elapsed = migration.now
        // Rule 2 without auto-converge, recomputed from the record: rounds in a row since the last new low.
        var roundsWithoutNewLow = 0
        var fewest = UInt64.max
        for round in planner.rounds {
            if round.dirtyBytes < fewest {
                fewest = round.dirtyBytes
                roundsWithoutNewLow = 0
            } else {
                roundsWithoutNewLow += 1
            }
        }
        let notConverging =
            last.round >= policy.maxRounds || elapsed >= policy.timeLimit || roundsWithoutNewLow >= policy.stallRounds
        switch action {
        case .pauseAndFinish(let downtime):
            if last.dirtyBytes == 0 {
                return downtime == .zero ? [] : ["paused with nothing dirty, expecting \(downtime)"]
            }
            guard downtime <= policy.downtimeTarget else {
                return ["paused expecting \(downtime), above the target of \(policy.downtimeTarget)"]
            }
            guard let bandwidth = planner.bandwidth else {
                return ["paused with \(last.dirtyBytes) dirty and no bandwidth"]
            }
            let expected = Double(last.dirtyBytes) / bandwidth
            guard abs(downtime.seconds - expected) <= expected * 1e-9 else {
                return [
                    "paused expecting \(downtime), but \(last.dirtyBytes) bytes at \(bandwidth) B/s take \(expected) s"
                ]
            }
            return []
        case .abort(let reason):
            guard reason.hasPrefix("did not converge ") else { return ["aborted for \"\(reason)\""] }
            if policy.autoConverge {
                let atHighest = planner.rounds.filter { $0.throttlePercent == policy.throttleMax }.count
                guard atHighest >= policy.maxRounds || elapsed >= policy.timeLimit * 2 else {
                    return ["gave up with \(atHighest) rounds at the highest throttle at \(elapsed): \(reason)"]
                }
            } else if !notConverging {
                return ["aborted while it could still converge: \(reason)"]
            }
            return []
        case .copy:
            if !policy.autoConverge && notConverging { return ["copies again although it does not converge"] }
            guard elapsed < policy.timeLimit * (policy.autoConverge ? 2 : 1) else {
                return ["copies again at \(elapsed), past the time limit"]
            }
            return []
        }
    }

    /// The policy, the guest and what happened, for a failure message.
    var story: String {
        let guest =
            "data \(ByteCount(migration.dataBytes)), memory \(ByteCount(migration.memoryBytes)), dirtying \(migration.dirtyRate) B/s, link \(migration.linkRate) B/s, noise \(migration.noise)"
        return "\(policy)\n\(guest)\nactions \(migration.actions)\n\(migration.planner)"
    }
}
