// Each pre-copy rule on a hand-worked guest and link (docs/live-migration.md, "The pre-copy planner").
import LiveMigration
import Testing

@Suite struct PreCopyRuleTests {
    // MARK: Rule 1: stop and copy

    @Test func anIdleGuestPausesAfterRoundOneWithNoDirtyPagesLeft() {
        var planner = PreCopyPlanner(policy: .init())
        #expect(planner.start(now: .seconds(100)) == .copy(round: 1, throttlePercent: 0))
        let action = planner.roundFinished(now: .seconds(101), bytesSent: gib, dirtyBytes: 0)
        #expect(action == .pauseAndFinish(expectedDowntime: .zero))
        #expect(
            planner.rounds == [
                PreCopyRound(round: 1, bytesSent: gib, duration: .seconds(1), dirtyBytes: 0, throttlePercent: 0)
            ])
        #expect(planner.bandwidth == Double(gib))
    }

    /// 8 GB over 1 GB/s while the guest dirties 1 % of that: round 1 takes 8 s and leaves 80 MB
    /// (80 ms at 1 GB/s, above the 50 ms target); round 2 sends them in 80 ms and leaves 800 kB: 0.8 ms.
    @Test func aGuestDirtyingOnePercentOfTheLinkPausesAfterRoundTwo() throws {
        var migration = SimulatedMigration(dataBytes: 8_000_000_000, dirtyRate: 10_000_000, linkRate: 1_000_000_000)
        let last = migration.run()
        #expect(migration.planner.rounds.map(\.dirtyBytes) == [80_000_000, 800_000])
        #expect(migration.planner.rounds.map(\.duration) == [.seconds(8), .milliseconds(80)])
        let downtime = try #require(last.expectedDowntime, "expected a pause, got \(last)")
        #expect(abs((downtime - .microseconds(800)).seconds) < 1e-9, "\(downtime)")
    }

    @Test func theTargetItselfIsCloseEnough() {
        var planner = PreCopyPlanner(policy: .init(downtimeTarget: .milliseconds(50)))
        _ = planner.start(now: .zero)
        // 1 GB/s measured; 50 MB left is exactly 50 ms.
        let action = planner.roundFinished(now: .seconds(1), bytesSent: 1_000_000_000, dirtyBytes: 50_000_000)
        #expect(action == .pauseAndFinish(expectedDowntime: .milliseconds(50)))
    }

    // MARK: Rule 2: not converging, without auto-converge

    /// The guest dirties 90 % of what the link sends: every round leaves 10 % less, 8 GiB × 0.9¹⁰
    /// after ten rounds (52 s), far from the 50 MiB the target allows. (The guest's 921.6 MiB/s
    /// shows as 921.5: durations are whole nanoseconds and `ByteCount` rounds down.)
    @Test func aGuestThatConvergesTooSlowlyIsAbortedAfterTheRoundLimit() {
        var migration = SimulatedMigration(dataBytes: 8 * gib, dirtyRate: 0.9 * Double(gib), linkRate: Double(gib))
        let last = migration.run()
        #expect(migration.planner.rounds.count == 10)
        #expect(migration.now < .seconds(60))
        #expect(
            last
                == .abort(
                    reason:
                        "did not converge in 10 rounds: 2.7 GiB still dirty; the guest dirties 921.5 MiB/s, the link sends 1.0 GiB/s; set auto-converge on the VM or lower its dirty rate"
                ))
        #expect(migration.throttles == Array(repeating: 0, count: 10))
    }

    /// The guest dirties 300 MiB/s, the link sends 250: 1,000 MiB leave 1,200, then 1,440, 1,728 and
    /// 2,073.6 MiB. Three rounds without a new low after round 1: aborted after round 4, long before
    /// the round limit.
    @Test func aGuestDirtyingFasterThanTheLinkIsAbortedOnceTheDirtyBytesStopShrinking() {
        var migration = SimulatedMigration(
            dataBytes: 1000 * mib, memoryBytes: 4 * gib, dirtyRate: 300 * Double(mib), linkRate: 250 * Double(mib))
        let last = migration.run()
        #expect(migration.planner.rounds.map(\.dirtyBytes) == [1200, 1440, 1728].map { $0 * mib } + [2_174_327_194])
        #expect(
            last
                == .abort(
                    reason:
                        "did not converge in 4 rounds: the dirty bytes stopped shrinking for 3 rounds: 2.0 GiB still dirty; the guest dirties 300 MiB/s, the link sends 250 MiB/s; set auto-converge on the VM or lower its dirty rate"
                ))
    }

    /// 16 GiB at 1 GiB/s with the guest dirtying 90 % of it: rounds of 16, 14.4, 13, 11.7 s; round 5
    /// is still running at 60 s, so it is cut there and the migration aborted.
    @Test func aRoundStillRunningAtTheTimeLimitIsCutThereAndTheMigrationAborted() throws {
        var migration = SimulatedMigration(dataBytes: 16 * gib, dirtyRate: 0.9 * Double(gib), linkRate: Double(gib))
        let last = migration.run()
        #expect(migration.planner.rounds.count == 5)
        #expect(migration.now == .seconds(60))
        let reason = try #require(last.abortReason, "expected an abort, got \(last)")
        #expect(reason.hasPrefix("did not converge within the time limit of 60 s (5 rounds): "), "\(reason)")
        #expect(reason.hasSuffix("; set auto-converge on the VM, lower its dirty rate or raise the time limit"))
    }

    @Test func aRoundLimitOfOneGivesUpAfterTheFirstRound() {
        var planner = PreCopyPlanner(policy: .init(maxRounds: 1))
        _ = planner.start(now: .zero)
        let last = planner.roundFinished(now: .seconds(2), bytesSent: 2 * gib, dirtyBytes: 512 * mib)
        #expect(
            last
                == .abort(
                    reason:
                        "did not converge in 1 round: 512 MiB still dirty; the guest dirties 256 MiB/s, the link sends 1.0 GiB/s; set auto-converge on the VM or lower its dirty rate"
                ))
    }

    @Test func aStallIsCountedFromTheFewestDirtyBytesNotTheLastRound() throws {
        var planner = PreCopyPlanner(policy: .init(stallRounds: 2))
        _ = planner.start(now: .zero)
        // 1 MB/s; dirty: 500 MB, 400 (a new low), 450, 420 (neither below 400): stalled.
        #expect(
            planner.roundFinished(now: .seconds(1), bytesSent: 1_000_000, dirtyBytes: 500_000_000)
                == .copy(round: 2, throttlePercent: 0))
        #expect(
            planner.roundFinished(now: .seconds(2), bytesSent: 1_000_000, dirtyBytes: 400_000_000)
                == .copy(round: 3, throttlePercent: 0))
        #expect(
            planner.roundFinished(now: .seconds(3), bytesSent: 1_000_000, dirtyBytes: 450_000_000)
                == .copy(round: 4, throttlePercent: 0))
        let last = planner.roundFinished(now: .seconds(4), bytesSent: 1_000_000, dirtyBytes: 420_000_000)
        let reason = try #require(last.abortReason, "expected an abort, got \(last)")
        #expect(reason.hasPrefix("did not converge in 4 rounds: the dirty bytes stopped shrinking for 2 rounds: "))
    }

    // MARK: Rule 3: auto-converge

    /// The 300-over-250 MiB/s guest with auto-converge. Two busy rounds in a row (each dirtied more
    /// than half what it sent) raise the throttle: 20 % after round 2, 30 % after 4, 40 % after 6,
    /// 50 % after 8. From round 10 on the round limit raises it after every round: 60, 70, 80 %. At
    /// 80 % the guest dirties 60 MiB/s; round 13 leaves 7.3 MiB, 29 ms at 250 MiB/s.
    @Test func withAutoConvergeTheThrottleRisesUntilTheCopyConverges() throws {
        var migration = SimulatedMigration(
            dataBytes: 1000 * mib, memoryBytes: 4 * gib, dirtyRate: 300 * Double(mib), linkRate: 250 * Double(mib),
            policy: .init(autoConverge: true))
        let last = migration.run()
        #expect(migration.throttles == [0, 0, 20, 20, 30, 30, 40, 40, 50, 50, 60, 70, 80])
        let downtime = try #require(last.expectedDowntime, "expected a pause, got \(last)")
        #expect(downtime > .milliseconds(28) && downtime < .milliseconds(30), "\(downtime)")
    }

    /// A guest whose dirtying a throttle cannot tame (its memory is always all dirty: it dirties
    /// 100 times faster than the link): the throttle climbs to 99 %, and ten rounds at 99 % later
    /// the migration gives up.
    @Test func withAutoConvergeTheMigrationGivesUpAfterTheRoundLimitAtTheHighestThrottle() throws {
        var migration = SimulatedMigration(
            dataBytes: gib, dirtyRate: 100 * Double(gib), linkRate: Double(gib),
            policy: .init(timeLimit: .seconds(3600), autoConverge: true))
        let last = migration.run()
        let throttles = migration.throttles
        #expect(throttles.filter { $0 == 99 }.count == 10)
        #expect(throttles == throttles.sorted())
        let reason = try #require(last.abortReason, "expected an abort, got \(last)")
        #expect(
            reason
                == "did not converge in \(throttles.count) rounds, the last 10 with the guest throttled by 99 %: 1.0 GiB still dirty; the guest dirties 1.0 GiB/s, the link sends 1.0 GiB/s; lower the VM's dirty rate or migrate it over a faster link"
        )
    }

    /// 64 GiB over 1 GiB/s, the guest dirtying 90 % of that: round 1 ends at 64 s, past the time
    /// limit, so the throttle rises at once to 20 %; round 2 is cut at 120 s, twice the limit, with
    /// 56 GiB sent and 1.6 + 0.72 × 56 = 41.9 GiB dirty.
    @Test func withAutoConvergeTheMigrationGivesUpAtTwiceTheTimeLimit() {
        var migration = SimulatedMigration(
            dataBytes: 64 * gib, dirtyRate: 0.9 * Double(gib), linkRate: Double(gib),
            policy: .init(autoConverge: true))
        #expect(migration.planner.deadline == nil)
        let last = migration.run()
        #expect(migration.now == .seconds(120))
        #expect(migration.throttles == [0, 20])
        #expect(
            last
                == .abort(
                    reason:
                        "did not converge within twice the time limit, 120 s (2 rounds, the guest throttled by 20 %): 41.9 GiB still dirty; the guest dirties 766.5 MiB/s, the link sends 1.0 GiB/s; lower the VM's dirty rate, migrate it over a faster link or raise the time limit"
                ))
    }

    // MARK: Rule 4: bandwidth

    @Test func bandwidthIsTheMovingAverageOfEachRoundsRateWithTheNewestWeighingHalf() {
        var planner = PreCopyPlanner(policy: .init(maxRounds: 20))
        _ = planner.start(now: .zero)
        _ = planner.roundFinished(now: .seconds(1), bytesSent: 100, dirtyBytes: 10_000)
        #expect(planner.bandwidth == 100)
        _ = planner.roundFinished(now: .seconds(2), bytesSent: 200, dirtyBytes: 9_000)
        #expect(planner.bandwidth == 150)
        _ = planner.roundFinished(now: .seconds(4), bytesSent: 600, dirtyBytes: 8_000)
        #expect(planner.bandwidth == 225)
    }

    @Test func aRoundOfNoTimeOrNoBytesSaysNothingAboutTheLink() {
        var planner = PreCopyPlanner(policy: .init(maxRounds: 20))
        _ = planner.start(now: .zero)
        // Round 1 took no measurable time: no bandwidth yet, so even 1 byte left cannot be promised in 50 ms.
        #expect(planner.roundFinished(now: .zero, bytesSent: gib, dirtyBytes: 1) == .copy(round: 2, throttlePercent: 0))
        #expect(planner.bandwidth == nil)
        // The link sent nothing for a second.
        #expect(
            planner.roundFinished(now: .seconds(1), bytesSent: 0, dirtyBytes: 1) == .copy(round: 3, throttlePercent: 0))
        #expect(planner.bandwidth == nil)
        #expect(
            planner.roundFinished(now: .seconds(2), bytesSent: 1000, dirtyBytes: 10)
                == .pauseAndFinish(expectedDowntime: .milliseconds(10)))
        #expect(planner.bandwidth == 1000)
    }

    @Test func aRoundThatSentNothingAndLeftNothingDirtyPauses() {
        var planner = PreCopyPlanner()
        _ = planner.start(now: .zero)
        #expect(
            planner.roundFinished(now: .zero, bytesSent: 0, dirtyBytes: 0) == .pauseAndFinish(expectedDowntime: .zero))
    }

    // MARK: The shell's contract

    @Test func theDeadlineIsTheTimeLimitFromTheStartOrTwiceItWithAutoConverge() {
        var planner = PreCopyPlanner(policy: .init(timeLimit: .seconds(30)))
        _ = planner.start(now: .seconds(5))
        #expect(planner.deadline == .seconds(35))
        var converging = PreCopyPlanner(policy: .init(timeLimit: .seconds(30), autoConverge: true))
        _ = converging.start(now: .seconds(5))
        #expect(converging.deadline == .seconds(65))
        _ = converging.roundFinished(now: .seconds(6), bytesSent: 1, dirtyBytes: 0)
        #expect(converging.deadline == nil)
    }

    @Test func callsOutOfOrderStopTheProcessAndPrintThePlannersState() async throws {
        let early = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var planner = PreCopyPlanner()
            _ = planner.roundFinished(now: .seconds(1), bytesSent: 1, dirtyBytes: 1)
        }
        let message = String(decoding: try #require(early).standardErrorContent, as: UTF8.self)
        #expect(message.contains("but no round runs: pre-copy planner not started"), "\(message)")

        let backwards = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var planner = PreCopyPlanner()
            _ = planner.start(now: .seconds(10))
            _ = planner.roundFinished(now: .seconds(9), bytesSent: 1, dirtyBytes: 1)
        }
        let backwardsMessage = String(decoding: try #require(backwards).standardErrorContent, as: UTF8.self)
        #expect(
            backwardsMessage.contains("before it began: pre-copy planner copying round 1 since 10.0 seconds"),
            "\(backwardsMessage)")

        let afterPause = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var planner = PreCopyPlanner()
            _ = planner.start(now: .zero)
            _ = planner.roundFinished(now: .seconds(1), bytesSent: 1, dirtyBytes: 0)
            _ = planner.roundFinished(now: .seconds(2), bytesSent: 1, dirtyBytes: 0)
        }
        let afterPauseMessage = String(decoding: try #require(afterPause).standardErrorContent, as: UTF8.self)
        #expect(afterPauseMessage.contains("pre-copy planner finished with pauseAndFinish"), "\(afterPauseMessage)")

        await #expect(processExitsWith: .failure) {
            var planner = PreCopyPlanner()
            _ = planner.start(now: .zero)
            _ = planner.start(now: .zero)
        }
    }

    @Test(arguments: [
        (PreCopyPolicy(downtimeTarget: .zero), "downtime target must be more than 0"),
        (PreCopyPolicy(maxRounds: 0), "the round limit must be at least 1, got 0"),
        (PreCopyPolicy(timeLimit: .seconds(-1)), "the time limit must be more than 0"),
        (PreCopyPolicy(stallRounds: 0), "stall rounds must be at least 1, got 0"),
        (PreCopyPolicy(throttleInitial: 100), "the initial throttle must be 1–99 %, got 100 %"),
        (PreCopyPolicy(throttleStep: 0), "the throttle step must be 1–99 %, got 0 %"),
        (
            PreCopyPolicy(throttleInitial: 30, throttleMax: 20),
            "the highest throttle must be from the initial throttle (30 %)"
        ),
    ])
    func aPolicyThatCannotWorkSaysWhatToFix(policy: PreCopyPolicy, problem: String) {
        #expect(policy.problem?.hasPrefix(problem) == true, "\(policy.problem ?? "no problem")")
    }

    @Test func theDefaultPolicyIsQEMUsAutoConvergeWithHyperVsRoundLimit() {
        let policy = PreCopyPolicy()
        #expect(policy.problem == nil)
        #expect(
            policy.downtimeTarget == .milliseconds(50) && policy.maxRounds == 10 && policy.timeLimit == .seconds(60))
        #expect(
            !policy.autoConverge && policy.throttleInitial == 20 && policy.throttleStep == 10
                && policy.throttleMax == 99)
    }
}
