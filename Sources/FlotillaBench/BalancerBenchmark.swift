// `flotilla-bench balancer`: the time of one memory-balancing pass for 10 to 10,000 VMs on a node.
import ArgumentParser
import ClusterModel
import DynamicMemory
import FlotillaTestKit

/// Times `MemoryBalancer.pass` on seeded random VMs in steady state: each pass's answers are the
/// next pass's assignments, and every VM's demand alternates between two values, so every pass
/// has memory to move. One row per VM count and case: every target fits, or memory is short
/// (usable a quarter of the way from the minimums to the maximums).
///
/// Prints the whole markdown table at the end, or nothing if a pass broke the sum rule.
/// Preload the malloc counter (scripts/bench-balancer.sh builds it) to also count allocations.
struct BalancerBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "balancer",
        abstract: "Time of one memory-balancing pass for 10 to 10,000 VMs (a markdown table).")

    @Option(help: "Timed passes per row.")
    var passes = 1000

    @Option(help: "Seed for the VMs' settings and demands.")
    var seed: UInt64 = 1

    @Option(parsing: .upToNextOption, help: "VM counts, one row pair each.")
    var vms = [10, 100, 1000, 10_000]

    func validate() throws {
        guard passes > 0 else { throw ValidationError("--passes must be positive, got \(passes)") }
        guard let bad = vms.first(where: { !(1...10_000).contains($0) }) else { return }
        throw ValidationError("--vms must be 1 to 10,000, got \(bad)")
    }

    func run() throws {
        var rows: [String] = []
        for count in vms {
            for short in [false, true] {
                var random = SimulationRandom(seed: seed &+ UInt64(count))
                var host = BenchmarkHost(vms: count, short: short, random: &random)
                rows.append(try host.measure(passes: passes).row)
            }
        }
        print("| VMs | memory | passes | median per pass | p99 per pass | allocations per pass |")
        print("|---|---|---|---|---|---|")
        for row in rows { print(row) }
    }
}

/// What one row measured.
private struct PassTimes {
    var vms: Int
    var short: Bool
    /// Sorted, fastest first.
    var durations: [Duration]
    var allocationsPerPass: Double?

    var row: String {
        let median = durations[durations.count / 2]
        let p99 = durations[min(durations.count - 1, (durations.count * 99 + 99) / 100 - 1)]
        let allocations = allocationsPerPass.map { "\(Double(Int($0 * 10)) / 10)" } ?? "not counted"
        return "| \(vms) | \(short ? "short" : "all fit") | \(durations.count) | \(Self.text(median)) "
            + "| \(Self.text(p99)) | \(allocations) |"
    }

    /// `12.3 µs` or `1.23 ms`.
    static func text(_ duration: Duration) -> String {
        let nanoseconds = duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        if nanoseconds < 1_000_000 { return "\(Double(nanoseconds / 100) / 10) µs" }
        return "\(Double(nanoseconds / 10_000) / 100) ms"
    }
}

/// A pass broke a rule the benchmark checks on the side (the sum of assignments within usable).
private struct BalancerBenchmarkError: Error, CustomStringConvertible {
    var description: String
}

/// One node's VMs, fed back pass after pass as the agent does.
private struct BenchmarkHost {
    var balancer = MemoryBalancer()
    var requests: [MemoryRequest] = []
    /// Each VM's two demands, alternated pass by pass.
    var demands: [(UInt64, UInt64)] = []
    let usable: UInt64
    let short: Bool
    var now: Duration = .zero
    var pass = 0

    init(vms: Int, short: Bool, random: inout SimulationRandom) {
        let mib: UInt64 = 1 << 20
        for id in 1...vms {
            let minimum = UInt64(random.int(in: 256...2048)) * mib
            let maximum = minimum + UInt64(random.int(in: 0...8192)) * mib
            let settings = MemorySettings(
                startup: minimum, minimum: minimum, maximum: maximum,
                bufferPercent: random.chance(0.5) ? MemorySettings.defaultBufferPercent : random.int(in: 5...200),
                priority: random.int(in: MemorySettings.priorityRange))
            let demand = UInt64(random.int(in: Int(minimum / 2)...Int(maximum)))
            let other = demand / 10 * UInt64(random.int(in: 8...12))
            demands.append((demand, other))
            requests.append(
                MemoryRequest(
                    vm: VMID(UInt64(id)), settings: settings, demand: demand,
                    assigned: UInt64(random.int(in: Int(minimum)...Int(maximum)))))
        }
        let minimums = requests.reduce(0) { $0 + $1.settings.minimum }
        let maximums = requests.reduce(0) { $0 + $1.settings.maximum }
        self.usable = short ? minimums + (maximums - minimums) / 4 : maximums
        self.short = short
    }

    /// Runs untimed passes until the host is in steady state, then times `passes` of them.
    mutating func measure(passes: Int) throws -> PassTimes {
        for _ in 0..<50 { _ = try step() }
        var durations: [Duration] = []
        durations.reserveCapacity(passes)
        var allocations: UInt64? = 0
        let clock = ContinuousClock()
        for _ in 0..<passes {
            let (elapsed, allocated) = try step(clock: clock)
            durations.append(elapsed)
            allocations = allocations.flatMap { total in allocated.map { total + $0 } }
        }
        return PassTimes(
            vms: requests.count, short: short, durations: durations.sorted(),
            allocationsPerPass: allocations.map { Double($0) / Double(passes) })
    }

    /// One pass 100 ms after the previous one: its time and heap allocations (nil when the malloc
    /// counter is not loaded).
    @discardableResult
    mutating func step(clock: ContinuousClock = ContinuousClock()) throws -> (Duration, UInt64?) {
        pass += 1
        now += .milliseconds(100)
        for slot in requests.indices {
            requests[slot].demand = pass % 2 == 0 ? demands[slot].0 : demands[slot].1
        }
        let allocationsBefore = MallocCounter.count
        let start = clock.now
        let answers = balancer.pass(now: now, usable: usable, requests: requests)
        let elapsed = clock.now - start
        let allocationsAfter = MallocCounter.count
        let total = answers.reduce(0) { $0 + $1.assigned }
        let targets = answers.reduce(0) { $0 + $1.target }
        guard total <= usable, short == (targets > usable) else {
            throw BalancerBenchmarkError(
                description: "pass \(pass) of \(requests.count) VMs: \(total) bytes assigned and targets \(targets) "
                    + "for \(usable) usable (memory meant to be \(short ? "short" : "enough"))")
        }
        for (slot, answer) in zip(requests.indices, answers) { requests[slot].assigned = answer.assigned }
        return (elapsed, allocationsAfter.flatMap { after in allocationsBefore.map { after - $0 } })
    }
}
