// Each balancer rule on a small case worked out by hand (the rule numbers are MemoryBalancer's).
import ClusterModel
import DynamicMemory
import Testing

/// With the default policy a pass 100 ms after the previous one gives back 51.2 MiB, which the
/// 1 MiB granule rounds to 51 MiB (a step never returns more than the rate allows).
private let step: UInt64 = 51 * mib

@Suite struct TargetTests {
    @Test func theTargetIsDemandPlusTheBufferRoundedUpToTheGranule() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 8 * gib,
            [vm(1, demand: 1000 * mib, assigned: 1 * gib), vm(2, demand: 1000 * mib + 1, assigned: 1 * gib)])
        #expect(answers[vm: 1].target == 1200 * mib)
        // 1200 MiB + 1.2 bytes: up to whole bytes, then up to the next MiB.
        #expect(answers[vm: 2].target == 1201 * mib)
    }

    @Test func theTargetStaysWithinTheMinimumAndTheMaximum() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 8 * gib,
            [vm(1, demand: 100 * mib, assigned: 1 * gib), vm(2, demand: 10 * gib, assigned: 1 * gib)])
        #expect(answers[vm: 1].target == 1 * gib)
        #expect(answers[vm: 2].target == 4 * gib)
    }

    @Test func aSettingOffTheGranuleIsUsedAsIs() {
        var balancer = MemoryBalancer.warmedUp()
        let maximum = 3 * gib + 123
        let answer = balancer.pass(
            after: 100, usable: 8 * gib, [vm(1, demand: 10 * gib, assigned: 1 * gib, maximum: maximum)])[vm: 1]
        #expect(answer.target == maximum)
        #expect(answer.assigned == maximum)
    }
}

@Suite struct UsableMemoryTests {
    @Test func memoryOverALoweredUsableIsReclaimedAtOnce() {
        var balancer = MemoryBalancer.warmedUp()
        // Both above their 1 GiB targets; a balloon step alone would leave 2 × 3021 MiB.
        let answers = balancer.pass(
            after: 100, usable: 4 * gib,
            [vm(1, demand: 500 * mib, assigned: 3 * gib), vm(2, demand: 500 * mib, assigned: 3 * gib)])
        #expect(answers.totalAssigned == 4 * gib)
        // Equal priorities and excess: vm1 gives first, as much as is needed.
        #expect(answers[vm: 1].assigned == 3 * gib - step - 1946 * mib)
        #expect(answers[vm: 2].assigned == 3 * gib - step)
    }

    @Test func whenEvenTheMinimumsDoNotFitNoVMStartsAndEachKeepsAShareOfUsable() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 3 * gib,
            [
                vm(1, demand: 2 * gib, assigned: 2 * gib, startup: 2 * gib, minimum: 2 * gib),
                vm(2, demand: 2 * gib, assigned: 2 * gib, startup: 2 * gib, minimum: 2 * gib),
                vm(3, demand: 1 * gib, assigned: nil),
            ])
        #expect(answers[vm: 1].assigned == 1536 * mib)
        #expect(answers[vm: 2].assigned == 1536 * mib)
        #expect(answers[vm: 3].status == .waiting)
        #expect(answers.totalAssigned == 3 * gib)
    }
}

@Suite struct RunningVMTests {
    @Test func aLoweredMaximumTakesEffectAtOnce() {
        var balancer = MemoryBalancer.warmedUp()
        let answer = balancer.pass(
            after: 100, usable: 8 * gib,
            [vm(1, demand: 3 * gib, assigned: 4 * gib, startup: 1 * gib, maximum: 2 * gib)])[vm: 1]
        #expect(answer.assigned == 2 * gib)
        #expect(answer.status == .warning)
        #expect(answer.pagingBytes == 1 * gib)
    }

    @Test func aRaisedMinimumIsMetAtOnceEvenWhenMemoryIsShort() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 4 * gib,
            [
                vm(1, demand: 500 * mib, assigned: 1 * gib, startup: 2 * gib, minimum: 2 * gib),
                vm(2, demand: 4 * gib, assigned: 3 * gib),
            ])
        // Targets 2 + 4 GiB do not fit in 4: vm2's fair share is 2 GiB, and vm1's new minimum
        // cannot wait for vm2's balloon.
        #expect(answers[vm: 1].assigned == 2 * gib)
        #expect(answers[vm: 2].assigned == 2 * gib)
        #expect(answers[vm: 2].pagingBytes == 2 * gib)
    }

    @Test func whenARaisedMinimumDoesNotFitItIsMetByPriorityAsFarAsMemoryAllows() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 4 * gib,
            [
                vm(1, demand: 500 * mib, assigned: 1 * gib, startup: 3 * gib, minimum: 3 * gib, priority: 90),
                vm(2, demand: 500 * mib, assigned: 2 * gib, startup: 2 * gib, minimum: 2 * gib, priority: 10),
            ])
        #expect(answers[vm: 1].assigned == 2 * gib)
        #expect(answers[vm: 2].assigned == 2 * gib)
    }
}

