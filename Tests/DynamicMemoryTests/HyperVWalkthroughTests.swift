// The Hyper-V R2 SP1 dynamic-memory walkthrough (shared/reference, in Korean) on the balancer alone.
import ClusterModel
import DynamicMemory
import Testing

/// One host's VMs driven through the balancer in simulated time, each answer fed back as the next
/// pass's `assigned`, as the node's agent will do.
private struct SimulatedHost {
    let usable: UInt64
    var balancer = MemoryBalancer()
    var now: Duration = .zero
    var guests: [MemoryRequest] = []
    var answers: [MemoryAssignment] = []
    /// Σ assigned after every pass so far.
    var totals: [UInt64] = []

    init(usable: UInt64) { self.usable = usable }

    mutating func start(_ id: VMID, demand: UInt64) {
        let settings = MemorySettings(startup: 1 * gib, minimum: 1 * gib, maximum: 4 * gib)
        guests.append(MemoryRequest(vm: id, settings: settings, demand: demand, assigned: nil))
    }

    mutating func change(_ id: VMID, _ update: (inout MemoryRequest) -> Void) {
        guard let slot = guests.firstIndex(where: { $0.vm == id }) else { preconditionFailure("no guest \(id)") }
        update(&guests[slot])
    }

    /// Passes every 100 ms for `seconds`.
    mutating func run(seconds: Int) {
        for _ in 0..<(seconds * 10) {
            now += .milliseconds(100)
            answers = balancer.pass(now: now, usable: usable, requests: guests)
            for (slot, answer) in zip(guests.indices, answers) where answer.status != .waiting {
                guests[slot].assigned = answer.assigned
            }
            totals.append(answers.totalAssigned)
        }
    }

    func assigned(_ id: VMID) -> UInt64 { guests.first { $0.vm == id }?.assigned ?? 0 }
    func answer(_ id: VMID) -> MemoryAssignment { answers[vm: id.rawValue] }
}

private let finance: VMID = 1
private let engineering: VMID = 2
private let sales: VMID = 3
private let fourth: VMID = 4

@Test func theHyperVWalkthroughOnAnEightGigabyteHost() {
    // An 8 GiB host keeping 512 MiB for itself; three VMs, each 1 GiB startup and minimum, 4 GiB
    // maximum, 20 % buffer, priority 50.
    var host = SimulatedHost(usable: 7680 * mib)
    for id in [finance, engineering, sales] { host.start(id, demand: 512 * mib) }

    // Start: each VM holds its startup memory, 3 GiB in all.
    host.run(seconds: 10)
    #expect([finance, engineering, sales].map(host.assigned) == [1 * gib, 1 * gib, 1 * gib])
    #expect(host.totals.last == 3 * gib)

    // "15 minutes later": load on Finance (demand 2.5 GiB, target 3 GiB) and Engineering (demand
    // 1706 MiB, target 2 GiB). Memory is free, so both are hot-added on the first pass.
    host.change(finance) { $0.demand = 2560 * mib }
    host.change(engineering) { $0.demand = 1706 * mib }
    host.run(seconds: 1)
    #expect(host.totals[host.totals.count - 10] == 6 * gib)
    host.run(seconds: 14)
    #expect([finance, engineering, sales].map(host.assigned) == [3 * gib, 2 * gib, 1 * gib])
    #expect(host.totals.last == 6 * gib)  // 75 % of the 8 GiB host
    #expect([finance, engineering, sales].allSatisfy { host.answer($0).status == .ok })

    // "30 minutes": Engineering now has the higher priority and more load (demand 2986 MiB, target
    // 3.5 GiB), and a fourth VM starts. Targets 3 + 3.5 + 1 + 1 GiB exceed 7.5 GiB: the 3.5 GiB
    // above the four minimums is shared at weights 91 (Engineering) : 31 (Finance) : 51 (the
    // others, who need nothing above their minimum). Engineering's whole need of 2.5 GiB fits
    // under its share; Finance gets the remaining 1 GiB above its minimum.
    host.change(engineering) {
        $0.settings.priority = 90
        $0.demand = 2986 * mib
    }
    host.change(finance) { $0.settings.priority = 30 }
    host.start(fourth, demand: 512 * mib)
    host.run(seconds: 1)
    // The fourth VM is reserved at once, Engineering grows into what was free, and Finance's
    // balloon returns 51 MiB per pass, which Engineering takes as it comes.
    #expect(host.assigned(fourth) == 1 * gib)
    #expect(host.assigned(finance) == 3 * gib - 10 * 51 * mib)
    #expect(host.assigned(engineering) == 7680 * mib - host.assigned(finance) - 2 * gib)
    host.run(seconds: 14)
    #expect(
        [finance, engineering, sales, fourth].map(host.assigned) == [2 * gib, 3584 * mib, 1 * gib, 1 * gib])
    #expect(host.totals.last == 7680 * mib)
    let financeAnswer = host.answer(finance)
    #expect(financeAnswer.status == .warning)
    #expect(financeAnswer.pagingBytes == 2560 * mib - 2 * gib)
    #expect(host.answer(engineering).status == .ok)
    #expect(host.totals.allSatisfy { $0 <= 7680 * mib })
}
