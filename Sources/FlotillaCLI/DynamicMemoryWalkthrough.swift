// The Hyper-V R2 SP1 dynamic-memory walkthrough as a script: the same steps run live (`local up --scenario`) and in a test.
import ClusterModel
public import FlotillaAPI
public import FlotillaClient

/// The reference walkthrough (../shared/reference/hyperv-r2-sp1-dynamic-memory-ko.txt), an 8 GB
/// host with three VMs of 1 GB startup and 4 GB maximum, as timed steps.
///
/// - Start: Finance, Engineering and Sales demand little and each holds its 1 GB: 3 GB in use.
/// - 15 minutes: under load Finance holds 3 GB and Engineering 2 GB; Sales stays at 1 GB:
///   6 GB, 75 % of the host.
/// - 30 minutes: Engineering has been given the higher priority (90 against Finance's 30), its
///   load has grown, and a fourth VM, Marketing, has started: memory is short, Engineering holds
///   its 3.5 GB target while Finance is held at 2 GB and pages the rest.
///
/// Time is compressed: one walkthrough minute lasts `minute` (a second by default). The loads are
/// the VMs' workloads, as demand traces in their guests' time (which starts when they start).
public enum DynamicMemoryWalkthrough {
    public static let hostMemory: UInt64 = 8 << 30
    /// The host keeps 512 MB for itself: its VMs share the rest.
    public static let usableMemory: UInt64 = hostMemory - (512 << 20)
    /// The node the walkthrough's VMs run on.
    public static let node = "n1"
    /// The last minute of the walkthrough; the state is settled by then.
    public static let lastMinute = 30

    public enum Action: Sendable, Equatable {
        /// Creates the VM (on volume `csv1`, preferring `node`) and starts it on `node`.
        case createAndStart(VMCreation)
        case setMemory(vm: String, MemoryChange)
    }

    public struct Step: Sendable, Equatable {
        /// Walkthrough minutes since the start.
        public var minute: Int
        public var action: Action
        /// What the step is, in the walkthrough's words.
        public var note: String
    }

    /// What each VM should hold at a checkpoint minute, in bytes (`assigned`), from the seed.
    public static let checkpoints: [(minute: Int, assigned: [String: UInt64])] = [
        (2, ["Finance": 1 << 30, "Engineering": 1 << 30, "Sales": 1 << 30]),
        (15, ["Finance": 3 << 30, "Engineering": 2 << 30, "Sales": 1 << 30]),
        (30, ["Finance": 2 << 30, "Engineering": 7 << 29, "Sales": 1 << 30, "Marketing": 1 << 30]),
    ]

    /// The steps, with demand traces in seconds of `minute`-long walkthrough minutes.
    public static func steps(minute: Duration = .seconds(1)) -> [Step] {
        let mib: UInt64 = 1 << 20
        func vm(_ name: String, trace: [(minute: Double, bytes: UInt64)]) -> VMCreation {
            let seconds = Double(minute.components.seconds) + Double(minute.components.attoseconds) / 1e18
            return VMCreation(
                name: name, startup: 1 << 30, minimum: 1 << 30, maximum: 4 << 30, buffer: 20, priority: 50,
                preferredOwners: [node], volume: "csv1",
                workload: WorkloadView(
                    trace: trace.map { WorkloadView.TracePoint(seconds: $0.minute * seconds, bytes: $0.bytes) },
                    dirtyPagesPerSecond: 500))
        }
        // Demands chosen so that demand × 1.2, rounded up to the MiB, is the seed's figure:
        // 2560 MiB → 3 GB, 1706 MiB → 2 GB, 2986 MiB → 3.5 GB; 512 MiB stays at the 1 GB minimum.
        return [
            Step(
                minute: 0,
                action: .createAndStart(vm("Finance", trace: [(0, 512 * mib), (5, 512 * mib), (12, 2560 * mib)])),
                note: "Finance starts with 1 GB (4 GB maximum)"),
            Step(
                minute: 0,
                action: .createAndStart(
                    vm(
                        "Engineering",
                        trace: [(0, 512 * mib), (5, 512 * mib), (12, 1706 * mib), (20, 1706 * mib), (25, 2986 * mib)])),
                note: "Engineering starts with 1 GB (4 GB maximum)"),
            Step(
                minute: 0, action: .createAndStart(vm("Sales", trace: [(0, 512 * mib)])),
                note: "Sales starts with 1 GB (4 GB maximum)"),
            Step(
                minute: 20, action: .setMemory(vm: "Engineering", MemoryChange(priority: 90)),
                note: "Engineering is given the higher priority"),
            Step(
                minute: 20, action: .setMemory(vm: "Finance", MemoryChange(priority: 30)),
                note: "Finance the lower"),
            Step(
                minute: 22, action: .createAndStart(vm("Marketing", trace: [(0, 512 * mib)])),
                note: "a fourth VM, Marketing, starts with 1 GB"),
        ]
    }

