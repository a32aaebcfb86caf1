// A VM's workload: demand over time for each shape, what is refused and why, and its binary form.
import ClusterModel
import Testing

private let gib: UInt64 = 1 << 30

@Test func aRampRisesInAStraightLineThenHolds() {
    let ramp = Workload(demand: .ramp(from: gib, to: 3 * gib, over: .seconds(60)))
    #expect(ramp.demand(at: .zero) == gib)
    #expect(ramp.demand(at: .seconds(30)) == 2 * gib)
    #expect(ramp.demand(at: .seconds(60)) == 3 * gib)
    #expect(ramp.demand(at: .seconds(600)) == 3 * gib)
    #expect(ramp.demand(at: .seconds(-5)) == gib, "before the start counts as the start")
    let down = Workload(demand: .ramp(from: 3 * gib, to: gib, over: .seconds(10)))
    #expect(down.demand(at: .seconds(5)) == 2 * gib)
}

@Test func aPeriodGoesUpAndBackDownOncePerPeriod() {
    let wave = Workload(demand: .periodic(low: gib, high: 3 * gib, period: .seconds(100)))
    #expect(wave.demand(at: .zero) == gib)
    #expect(wave.demand(at: .seconds(25)) == 2 * gib)
    #expect(wave.demand(at: .seconds(50)) == 3 * gib)
    #expect(wave.demand(at: .seconds(75)) == 2 * gib)
    #expect(wave.demand(at: .seconds(100)) == gib)
    #expect(wave.demand(at: .seconds(1050)) == 3 * gib)
}

@Test func aTraceJoinsItsPointsAndHoldsItsEnds() {
    let trace = Workload(
        demand: .trace([
            .init(at: .seconds(10), demand: gib), .init(at: .seconds(20), demand: 3 * gib),
            .init(at: .seconds(40), demand: 2 * gib),
        ]))
    #expect(trace.demand(at: .zero) == gib)
    #expect(trace.demand(at: .seconds(15)) == 2 * gib)
    #expect(trace.demand(at: .seconds(20)) == 3 * gib)
    #expect(trace.demand(at: .seconds(30)) == 5 * gib / 2)
    #expect(trace.demand(at: .seconds(99)) == 2 * gib)
}

@Test(arguments: [
    (Workload.Demand.constant(MemorySettings.largestBytes + 1), "demand 1048576.0 GiB is above the limit"),
    (.ramp(from: gib, to: gib, over: .zero), "a ramp's length must be more than 0 s"),
    (.periodic(low: 2 * gib, high: gib, period: .seconds(10)), "a period's low 2.0 GiB is above its high 1.0 GiB"),
    (.trace([]), "a trace needs at least one point"),
    (
        .trace([.init(at: .seconds(5), demand: gib), .init(at: .seconds(5), demand: gib)]),
        "trace point 2 at 5.0 seconds is not after point 1"
    ),
    (.trace([.init(at: .seconds(-1), demand: gib)]), "trace point 1 is at -1.0 seconds"),
])
func badWorkloadsSayWhatIsWrong(_ demand: Workload.Demand, _ problem: String) {
    #expect(
        Workload(demand: demand).problem?.hasPrefix(problem) == true, "\(Workload(demand: demand).problem ?? "none")")
}

@Test func aDirtyRateAboveTheLimitIsRefused() {
    #expect(Workload(demand: .constant(gib), dirtyPagesPerSecond: Workload.maxDirtyPagesPerSecond).problem == nil)
    #expect(Workload(demand: .constant(gib), dirtyPagesPerSecond: Workload.maxDirtyPagesPerSecond + 1).problem != nil)
}

@Test(arguments: [
    Workload(demand: .constant(gib), dirtyPagesPerSecond: 0),
    Workload(demand: .ramp(from: gib, to: 3 * gib, over: .milliseconds(1500))),
    Workload(demand: .periodic(low: gib / 2, high: 2 * gib, period: .seconds(120)), dirtyPagesPerSecond: 50_000),
    Workload(demand: .trace([.init(at: .zero, demand: gib), .init(at: .milliseconds(30_250), demand: 5 * gib / 2)])),
])
func aWorkloadReadsBackAsItWasWritten(_ workload: Workload) throws {
    var writer = ByteWriter()
    workload.encode(into: &writer)
    var reader = ByteReader(writer.bytes)
    #expect(try Workload(from: &reader) == workload)
    #expect(reader.isAtEnd)
    var unknown = ByteReader([9] + writer.bytes.dropFirst())
    #expect(throws: WireFormatError.self) { try Workload(from: &unknown) }
}
