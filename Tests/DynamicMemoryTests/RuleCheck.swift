// The balancer's rules as checks on one pass's requests and answers, from the rules' words alone.
import ClusterModel
import DynamicMemory

/// What one pass broke, each problem prefixed with its rule's number (MemoryBalancer's list).
///
/// The checks restate the rules rather than re-run the balancer: a goal is checked for weighted
/// max-min fairness pairwise, a move against the goal and the balloon step, an at-once reclaim
/// against there being no free memory left.
struct RuleCheck {
    let policy: BalancerPolicy
    let usable: UInt64
    /// Time since the previous pass as the balancer counts it (at most the longest step).
    let elapsed: Duration
    let requests: [MemoryRequest]
    let answers: [MemoryAssignment]

    /// `rate` bytes per second for `duration` (whole milliseconds in these tests).
    static func bytes(_ rate: UInt64, for duration: Duration) -> UInt64 {
        let milliseconds =
            UInt64(duration.components.seconds) * 1000
            + UInt64(duration.components.attoseconds / 1_000_000_000_000_000)
        return rate * milliseconds / 1000
    }

    static func target(_ request: MemoryRequest, granule: UInt64) -> UInt64 {
        let settings = request.settings
        let wanted = min(request.demand, settings.maximum) * UInt64(100 + settings.bufferPercent)
        let withBuffer = wanted / 100 + (wanted % 100 == 0 ? 0 : 1)
        let rounded = (withBuffer + granule - 1) / granule * granule
        return min(settings.maximum, max(settings.minimum, rounded))
    }

    func hysteresis(_ target: UInt64) -> UInt64 {
        max(policy.hysteresisFloor, target * UInt64(policy.hysteresisPercent) / 100)
    }

    /// Where a VM holding `current` above its goal ends up by its own balloon step.
    func stepped(_ current: UInt64, goal: UInt64) -> UInt64 {
        let step = Self.bytes(policy.balloonRate, for: elapsed)
        let granule = policy.granule
        let down = current - min(current, step)
        return max(goal, min(current, (down + granule - 1) / granule * granule))
    }

    var problems: [String] {
        guard answers.map(\.vm) == requests.map(\.vm) else { return ["answers not in the order of the requests"] }
        var found: [String] = []
        let granule = policy.granule
        let pairs = Array(zip(requests, answers))
        let running = pairs.filter { $0.0.assigned != nil }
        let admitted = pairs.filter { $0.0.assigned == nil && $0.1.status != .waiting }
        for (request, answer) in pairs {
            let settings = request.settings
            let vm = request.vm
            if answer.target != Self.target(request, granule: granule) {
                found.append("1: \(vm)'s target \(answer.target) should be \(Self.target(request, granule: granule))")
            }
            let onGranule = answer.assigned % granule == 0
            let asSetting = [settings.minimum, settings.startup, settings.maximum, request.assigned].contains(
                answer.assigned)
            if !onGranule && !asSetting { found.append("2: \(vm)'s assignment \(answer.assigned) is off the granule") }
            if answer.assigned > settings.maximum { found.append("3: \(vm) is above its maximum") }
            if request.assigned == nil {
                let waits = answer.status == .waiting && answer.assigned == 0 && answer.pagingBytes == 0
                if !waits && answer.assigned != settings.startup {
                    found.append("4: starting \(vm) got \(answer.assigned), not its startup memory or nothing")
                }
            } else if answer.status == .waiting {
                found.append("4: running \(vm) is told to wait")
            }
            if answer.status != .waiting {
                let status: MemoryStatus =
                    answer.assigned < request.demand ? .warning : answer.assigned < answer.target ? .low : .ok
                let paging = request.demand - min(request.demand, answer.assigned)
                if answer.status != status || answer.pagingBytes != paging {
                    found.append("8: \(vm) is \(answer.status) paging \(answer.pagingBytes), not \(status) \(paging)")
                }
            }
        }
        let total = answers.reduce(0) { $0 + $1.assigned }
        if total > usable { found.append("2: \(total) assigned, more than usable \(usable)") }
        let minimums = running.reduce(0) { $0 + $1.0.settings.minimum }
        let reserved = admitted.reduce(0) { $0 + $1.1.assigned }
        if minimums > usable {
            found += overcommitted(running: running, reserved: reserved, free: usable - min(usable, total))
            return found
        }
        for (request, answer) in pairs where answer.status == .waiting {
            if request.settings.startup <= usable - minimums - reserved {
                found.append("4: \(request.vm) waits though its startup memory fits")
            }
        }
        for (request, answer) in running where answer.assigned < request.settings.minimum {
            found.append("3: \(request.vm) is below its minimum")
        }
        guard minimums + reserved <= usable else {
            return found + ["4: reservations \(reserved) take running VMs' minimums \(minimums)"]
        }
        let available = usable - reserved
        let free = usable - min(usable, total)
        if running.reduce(0, { $0 + $1.1.target }) <= available {
            found += whenAllFit(running: running, free: free)
        } else {
            found += whenShort(running: running, available: available, free: free)
        }
        return found
    }

    func overcommitted(running: [(MemoryRequest, MemoryAssignment)], reserved: UInt64, free: UInt64) -> [String] {
        var found: [String] = []
        if reserved > 0 { found.append("8: a VM starts though the minimums do not fit") }
        let held = running.reduce(0) { $0 + min($1.0.assigned!, $1.0.settings.minimum) }
        for (request, answer) in running {
            let holds = min(request.assigned!, request.settings.minimum)
            if answer.assigned > request.settings.minimum {
                found.append("8: \(request.vm) is above its minimum while the minimums do not fit")
            }
            if held <= usable && answer.assigned < holds {
                found.append("8: \(request.vm) lost memory below its minimum though what they hold fits")
            }
            if held <= usable && answer.assigned < request.settings.minimum && free >= policy.granule {
                found.append("8: \(request.vm) is left below its minimum though \(free) bytes are free")
            }
        }
        return found
    }