@Suite struct StartingVMTests {
    @Test func aStartingVMGetsExactlyItsStartupMemoryThenGrowsToItsTarget() {
        var balancer = MemoryBalancer.warmedUp()
        let started = balancer.pass(after: 100, usable: 8 * gib, [vm(1, demand: 1 * gib, assigned: nil)])[vm: 1]
        #expect(started.assigned == 1 * gib)
        #expect(started.status == .low)
        #expect(started.target == 1229 * mib)
        let running = balancer.pass(after: 100, usable: 8 * gib, [vm(1, demand: 1 * gib, assigned: 1 * gib)])[vm: 1]
        #expect(running.assigned == 1229 * mib)
        #expect(running.status == .ok)
    }

    @Test func aStartingVMWaitsWhileItsStartupMemoryIsNotFree() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 4 * gib,
            [
                vm(1, demand: 3 * gib, assigned: 3584 * mib, startup: 3584 * mib, minimum: 3584 * mib),
                vm(2, demand: 500 * mib, assigned: nil),
            ])
        #expect(
            answers[vm: 2]
                == MemoryAssignment(
                    vm: 2, assigned: 0, target: 1 * gib, goal: 1 * gib, demand: 500 * mib, status: .waiting,
                    pagingBytes: 0))
        // The memory the waiting VM cannot use is not kept from the running one.
        #expect(answers[vm: 1].assigned == 3687 * mib)
    }

    @Test func aStartingVMIsReservedFromRunningMemoryAboveTheMinimumsAtOnce() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 4 * gib,
            [vm(1, demand: 2986 * mib, assigned: 3584 * mib), vm(2, demand: 500 * mib, assigned: nil)])
        #expect(answers[vm: 2].assigned == 1 * gib)
        #expect(answers[vm: 1].assigned == 3 * gib)
        #expect(answers[vm: 1].target == 3584 * mib)
    }

    @Test func startingVMsAreReservedByPriorityAndASmallerOneStillFitsAfterALargerOne() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 3 * gib,
            [
                vm(1, demand: 0, assigned: nil, startup: 2 * gib, minimum: 512 * mib, priority: 10),
                vm(2, demand: 0, assigned: nil, startup: 2 * gib, minimum: 512 * mib, priority: 90),
                vm(3, demand: 0, assigned: nil, startup: 1 * gib, minimum: 512 * mib, priority: 10),
            ])
        #expect(answers[vm: 1].status == .waiting)
        #expect(answers[vm: 2].assigned == 2 * gib)
        #expect(answers[vm: 3].assigned == 1 * gib)
    }
}

@Suite struct WhenAllFitTests {
    @Test func aVMBelowItsTargetIsHotAddedAtOnceWhenAllFit() {
        var balancer = MemoryBalancer.warmedUp()
        let answer = balancer.pass(after: 100, usable: 8 * gib, [vm(1, demand: 2560 * mib, assigned: 1 * gib)])[vm: 1]
        #expect(answer.assigned == 3 * gib)
        #expect(answer.status == .ok)
    }

    @Test func aVMAboveItsTargetGivesBackOneBalloonStepPerPassDownToItsTarget() {
        var balancer = MemoryBalancer.warmedUp()
        var assigned = 3 * gib
        var history: [UInt64] = []
        for _ in 0..<60 {
            assigned =
                balancer.pass(after: 100, usable: 8 * gib, [vm(1, demand: 500 * mib, assigned: assigned)])[vm: 1]
                .assigned
            history.append(assigned)
        }
        #expect(history.prefix(2) == [3 * gib - step, 3 * gib - 2 * step])
        // 39 steps leave 1083 MiB, more than the 51.2 MiB band above the 1 GiB target; the 40th
        // leaves 1032 MiB, inside it: having started, it gives back on, to the target, and stays.
        #expect(history[38] == 1083 * mib)
        #expect(history[39] == 1032 * mib)
        #expect(history[40...].allSatisfy { $0 == 1 * gib })
    }

