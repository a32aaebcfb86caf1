// The bodies of the API's write requests, as the server reads them and every client writes them.
public import ClusterModel

/// What `POST /v1/vms` takes: a new VM's name, memory (bytes), placement hints and disk volume.
///
/// Sizes are written as numbers of bytes; they are read as numbers or as text such as `"1G"`.
public struct VMCreation: Codable, Sendable, Equatable {
    public var name: String
    public var startup: UInt64
    public var minimum: UInt64?
    public var maximum: UInt64?
    /// Percent kept above demand (default 20).
    public var buffer: Int?
    /// 0–100 (default 50).
    public var priority: Int?
    /// `high`, `medium` (default), `low` or `none`.
    public var restartPriority: String?
    public var preferredOwners: [String]?
    public var antiAffinityClass: String?
    /// The volume the VM's disk file lives on.
    public var volume: String
    /// The disk's file on the volume; by default the lower-cased name + `.vhdx`.
    public var diskFile: String?
    /// What its guest does with memory; by default half its startup memory, 500 dirty pages/s.
    public var workload: WorkloadView?
    /// Whether a live migration that does not converge throttles the guest (default false: it is aborted).
    public var autoConverge: Bool?
    /// What runs its guest (default simulated).
    public var driver: GuestDriverView?

    public init(
        name: String, startup: UInt64, minimum: UInt64? = nil, maximum: UInt64? = nil, buffer: Int? = nil,
        priority: Int? = nil, restartPriority: String? = nil, preferredOwners: [String]? = nil,
        antiAffinityClass: String? = nil, volume: String, diskFile: String? = nil, workload: WorkloadView? = nil,
        autoConverge: Bool? = nil, driver: GuestDriverView? = nil
    ) {
        self.driver = driver
        self.workload = workload
        self.autoConverge = autoConverge
        self.name = name
        self.startup = startup
        self.minimum = minimum
        self.maximum = maximum
        self.buffer = buffer
        self.priority = priority
        self.restartPriority = restartPriority
        self.preferredOwners = preferredOwners
        self.antiAffinityClass = antiAffinityClass
        self.volume = volume
        self.diskFile = diskFile
    }
}

/// What `PATCH /v1/vms/{name}/memory` takes: only the settings to change (sizes as for `VMCreation`).
public struct MemoryChange: Codable, Sendable, Equatable {
    public var startup: UInt64?
    public var minimum: UInt64?
    public var maximum: UInt64?
    public var buffer: Int?
    public var priority: Int?

    public init(
        startup: UInt64? = nil, minimum: UInt64? = nil, maximum: UInt64? = nil, buffer: Int? = nil, priority: Int? = nil
    ) {
        self.startup = startup
        self.minimum = minimum
        self.maximum = maximum
        self.buffer = buffer
        self.priority = priority
    }
}

extension VMCreation {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            name: try container.decode(String.self, forKey: .name),
            startup: try container.decode(SizeField.self, forKey: .startup).bytes,
            minimum: try container.decodeIfPresent(SizeField.self, forKey: .minimum)?.bytes,
            maximum: try container.decodeIfPresent(SizeField.self, forKey: .maximum)?.bytes,
            buffer: try container.decodeIfPresent(Int.self, forKey: .buffer),
            priority: try container.decodeIfPresent(Int.self, forKey: .priority),
            restartPriority: try container.decodeIfPresent(String.self, forKey: .restartPriority),
            preferredOwners: try container.decodeIfPresent([String].self, forKey: .preferredOwners),
            antiAffinityClass: try container.decodeIfPresent(String.self, forKey: .antiAffinityClass),
            volume: try container.decode(String.self, forKey: .volume),
            diskFile: try container.decodeIfPresent(String.self, forKey: .diskFile),
            workload: try container.decodeIfPresent(WorkloadView.self, forKey: .workload),
            autoConverge: try container.decodeIfPresent(Bool.self, forKey: .autoConverge),
            driver: try container.decodeIfPresent(GuestDriverView.self, forKey: .driver))
    }
}

extension MemoryChange {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            startup: try container.decodeIfPresent(SizeField.self, forKey: .startup)?.bytes,
            minimum: try container.decodeIfPresent(SizeField.self, forKey: .minimum)?.bytes,
            maximum: try container.decodeIfPresent(SizeField.self, forKey: .maximum)?.bytes,
            buffer: try container.decodeIfPresent(Int.self, forKey: .buffer),
            priority: try container.decodeIfPresent(Int.self, forKey: .priority))
    }
}

/// A size in a request body: a number of bytes, or text such as `"512M"` (`ByteCount(parsing:)`).
private struct SizeField: Decodable {
    var bytes: UInt64

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let bytes = try? container.decode(UInt64.self) {
            self.bytes = bytes
            return
        }
        let text = try container.decode(String.self)
        guard let size = ByteCount(parsing: text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: ByteCount.problem(text, what: "size"))
        }
        self.bytes = size.bytes
    }
}

