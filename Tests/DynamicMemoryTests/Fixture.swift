// Shorthands for balancer tests: byte units, a VM's request in one line, answers looked up by VM.
import ClusterModel
import DynamicMemory

let mib: UInt64 = 1 << 20
let gib: UInt64 = 1 << 30

/// A request with the walkthrough's defaults: 1 GiB startup and minimum, 4 GiB maximum, buffer 20 %, priority 50.
func vm(
    _ id: UInt64, demand: UInt64, assigned: UInt64?, startup: UInt64 = 1 * gib, minimum: UInt64 = 1 * gib,
    maximum: UInt64 = 4 * gib, buffer: Int = 20, priority: Int = 50
) -> MemoryRequest {
    MemoryRequest(
        vm: VMID(id),
        settings: MemorySettings(
            startup: startup, minimum: minimum, maximum: maximum, bufferPercent: buffer, priority: priority),
        demand: demand, assigned: assigned)
}

extension Array where Element == MemoryAssignment {
    /// The answer for `id`; the tests ask only for VMs they passed in.
    subscript(vm id: UInt64) -> MemoryAssignment {
        guard let answer = first(where: { $0.vm == VMID(id) }) else {
            preconditionFailure("no answer for vm\(id) in \(self)")
        }
        return answer
    }

    var totalAssigned: UInt64 { reduce(0) { $0 + $1.assigned } }
}

extension MemoryBalancer {
    /// A pass `milliseconds` after the previous one (or at 0 for the first).
    mutating func pass(after milliseconds: Int64, usable: UInt64, _ requests: [MemoryRequest]) -> [MemoryAssignment] {
        pass(now: (previousPass ?? .zero) + .milliseconds(milliseconds), usable: usable, requests: requests)
    }
}

extension MemoryBalancer {
    /// A balancer whose previous pass ran at time 0 (with no VMs), so the next pass's balloon step
    /// is sized by the time given, not the first pass's full step.
    static func warmedUp(_ policy: BalancerPolicy = .init()) -> MemoryBalancer {
        var balancer = MemoryBalancer(policy: policy)
        _ = balancer.pass(now: .zero, usable: 0, requests: [])
        return balancer
    }
}