    /// A short step (a pass soon after the previous one) that lands inside the band must not
    /// leave the VM there: what started giving back goes on to the target.
    @Test func aShortStepIntoTheBandDoesNotStopTheGivingBack() {
        var balancer = MemoryBalancer.warmedUp()
        // Target 480 MiB (400 MiB + 20 %); the band is max(16 MiB, 24 MiB). 512 MiB is above it.
        let request = { (assigned: UInt64) in
            vm(1, demand: 400 * mib, assigned: assigned, startup: 512 * mib, minimum: 256 * mib, maximum: 2 * gib)
        }
        let first = balancer.pass(after: 25, usable: 8 * gib, [request(512 * mib)])[vm: 1]
        #expect(first.target == 480 * mib)
        #expect(first.assigned < 512 * mib && first.assigned - 480 * mib <= 24 * mib, "a short step into the band")
        let second = balancer.pass(after: 100, usable: 8 * gib, [request(first.assigned)])[vm: 1]
        #expect(second.assigned == 480 * mib)
        // Within the band, a VM that was not giving back stays where it is.
        var fresh = MemoryBalancer.warmedUp()
        #expect(fresh.pass(after: 100, usable: 8 * gib, [request(first.assigned)])[vm: 1].assigned == first.assigned)
    }

    @Test func withinTheHysteresisBandNothingMoves() {
        var balancer = MemoryBalancer.warmedUp()
        // Target 2 GiB; the band is max(16 MiB, 5 % of 2 GiB = 102.4 MiB).
        let answer = balancer.pass(
            after: 100, usable: 8 * gib, [vm(1, demand: 1706 * mib, assigned: 2 * gib + 100 * mib)])[vm: 1]
        #expect(answer.target == 2 * gib)
        #expect(answer.assigned == 2 * gib + 100 * mib)
        #expect(answer.status == .ok)
    }

    @Test func memoryAboveATargetIsReclaimedAtOnceWhenAnotherVMNeedsIt() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 4 * gib,
            [vm(1, demand: 500 * mib, assigned: 3 * gib), vm(2, demand: 2560 * mib, assigned: 1 * gib)])
        #expect(answers[vm: 1].assigned == 1 * gib)
        #expect(answers[vm: 2].assigned == 3 * gib)
    }

    @Test func theFirstPassMayGiveBackOneFullStep() {
        var balancer = MemoryBalancer()
        let answer = balancer.pass(now: .seconds(7), usable: 8 * gib, requests: [vm(1, demand: 0, assigned: 3 * gib)])
        #expect(answer[vm: 1].assigned == 2560 * mib)
    }

    @Test func aLatePassGivesBackNoMoreThanTheLongestStep() {
        var balancer = MemoryBalancer.warmedUp()
        let answer = balancer.pass(after: 10_000, usable: 8 * gib, [vm(1, demand: 0, assigned: 3 * gib)])
        #expect(answer[vm: 1].assigned == 2560 * mib)
    }
}