/// What `PUT /v1/config/{name}` takes.
public struct SettingWrite: Codable, Sendable, Equatable {
    public var value: String

    public init(value: String) { self.value = value }
}

/// What `POST /v1/members` takes: a new member's id and addresses (it joins as a learner).
public struct MemberAddition: Codable, Sendable, Equatable {
    /// `n4`.
    public var id: String
    /// host:port of its peer RPC.
    public var peer: String
    /// host:port of its client API.
    public var client: String

    public init(id: String, peer: String, client: String) {
        self.id = id
        self.peer = peer
        self.client = client
    }
}

/// What `POST /v1/leader/transfer` takes: the node to hand leadership to.
public struct LeadershipTransfer: Codable, Sendable, Equatable {
    public var to: String

    public init(to: String) { self.to = to }
}

/// What `POST /v1/vms/{name}/migrate` takes: the target node, or none for placement to choose.
public struct VMMigration: Codable, Sendable, Equatable {
    public var to: String?

    public init(to: String? = nil) { self.to = to }
}

/// What `PUT /v1/vms/{name}/auto-converge` takes: whether a live migration of the VM that does not
/// converge throttles the guest until it does (true) or is aborted (false, the default).
public struct AutoConvergeChange: Codable, Sendable, Equatable {
    public var enabled: Bool

    public init(enabled: Bool) { self.enabled = enabled }
}

/// What `POST /v1/vms/{name}/start` takes: the node to start it on; none lets placement choose.
public struct VMStart: Codable, Sendable, Equatable {
    public var node: String?

    public init(node: String? = nil) { self.node = node }
}

/// What `POST /v1/volumes` takes: a new Cluster Shared Volume and its first coordinator.
public struct VolumeCreation: Codable, Sendable, Equatable {
    public var id: String
    public var coordinator: String
    /// Under the shared root; `volumes/<id>` by default.
    public var path: String?

    public init(id: String, coordinator: String, path: String? = nil) {
        self.id = id
        self.coordinator = coordinator
        self.path = path
    }
}

/// What `POST /v1/volumes/{id}/move` takes: the volume's new coordinator.
public struct VolumeMove: Codable, Sendable, Equatable {
    public var coordinator: String

    public init(coordinator: String) { self.coordinator = coordinator }
}

/// What `POST /v1/volumes/{id}/direct-io` takes: whether the node's direct path is broken.
public struct DirectIOChange: Codable, Sendable, Equatable {
    public var broken: Bool

    public init(broken: Bool) { self.broken = broken }
}

/// What `POST /v1/nodes` takes: a node recording itself (every node sends it for itself).
public struct NodeRegistrationRequest: Codable, Sendable, Equatable {
    public var id: String
    public var peer: String
    public var client: String
    /// `voter` or `learner`.
    public var role: String
    public var usableMemory: UInt64

    public init(id: String, peer: String, client: String, role: String, usableMemory: UInt64) {
        self.id = id
        self.peer = peer
        self.client = client
        self.role = role
        self.usableMemory = usableMemory
    }
}

/// A VM's workload as the API shows it and `PUT /v1/vms/{name}/workload` takes it: exactly one of
/// `demand`, `ramp`, `periodic` and `trace`, and optionally `dirtyPagesPerSecond`.
///
/// Sizes are written as numbers of bytes and read as numbers or text (`"2G"`); durations are
/// seconds. `{"demand": "2G"}`, `{"ramp": {"from": "1G", "to": "3G", "seconds": 60}}`,
/// `{"periodic": {"low": "1G", "high": "3G", "seconds": 120}}`, `{"trace": [[0, "1G"], [30, "2.5G"]]}`.
public struct WorkloadView: Codable, Sendable, Equatable {
    public struct Ramp: Codable, Sendable, Equatable {
        public var from: UInt64
        public var to: UInt64
        public var seconds: Double

        public init(from: UInt64, to: UInt64, seconds: Double) {
            self.from = from
            self.to = to
            self.seconds = seconds
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.init(
                from: try container.decode(SizeField.self, forKey: .from).bytes,
                to: try container.decode(SizeField.self, forKey: .to).bytes,
                seconds: try container.decode(Double.self, forKey: .seconds))
        }
    }

    public struct Periodic: Codable, Sendable, Equatable {
        public var low: UInt64
        public var high: UInt64
        public var seconds: Double

        public init(low: UInt64, high: UInt64, seconds: Double) {
            self.low = low
            self.high = high
            self.seconds = seconds
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.init(
                low: try container.decode(SizeField.self, forKey: .low).bytes,
                high: try container.decode(SizeField.self, forKey: .high).bytes,
                seconds: try container.decode(Double.self, forKey: .seconds))
        }
    }

