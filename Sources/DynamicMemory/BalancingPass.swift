// One balancing pass: targets, reservations for starting VMs, goals (targets or fair shares), moves.
import ClusterModel

/// A running VM as one pass sees it.
struct RunningVM {
    /// Where it is in the pass's requests.
    let index: Int
    let vm: VMID
    let priority: Int
    let minimum: UInt64
    let target: UInt64
    /// What it holds at the start of the pass, at most its maximum: a lowered maximum applies at once.
    let current: UInt64
    /// Where the pass steers it: in [minimum, target], or at its minimum when the minimums do not fit.
    var goal: UInt64 = 0
    /// Its assignment as the pass builds it. Σ planned ≤ usable once the pass has run.
    var planned: UInt64 = 0

    /// Its weight when memory is short; priority 0 still counts.
    var weight: UInt64 { UInt64(priority) + 1 }
}

/// The working state of `MemoryBalancer.pass`, built and used once.
struct BalancingPass {
    let policy: BalancerPolicy
    let usable: UInt64
    /// How much a VM gives back voluntarily this pass.
    let step: UInt64
    /// VMs the previous pass ballooned down that were still above their goal: they go on giving
    /// back even within the hysteresis band, which only decides whether giving back starts (a short
    /// step must not leave a VM stuck inside the band, above its goal, for good).
    let givingBack: Set<VMID>
    let requests: [MemoryRequest]
    /// Per request.
    let targets: [UInt64]
    var running: [RunningVM] = []
    /// Indexes into `requests` of the VMs starting or arriving.
    var starting: [Int] = []
    /// Per request: a starting VM whose startup memory is reserved this pass.
    var admitted: [Bool]
    /// Σ startup memory of the admitted VMs.
    var reserved: UInt64 = 0

    /// Sums of settings stay below 2⁶⁴ because each is at most 2⁵⁰ bytes and there are fewer than 2¹⁴ VMs.
    static let mostVMs = (1 << 14) - 1

    init(
        policy: BalancerPolicy, usable: UInt64, step: UInt64, requests: [MemoryRequest],
        givingBack: Set<VMID> = []
    ) {
        self.givingBack = givingBack
        precondition(
            requests.count <= Self.mostVMs,
            "memory balancer: \(requests.count) VMs in one pass; at most \(Self.mostVMs) keep the sums within 64 bits")
        self.policy = policy
        self.usable = usable
        self.step = step
        self.requests = requests
        self.admitted = Array(repeating: false, count: requests.count)
        var targets: [UInt64] = []
        targets.reserveCapacity(requests.count)
        running.reserveCapacity(requests.count)
        for (index, request) in requests.enumerated() {
            if let problem = request.settings.problem {
                preconditionFailure(
                    "memory balancer: \(request.vm) has unusable settings \(request.settings): \(problem)")
            }
            let target = Self.target(demand: request.demand, settings: request.settings, granule: policy.granule)
            targets.append(target)
            if let assigned = request.assigned {
                running.append(
                    RunningVM(
                        index: index, vm: request.vm, priority: request.settings.priority,
                        minimum: request.settings.minimum, target: target,
                        current: min(assigned, request.settings.maximum)))
            } else {
                starting.append(index)
            }
        }
        self.targets = targets
        let ids = requests.map(\.vm).sorted()
        for (earlier, later) in zip(ids, ids.dropFirst()) where earlier == later {
            preconditionFailure("memory balancer: \(earlier) appears more than once among \(ids)")
        }
    }

    /// Demand plus the buffer, rounded up to the granule, within [minimum, maximum].
    static func target(demand: UInt64, settings: MemorySettings, granule: UInt64) -> UInt64 {
        // A demand above the maximum has the maximum as its target; capping it first keeps the
        // product below 2⁶² (2⁵⁰ × 2100 %).
        let capped = min(demand, settings.maximum)
        let buffered = (capped * UInt64(100 + settings.bufferPercent) + 99) / 100
        return min(max(alignedUp(buffered, granule), settings.minimum), settings.maximum)
    }

    mutating func run() {
        let minimums = running.reduce(0) { $0 + $1.minimum }
        guard minimums <= usable else { return keepWithinUsable() }
        admitStarting(capacity: usable - minimums)
        let available = usable - reserved
        let short = running.reduce(0) { $0 + $1.target } > available
        if short {
            shareFairly(excess: available - minimums)
        } else {
            for slot in running.indices { running[slot].goal = running[slot].target }
        }
        move(short: short, available: available)
    }