@Suite struct WhenShortTests {
    @Test func theMemoryAboveTheMinimumsIsSharedInProportionToPriorityPlusOne() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 4 * gib,
            [
                vm(1, demand: 4 * gib, assigned: 1 * gib, priority: 2),
                vm(2, demand: 4 * gib, assigned: 1 * gib, priority: 0),
            ])
        // 2 GiB above the minimums, weights 3 : 1.
        #expect(answers[vm: 1].assigned == 2560 * mib)
        #expect(answers[vm: 2].assigned == 1536 * mib)
        #expect(answers.allSatisfy { $0.status == .warning })
    }

    @Test func aVMThatNeedsLessThanItsShareLeavesTheRestToOthers() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 4 * gib,
            [vm(1, demand: 1280 * mib, assigned: 1 * gib), vm(2, demand: 4 * gib, assigned: 1 * gib)])
        #expect(answers[vm: 1].assigned == 1536 * mib)
        #expect(answers[vm: 1].status == .ok)
        #expect(answers[vm: 2].assigned == 2560 * mib)
    }

    @Test func priorityZeroStillGetsAShare() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 2 * gib + 102 * mib,
            [
                vm(1, demand: 4 * gib, assigned: 1 * gib, priority: 100),
                vm(2, demand: 4 * gib, assigned: 1 * gib, priority: 0),
            ])
        #expect(answers[vm: 1].assigned == 1 * gib + 101 * mib)
        #expect(answers[vm: 2].assigned == 1 * gib + 1 * mib)
    }

    @Test func aVMAboveItsShareGivesBackByBalloonStepsAndTheOtherGrowsAsItComesFree() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 4 * gib,
            [vm(1, demand: 4 * gib, assigned: 3 * gib), vm(2, demand: 4 * gib, assigned: 1 * gib)])
        #expect(answers.map(\.goal) == [2 * gib, 2 * gib])
        #expect(answers[vm: 1].assigned == 3 * gib - step)
        #expect(answers[vm: 2].assigned == 1 * gib + step)
    }

    @Test func withReclaimAtOnceEveryVMIsAtItsShareAfterOnePass() {
        var balancer = MemoryBalancer.warmedUp(BalancerPolicy(contentionReclaim: .atOnce))
        let answers = balancer.pass(
            after: 100, usable: 4 * gib,
            [vm(1, demand: 4 * gib, assigned: 3 * gib), vm(2, demand: 4 * gib, assigned: 1 * gib)])
        #expect(answers.map(\.assigned) == [2 * gib, 2 * gib])
    }

    @Test func growthWhenFreeMemoryIsShortGoesToTheHigherPriorityFirst() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 6 * gib,
            [
                vm(1, demand: 4 * gib, assigned: 1 * gib, priority: 100),
                vm(2, demand: 4 * gib, assigned: 1 * gib, priority: 0),
                vm(3, demand: 4 * gib, assigned: 4 * gib, priority: 50),
            ])
        // 3 GiB above the minimums at weights 101 : 1 : 51; the granule the rounding leaves goes to vm1.
        #expect(answers.map(\.goal) == [1 * gib + 2028 * mib, 1 * gib + 20 * mib, 2 * gib])
        #expect(answers[vm: 3].assigned == 4 * gib - step)
        #expect(answers[vm: 1].assigned == 1 * gib + step)
        #expect(answers[vm: 2].assigned == 1 * gib)
    }

    @Test func atEqualPriorityTheLargerDeficitGrowsFirst() {
        var balancer = MemoryBalancer.warmedUp()
        let answers = balancer.pass(
            after: 100, usable: 6 * gib,
            [
                vm(1, demand: 4 * gib, assigned: 1 * gib),
                vm(2, demand: 1706 * mib, assigned: 1 * gib),
                vm(3, demand: 500 * mib, assigned: 4 * gib),
            ])
        #expect(answers.map(\.goal) == [3 * gib, 2 * gib, 1 * gib])
        #expect(answers[vm: 1].assigned == 1 * gib + step)
        #expect(answers[vm: 2].assigned == 1 * gib)
    }
}

@Suite struct StatusTests {
    /// One VM with 512 MiB minimum, demand 1 GiB (target 1229 MiB), holding 1 GiB, on a host with
    /// `usable` bytes.
    @Test(arguments: [
        (4 * gib, 1229 * mib, MemoryStatus.ok, UInt64(0)),
        (1100 * mib, 1100 * mib, .low, 0),
        (900 * mib, 900 * mib, .warning, 124 * mib),
    ])
    func theStatusSaysWhetherTheAssignmentMeetsTheBufferAndTheDemand(
        usable: UInt64, assigned: UInt64, status: MemoryStatus, paging: UInt64
    ) {
        var balancer = MemoryBalancer.warmedUp()
        let answer = balancer.pass(
            after: 100, usable: usable, [vm(1, demand: 1 * gib, assigned: 1 * gib, minimum: 512 * mib)])[vm: 1]
        #expect(answer.assigned == assigned)
        #expect(answer.status == status)
        #expect(answer.pagingBytes == paging)
    }
}

@Suite struct DeterminismTests {
    @Test func theSameRequestsInAnotherOrderGetTheSameAnswers() {
        let requests = [
            vm(7, demand: 4 * gib, assigned: 1 * gib, priority: 100),
            vm(3, demand: 4 * gib, assigned: 3 * gib, priority: 0),
            vm(5, demand: 2 * gib, assigned: 2 * gib, priority: 50),
            vm(9, demand: 500 * mib, assigned: nil, priority: 50),
            vm(4, demand: 4 * gib, assigned: 1 * gib, priority: 50),
        ]
        let balancer = MemoryBalancer.warmedUp()
        var (first, second) = (balancer, balancer)
        let forward = first.pass(after: 100, usable: 7 * gib, requests)
        let backward = second.pass(after: 100, usable: 7 * gib, requests.reversed())
        #expect(forward.map(\.vm) == requests.map(\.vm))
        #expect(forward.sorted { $0.vm < $1.vm } == backward.sorted { $0.vm < $1.vm })
    }
}