    /// One point of a trace: `[seconds, size]`.
    public struct TracePoint: Codable, Sendable, Equatable {
        public var seconds: Double
        public var bytes: UInt64

        public init(seconds: Double, bytes: UInt64) {
            self.seconds = seconds
            self.bytes = bytes
        }

        public init(from decoder: any Decoder) throws {
            var container = try decoder.unkeyedContainer()
            self.init(seconds: try container.decode(Double.self), bytes: try container.decode(SizeField.self).bytes)
            guard container.isAtEnd else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "a trace point is [seconds, size], two values")
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.unkeyedContainer()
            try container.encode(seconds)
            try container.encode(bytes)
        }
    }

    public var demand: UInt64?
    public var ramp: Ramp?
    public var periodic: Periodic?
    public var trace: [TracePoint]?
    /// Pages the guest writes per second (the dirtying rate a live migration faces); default 500.
    public var dirtyPagesPerSecond: UInt64?

    public init(
        demand: UInt64? = nil, ramp: Ramp? = nil, periodic: Periodic? = nil, trace: [TracePoint]? = nil,
        dirtyPagesPerSecond: UInt64? = nil
    ) {
        self.demand = demand
        self.ramp = ramp
        self.periodic = periodic
        self.trace = trace
        self.dirtyPagesPerSecond = dirtyPagesPerSecond
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            demand: try container.decodeIfPresent(SizeField.self, forKey: .demand)?.bytes,
            ramp: try container.decodeIfPresent(Ramp.self, forKey: .ramp),
            periodic: try container.decodeIfPresent(Periodic.self, forKey: .periodic),
            trace: try container.decodeIfPresent([TracePoint].self, forKey: .trace),
            dirtyPagesPerSecond: try container.decodeIfPresent(UInt64.self, forKey: .dirtyPagesPerSecond))
    }

    /// How the API shows `workload`.
    public init(_ workload: Workload) {
        self.init(dirtyPagesPerSecond: workload.dirtyPagesPerSecond)
        switch workload.demand {
        case .constant(let bytes): demand = bytes
        case .ramp(let from, let to, let span): ramp = Ramp(from: from, to: to, seconds: span.seconds)
        case .periodic(let low, let high, let period):
            periodic = Periodic(low: low, high: high, seconds: period.seconds)
        case .trace(let points): trace = points.map { TracePoint(seconds: $0.at.seconds, bytes: $0.demand) }
        }
    }

    /// The workload this describes, or why it describes none (for a 400 answer).
    public func workload() -> Result<Workload, WorkloadViewProblem> {
        let shapes = [demand != nil, ramp != nil, periodic != nil, trace != nil].filter { $0 }.count
        guard shapes == 1 else {
            return .failure(
                WorkloadViewProblem(
                    description: "give exactly one of demand, ramp, periodic and trace (got \(shapes)), e.g. "
                        + #"{"demand": "2G"} or {"ramp": {"from": "1G", "to": "3G", "seconds": 60}}"#))
        }
        let shape: Workload.Demand
        if let demand {
            shape = .constant(demand)
        } else if let ramp {
            guard let span = Duration(seconds: ramp.seconds) else { return .failure(.badSeconds(ramp.seconds)) }
            shape = .ramp(from: ramp.from, to: ramp.to, over: span)
        } else if let periodic {
            guard let span = Duration(seconds: periodic.seconds) else { return .failure(.badSeconds(periodic.seconds)) }
            shape = .periodic(low: periodic.low, high: periodic.high, period: span)
        } else {
            var points: [Workload.TracePoint] = []
            for point in trace ?? [] {
                guard let at = Duration(seconds: point.seconds) else { return .failure(.badSeconds(point.seconds)) }
                points.append(Workload.TracePoint(at: at, demand: point.bytes))
            }
            shape = .trace(points)
        }
        let workload = Workload(
            demand: shape, dirtyPagesPerSecond: dirtyPagesPerSecond ?? Workload.defaultDirtyPagesPerSecond)
        if let problem = workload.problem { return .failure(WorkloadViewProblem(description: problem)) }
        return .success(workload)
    }
}

/// Why a `WorkloadView` describes no workload.
public struct WorkloadViewProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String

    public init(description: String) { self.description = description }

    static func badSeconds(_ seconds: Double) -> WorkloadViewProblem {
        WorkloadViewProblem(description: "\(seconds) is not a time in seconds from 0 to a year")
    }
}

extension Duration {
    /// Whole and fractional seconds, for JSON.
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// `seconds` to the millisecond; nil for what is not a number from 0 to a year.
    fileprivate init?(seconds: Double) {
        guard seconds.isFinite, seconds >= 0, seconds <= Double(365 * 24 * 3600) else { return nil }
        self = .milliseconds(Int64((seconds * 1000).rounded()))
    }
}