    /// Reserves startup memory, all or nothing, by priority, then the larger first, then VM id; a
    /// VM that does not fit does not stop a smaller one after it.
    mutating func admitStarting(capacity: UInt64) {
        var free = capacity
        let order = starting.sorted { first, second in
            let (a, b) = (requests[first], requests[second])
            if a.settings.priority != b.settings.priority { return a.settings.priority > b.settings.priority }
            if a.settings.startup != b.settings.startup { return a.settings.startup > b.settings.startup }
            return a.vm < b.vm
        }
        for index in order where requests[index].settings.startup <= free {
            let startup = requests[index].settings.startup
            admitted[index] = true
            free -= startup
            reserved += startup
        }
    }

    /// Weighted max-min fairness (water-filling) of `excess`, the memory above the minimums, on
    /// each VM's need above its minimum, weight priority + 1. Exact in integers; each unsaturated
    /// share is rounded down to the granule and the granules this leaves go one each in growth
    /// order, so a goal is within one granule of its exact share.
    mutating func shareFairly(excess: UInt64) {
        let vms = running
        // By need per weight, the VMs that saturate first at the front.
        let order = vms.indices.sorted { first, second in
            let (a, b) = (vms[first], vms[second])
            let (left, right) = ((a.target - a.minimum) * b.weight, (b.target - b.minimum) * a.weight)
            return left != right ? left < right : a.vm < b.vm
        }
        var remaining = excess
        var weight = vms.reduce(0) { $0 + $1.weight }
        var saturated = 0
        for slot in order {
            let vm = vms[slot]
            let need = vm.target - vm.minimum
            // need / vm.weight ≤ remaining / weight: the water level covers this VM's whole need.
            guard !Self.isLess(remaining, times: vm.weight, than: need, times: weight) else { break }
            running[slot].goal = vm.target
            remaining -= need
            weight -= vm.weight
            saturated += 1
        }
        let unsaturated = order[saturated...]
        var leftover = remaining
        for slot in unsaturated {
            let vm = vms[slot]
            let share = weight.dividingFullWidth(remaining.multipliedFullWidth(by: vm.weight)).quotient
            let goal = max(vm.minimum, alignedDown(vm.minimum + share))
            running[slot].goal = goal
            leftover -= goal - vm.minimum
        }
        for slot in inGrowthOrder(Array(unsaturated), by: { $0.target - $0.goal }) {
            let vm = running[slot]
            let next = min(vm.target, alignedDown(vm.goal) + policy.granule)
            if next - vm.goal <= leftover {
                running[slot].goal = next
                leftover -= next - vm.goal
            }
        }
    }

    /// Moves every running VM toward its goal: growth at once; giving back by balloon steps (with
    /// hysteresis while every target fits, or at once under contention when the policy says so),
    /// unless the memory is needed at once.
    mutating func move(short: Bool, available: UInt64) {
        let growsAtOnce = !short || policy.contentionReclaim == .atOnce
        // Where each VM would be on its own: a grower where it is, a VM above its goal one step down.
        for slot in running.indices {
            let vm = running[slot]
            if vm.current <= vm.goal {
                running[slot].planned = vm.current
            } else if short {
                running[slot].planned = growsAtOnce ? vm.goal : max(vm.goal, stepDown(vm.current))
            } else if vm.current - vm.target > hysteresis(vm.target) || givingBack.contains(vm.vm) {
                running[slot].planned = max(vm.goal, stepDown(vm.current))
            } else {
                running[slot].planned = vm.current
            }
        }
        // The growth that must happen now: all of it, or (when reclaim is ballooned under
        // contention) up to the minimum; what free memory does not cover is reclaimed at once.
        func mustHave(_ vm: RunningVM) -> UInt64 {
            guard vm.current < vm.goal else { return vm.planned }
            return growsAtOnce ? vm.goal : max(vm.current, vm.minimum)
        }
        let needed = running.reduce(0) { $0 + mustHave($1) }
        if needed > available { reclaimAtOnce(needed - available) }
        for slot in running.indices { running[slot].planned = mustHave(running[slot]) }
        if !growsAtOnce { growFromFree(available: available) }
    }

    /// Takes `amount` at once from VMs above their goals (never below a goal): the lowest priority
    /// first, then the largest excess, then VM id.
    mutating func reclaimAtOnce(_ amount: UInt64) {
        var needed = amount
        let donors = running.indices.filter { running[$0].planned > running[$0].goal }
        let vms = running
        let order = donors.sorted { first, second in
            let (a, b) = (vms[first], vms[second])
            if a.priority != b.priority { return a.priority < b.priority }
            let (excessA, excessB) = (a.planned - a.goal, b.planned - b.goal)
            return excessA != excessB ? excessA > excessB : a.vm < b.vm
        }
        for slot in order where needed > 0 {
            let vm = running[slot]
            let reduced = max(vm.goal, alignedDown(vm.planned - min(vm.planned - vm.goal, needed)))
            running[slot].planned = reduced
            needed -= min(needed, vm.planned - reduced)
        }
        precondition(
            needed == 0,
            "memory balancer: \(needed) bytes of \(amount) not reclaimable from VMs above their goals "
                + "(usable \(usable), reserved \(reserved)): \(running)")
    }