    func whenAllFit(running: [(MemoryRequest, MemoryAssignment)], free: UInt64) -> [String] {
        var found: [String] = []
        for (request, answer) in running {
            let current = min(request.assigned!, request.settings.maximum)
            let target = answer.target
            if answer.goal != target { found.append("5: \(request.vm)'s goal is not its target though all fit") }
            if current <= target {
                if answer.assigned != target {
                    found.append("5: \(request.vm) got \(answer.assigned), not its target \(target) at once")
                }
                continue
            }
            // Above the band it steps down; within it, it stays — or steps on, if it was already giving back.
            let step = stepped(current, goal: target)
            let own = current - target > hysteresis(target) ? step : current
            if answer.assigned < target || answer.assigned > own {
                found.append("5: \(request.vm) went from \(current) to \(answer.assigned), outside [\(target), \(own)]")
            }
            if answer.assigned < step && free >= policy.granule {
                found.append("5: \(request.vm) was reclaimed at once though \(free) bytes are free")
            }
        }
        return found
    }

    func whenShort(running: [(MemoryRequest, MemoryAssignment)], available: UInt64, free: UInt64) -> [String] {
        var found: [String] = []
        let granule = policy.granule
        let goals = running.reduce(0) { $0 + $1.1.goal }
        if goals > available || available - goals >= granule {
            found.append("6: the goals sum to \(goals), not all of the \(available) available")
        }
        for (request, answer) in running where answer.goal < request.settings.minimum || answer.goal > answer.target {
            found.append("6: \(request.vm)'s goal \(answer.goal) is outside [minimum, target]")
        }
        // Max-min fairness: no VM's share per weight exceeds an unsaturated VM's (one granule each way).
        for (short, shortAnswer) in running where shortAnswer.goal < shortAnswer.target {
            let shortShare = shortAnswer.goal - short.settings.minimum + granule
            for (other, otherAnswer) in running where otherAnswer.goal >= other.settings.minimum + granule {
                let otherShare = otherAnswer.goal - other.settings.minimum - granule
                if otherShare * weight(short) > shortShare * weight(other) {
                    found.append("6: \(other.vm)'s share is unfairly above \(short.vm)'s")
                }
            }
        }
        if policy.contentionReclaim == .atOnce {
            for (request, answer) in running where answer.assigned != answer.goal {
                found.append("6: \(request.vm) is not at its share with reclaim at once")
            }
            return found
        }
        for (request, answer) in running {
            let current = min(request.assigned!, request.settings.maximum)
            if current > answer.goal {
                let own = stepped(current, goal: answer.goal)
                if answer.assigned < answer.goal || answer.assigned > own {
                    found.append(
                        "6: \(request.vm) went from \(current) to \(answer.assigned), not toward its goal by steps")
                }
                if answer.assigned < own && free >= granule {
                    found.append("6: \(request.vm) was reclaimed at once though \(free) bytes are free")
                }
            } else if answer.assigned < max(current, request.settings.minimum) || answer.assigned > answer.goal {
                found.append("6: \(request.vm) went from \(current) to \(answer.assigned), not toward its goal")
            }
        }
        // Rule 7: growth goes in order; after the first VM left short, none grows.
        let growers = running.filter {
            max(min($0.0.assigned!, $0.0.settings.maximum), $0.0.settings.minimum) < $0.1.goal
        }
        let ordered = growers.sorted { first, second in
            let (a, b) = (first.0.settings.priority, second.0.settings.priority)
            if a != b { return a > b }
            let (deficitA, deficitB) = (deficit(first), deficit(second))
            return deficitA != deficitB ? deficitA > deficitB : first.0.vm < second.0.vm
        }
        if let firstShort = ordered.firstIndex(where: { $0.1.assigned < $0.1.goal }) {
            if free >= granule { found.append("7: \(ordered[firstShort].0.vm) is left short though memory is free") }
            for (request, answer) in ordered[(firstShort + 1)...]
            where answer.assigned != max(min(request.assigned!, request.settings.maximum), request.settings.minimum) {
                found.append("7: \(request.vm) grew after \(ordered[firstShort].0.vm) was left short")
            }
        }
        return found
    }

    func weight(_ request: MemoryRequest) -> UInt64 { UInt64(request.settings.priority) + 1 }

    func deficit(_ pair: (MemoryRequest, MemoryAssignment)) -> UInt64 {
        let floor = max(min(pair.0.assigned!, pair.0.settings.maximum), pair.0.settings.minimum)
        return pair.1.goal - floor
    }

    /// At a fixed point every running VM is at its goal, or while all fit within its band above
    /// its target (unless even the minimums do not fit).
    static func settled(
        _ answers: [MemoryAssignment], requests: [MemoryRequest], policy: BalancerPolicy, usable: UInt64
    ) -> [String] {
        let running = zip(requests, answers).filter { $0.1.status != .waiting }
        guard running.reduce(0, { $0 + $1.0.settings.minimum }) <= usable else { return [] }
        let check = RuleCheck(policy: policy, usable: usable, elapsed: .zero, requests: requests, answers: answers)
        return running.compactMap { request, answer in
            let inBand =
                answer.goal == answer.target && answer.assigned > answer.target
                && answer.assigned - answer.target <= check.hysteresis(answer.target)
            return answer.assigned == answer.goal || inBand
                ? nil : "settled: \(request.vm) holds \(answer.assigned), not its goal \(answer.goal)"
        }
    }
}
