// Tests of the linearizability checker on hand-made histories, good and bad, with pending operations.
import FlotillaTestKit
import Testing

/// A completed operation on key 1 by client `client`, between two event times.
private func op(
    _ client: UInt64, _ operation: KeyValueOperation, _ start: UInt64, _ end: UInt64?, _ result: KeyValueResult? = nil
) -> HistoryOperation {
    let result = end == nil ? nil : (result ?? .written)
    return HistoryOperation(client: client, operation: operation, invokedAt: start, returnedAt: end, result: result)
}

private func isLinearizable(_ history: [HistoryOperation]) -> Bool {
    let report = LinearizabilityChecker().check(history)
    switch report.verdict {
    case .linearizable: return true
    case .notLinearizable: return false
    case .undecided: Issue.record("the checker gave up on a tiny history"); return false
    }
}

@Test func sequentialWriteThenReadIsLinearizable() {
    #expect(
        isLinearizable([
            op(1, .put(key: 1, value: 5), 1, 2),
            op(2, .get(key: 1), 3, 4, .read(5)),
        ]))
}

@Test func readOfANeverWrittenKeySeesNil() {
    #expect(isLinearizable([op(1, .get(key: 1), 1, 2, .read(nil))]))
    #expect(!isLinearizable([op(1, .get(key: 1), 1, 2, .read(9))]))
}

@Test func staleReadAfterANewerWriteCompletedIsNotLinearizable() {
    #expect(
        !isLinearizable([
            op(1, .put(key: 1, value: 1), 1, 2),
            op(1, .put(key: 1, value: 2), 3, 4),
            op(2, .get(key: 1), 5, 6, .read(1)),
        ]))
}

@Test func aReadConcurrentWithAWriteMaySeeEitherValue() {
    #expect(
        isLinearizable([
            op(1, .put(key: 1, value: 1), 1, 2),
            op(1, .put(key: 1, value: 2), 3, 10),
            op(2, .get(key: 1), 4, 5, .read(1)),
            op(3, .get(key: 1), 6, 7, .read(2)),
        ]))
}

@Test func onceAReaderSawTheNewValueALaterReaderMustNotSeeTheOld() {
    #expect(
        !isLinearizable([
            op(1, .put(key: 1, value: 1), 1, 2),
            op(1, .put(key: 1, value: 2), 3, 10),
            op(2, .get(key: 1), 4, 5, .read(2)),
            op(3, .get(key: 1), 6, 7, .read(1)),
        ]))
}

@Test func concurrentWritesMustBeSeenInOneOrder() {
    let writes = [op(1, .put(key: 1, value: 1), 1, 4), op(2, .put(key: 1, value: 2), 2, 3)]
    #expect(isLinearizable(writes + [op(3, .get(key: 1), 5, 6, .read(1)), op(3, .get(key: 1), 7, 8, .read(1))]))
    #expect(!isLinearizable(writes + [op(3, .get(key: 1), 5, 6, .read(1)), op(3, .get(key: 1), 7, 8, .read(2))]))
}

@Test func aPendingWriteMayHaveHappenedOrNot() {
    let pending = op(1, .put(key: 1, value: 7), 1, nil)
    #expect(isLinearizable([pending, op(2, .get(key: 1), 5, 6, .read(7))]))
    #expect(isLinearizable([pending, op(2, .get(key: 1), 5, 6, .read(nil))]))
    // Once it has been observed it cannot be undone.
    #expect(!isLinearizable([pending, op(2, .get(key: 1), 5, 6, .read(7)), op(2, .get(key: 1), 7, 8, .read(nil))]))
    // It cannot take effect before it was invoked.
    #expect(!isLinearizable([op(2, .get(key: 1), 1, 2, .read(7)), op(1, .put(key: 1, value: 7), 3, nil)]))
}

@Test func aPendingReadConstrainsNothing() {
    #expect(
        isLinearizable([
            op(1, .put(key: 1, value: 3), 1, 2),
            op(2, .get(key: 1), 3, nil),
        ]))
}

@Test func keysAreCheckedIndependentlyAndTheViolationNamesTheKey() throws {
    let history = [
        op(1, .put(key: 1, value: 1), 1, 2),
        op(2, .put(key: 2, value: 1), 3, 4),
        op(2, .put(key: 2, value: 2), 5, 6),
        op(1, .get(key: 1), 7, 8, .read(1)),
        op(3, .get(key: 2), 9, 10, .read(1)),
    ]
    let report = LinearizabilityChecker().check(history)
    guard case .notLinearizable(let violation) = report.verdict else {
        Issue.record("expected a violation, got \(report.verdict)")
        return
    }
    #expect(violation.key == 2)
    #expect(violation.operations.count == 3)
    #expect(violation.description.contains("get k2"))
    #expect(report.keysChecked == 2)
}

@Test func theSearchGivesUpWhenItsBudgetRunsOut() {
    let history =
        (0..<8).map { op($0, .put(key: 1, value: $0), $0, 100 + $0) } + [
            op(9, .get(key: 1), 200, 201, .read(42))
        ]
    let report = LinearizabilityChecker(maxSearchStepsPerKey: 10).check(history)
    #expect(report.verdict == .undecided(key: 1, searchSteps: 11))
}

/// Histories produced by a real atomic register are linearizable; corrupting one read is not.
@Test(arguments: 0..<20 as Range<UInt64>)
func generatedRegisterHistories(seed: UInt64) {
    var random = SimulationRandom(seed: seed)
    var history: [HistoryOperation] = []
    var registers: [UInt32: UInt64] = [:]
    // Each operation takes effect at one instant (its linearization point, 100 apart) and its
    // interval is stretched around it at random, so operations overlap as concurrent clients'
    // do. Times are scaled and tagged with the operation's number so no two are equal.
    for step in 0..<60 as Range<UInt64> {
        let point = 1_000 + 100 * step
        let key = UInt32(random.int(in: 1...3))
        let start = (point - UInt64(random.int(in: 1...250))) * 64 + step
        let end = (point + UInt64(random.int(in: 1...250))) * 64 + step
        if random.chance(0.5) {
            registers[key] = step
            let pending = random.chance(0.1)
            history.append(op(step % 5, .put(key: key, value: step), start, pending ? nil : end))
        } else {
            history.append(op(step % 5, .get(key: key), start, end, .read(registers[key])))
        }
    }
    #expect(isLinearizable(history))

    guard let read = history.firstIndex(where: { if case .read = $0.result { true } else { false } }) else { return }
    var corrupted = history
    corrupted[read].result = .read(999_999)
    #expect(!isLinearizable(corrupted))
}