    /// One VM at one moment, for the timeline.
    public struct Sample: Sendable, Equatable {
        public var minute: Int
        public var vm: String
        public var demand: UInt64?
        public var assigned: UInt64?
        public var status: String?

        public init(minute: Int, vm: String, demand: UInt64?, assigned: UInt64?, status: String?) {
            self.minute = minute
            self.vm = vm
            self.demand = demand
            self.assigned = assigned
            self.status = status
        }
    }

    /// The timeline as a table: minute, VM, demand, assigned, status, and the host's total then.
    public static func timeline(_ samples: [Sample]) -> String {
        let totals = Dictionary(grouping: samples, by: \.minute).mapValues { $0.reduce(0) { $0 + ($1.assigned ?? 0) } }
        func size(_ bytes: UInt64?) -> String { bytes.map { ByteCount($0).compact } ?? "-" }
        return TextTable.render(
            header: ["MINUTE", "VM", "DEMAND", "ASSIGNED", "STATUS", "HOST TOTAL"],
            rows: samples.map { sample in
                let total = totals[sample.minute] ?? 0
                return [
                    String(sample.minute), sample.vm, size(sample.demand), size(sample.assigned), sample.status ?? "-",
                    "\(ByteCount(total).compact) (\(total * 100 / hostMemory) % of \(ByteCount(hostMemory).compact))",
                ]
            })
    }
}

extension DynamicMemoryWalkthrough {
    /// The minutes the timeline shows.
    public static let sampledMinutes = [0, 5, 10, 15, 20, 22, 25, 30]

    /// Runs the steps against a cluster through `client`, in real time (`minute` per walkthrough
    /// minute), and samples the VMs' memory at `sampledMinutes`; `say` is told each step and
    /// sample as it happens. Returns the samples, for `timeline(_:)`.
    public static func run(
        client: APIClient, minute: Duration = .seconds(1), say: @Sendable (String) -> Void
    ) async throws -> [Sample] {
        let clock = ContinuousClock()
        let start = clock.now
        var steps = self.steps(minute: minute)[...]
        var samples: [Sample] = []
        for sampled in sampledMinutes {
            // The steps due by this minute, then the sample (a moment after them, as the node
            // balances every 100 ms and reports every 200 ms).
            while let step = steps.first, step.minute <= sampled {
                steps.removeFirst()
                try await clock.sleep(until: start + minute * step.minute)
                switch step.action {
                case .createAndStart(let creation):
                    if try await client.vms().contains(where: { $0.name == creation.name }) == false {
                        try await client.createVM(creation)
                    }
                    _ = try await client.startVM(creation.name, on: node)
                case .setMemory(let vm, let change):
                    try await client.setVMMemory(vm, change)
                }
                say("minute \(step.minute): \(step.note)")
            }
            try await clock.sleep(until: start + minute * sampled + minute / 2)
            let vms = try await client.vms().filter { $0.owner == node }.sorted { $0.name < $1.name }
            let rows = vms.map {
                Sample(
                    minute: sampled, vm: $0.name, demand: $0.memory.demand, assigned: $0.memory.assigned,
                    status: $0.memory.status)
            }
            let total = rows.reduce(UInt64(0)) { $0 + ($1.assigned ?? 0) }
            say(
                "minute \(sampled): "
                    + rows.map { "\($0.vm) \($0.assigned.map { ByteCount($0).compact } ?? "-")" }.joined(
                        separator: ", ")
                    + " — \(ByteCount(total).compact) of \(ByteCount(hostMemory).compact)")
            samples += rows
        }
        return samples
    }
}
