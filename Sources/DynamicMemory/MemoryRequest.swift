// What the balancer is told about each VM for one pass, and what it answers (DESIGN.md §10).
public import ClusterModel

/// What the balancer is told about one VM for a pass.
public struct MemoryRequest: Hashable, Sendable {
    /// Unique within one pass.
    public var vm: VMID
    /// Must be consistent (`settings.problem == nil`); the balancer stops on anything else.
    public var settings: MemorySettings
    /// The guest's current demand (committed memory), bytes.
    public var demand: UInt64
    /// What the VM holds now; nil for a VM that is starting or arriving (it needs its startup
    /// memory reserved before it may run). Taken as the starting point even when the settings
    /// changed since it was assigned.
    public var assigned: UInt64?

    public init(vm: VMID, settings: MemorySettings, demand: UInt64, assigned: UInt64?) {
        self.vm = vm
        self.settings = settings
        self.demand = demand
        self.assigned = assigned
    }
}

/// The balancer's answer for one VM.
public struct MemoryAssignment: Hashable, Sendable {
    public var vm: VMID
    /// What the VM may hold after this pass. 0 for a starting VM that must wait; its startup
    /// memory exactly for one that may start now. A multiple of the policy's granule unless it is
    /// one of the VM's own settings (minimum, startup, maximum) or the assignment it came with.
    public var assigned: UInt64
    /// Demand plus the buffer, rounded up to the granule, within [minimum, maximum].
    public var target: UInt64
    /// Where the balancer is steering the VM: its target while every target fits, its weighted
    /// fair share when memory is short, its minimum when even the minimums do not fit, its
    /// startup memory for a starting VM. `assigned` reaches it at once when growing and by
    /// balloon steps when shrinking.
    public var goal: UInt64
    public var demand: UInt64
    public var status: MemoryStatus
    /// How much of the demand the assignment does not cover: demand − assigned, or 0 (always 0
    /// while waiting, since a VM that does not run does not page).
    public var pagingBytes: UInt64

    public init(
        vm: VMID, assigned: UInt64, target: UInt64, goal: UInt64, demand: UInt64, status: MemoryStatus,
        pagingBytes: UInt64
    ) {
        self.vm = vm
        self.assigned = assigned
        self.target = target
        self.goal = goal
        self.demand = demand
        self.status = status
        self.pagingBytes = pagingBytes
    }
}