    /// Gives free memory to VMs below their goals in growth order; the first VM it cannot satisfy
    /// gets what is left, and no VM after it grows.
    mutating func growFromFree(available: UInt64) {
        var free = available - running.reduce(0) { $0 + $1.planned }
        let growers = running.indices.filter { running[$0].planned < running[$0].goal }
        for slot in inGrowthOrder(growers, by: { $0.goal - $0.planned }) {
            let vm = running[slot]
            guard vm.goal - vm.planned > free else {
                free -= vm.goal - vm.planned
                running[slot].planned = vm.goal
                continue
            }
            let grown = max(vm.planned, alignedDown(vm.planned + free))
            running[slot].planned = grown
            break
        }
    }

    /// When even the running VMs' minimums exceed `usable` (it was lowered under them): no VM
    /// starts, each keeps what it holds up to its minimum and is raised toward it by growth order;
    /// if what they hold already exceeds `usable`, each keeps a share in proportion to it.
    mutating func keepWithinUsable() {
        for slot in running.indices {
            running[slot].goal = running[slot].minimum
            running[slot].planned = min(running[slot].current, running[slot].minimum)
        }
        let held = running.reduce(0) { $0 + $1.planned }
        guard held > usable else { return growFromFree(available: usable) }
        for slot in running.indices {
            let share = held.dividingFullWidth(running[slot].planned.multipliedFullWidth(by: usable)).quotient
            running[slot].planned = alignedDown(share)
        }
    }

    /// The answers, in the order of the requests.
    /// The VMs this pass ballooned down that are still above their goal: they give back on.
    var stillGivingBack: Set<VMID> {
        Set(running.filter { $0.planned < $0.current && $0.planned > $0.goal }.map(\.vm))
    }

    var assignments: [MemoryAssignment] {
        var assigned = [UInt64](repeating: 0, count: requests.count)
        var goals = assigned
        for vm in running {
            assigned[vm.index] = vm.planned
            goals[vm.index] = vm.goal
        }
        for index in starting {
            goals[index] = requests[index].settings.startup
            if admitted[index] { assigned[index] = requests[index].settings.startup }
        }
        return requests.indices.map { index in
            let request = requests[index]
            let waiting = request.assigned == nil && !admitted[index]
            let amount = assigned[index]
            let status: MemoryStatus =
                if waiting {
                    .waiting
                } else if amount < request.demand {
                    .warning
                } else if amount < targets[index] {
                    .low
                } else {
                    .ok
                }
            return MemoryAssignment(
                vm: request.vm, assigned: amount, target: targets[index], goal: goals[index], demand: request.demand,
                status: status, pagingBytes: waiting || amount >= request.demand ? 0 : request.demand - amount)
        }
    }

    // MARK: Orders and arithmetic

    /// `slots` by priority (higher first), then `amount` (larger first), then VM id.
    func inGrowthOrder(_ slots: [Int], by amount: (RunningVM) -> UInt64) -> [Int] {
        let vms = running
        return slots.sorted { first, second in
            let (a, b) = (vms[first], vms[second])
            if a.priority != b.priority { return a.priority > b.priority }
            let (amountA, amountB) = (amount(a), amount(b))
            return amountA != amountB ? amountA > amountB : a.vm < b.vm
        }
    }

    /// One balloon step below `current`, on a granule, never above `current`.
    func stepDown(_ current: UInt64) -> UInt64 {
        min(current, Self.alignedUp(current - min(current, step), policy.granule))
    }

    /// How far above its target a VM may stay while every target fits.
    func hysteresis(_ target: UInt64) -> UInt64 {
        max(policy.hysteresisFloor, target * UInt64(policy.hysteresisPercent) / 100)
    }

    func alignedDown(_ bytes: UInt64) -> UInt64 { bytes / policy.granule * policy.granule }

    static func alignedUp(_ bytes: UInt64, _ granule: UInt64) -> UInt64 {
        let (sum, overflow) = bytes.addingReportingOverflow(granule - 1)
        return overflow ? bytes / granule * granule : sum / granule * granule
    }

    /// a × x < b × y, without overflow.
    static func isLess(_ a: UInt64, times x: UInt64, than b: UInt64, times y: UInt64) -> Bool {
        let (left, right) = (a.multipliedFullWidth(by: x), b.multipliedFullWidth(by: y))
        return left.high != right.high ? left.high < right.high : left.low < right.low
    }
}
