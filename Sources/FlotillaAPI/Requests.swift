// The bodies of the API's write requests, as the server reads them and every client writes them.
import ClusterModel

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

    public init(
        name: String, startup: UInt64, minimum: UInt64? = nil, maximum: UInt64? = nil, buffer: Int? = nil,
        priority: Int? = nil, restartPriority: String? = nil, preferredOwners: [String]? = nil,
        antiAffinityClass: String? = nil, volume: String, diskFile: String? = nil
    ) {
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
            diskFile: try container.decodeIfPresent(String.self, forKey: .diskFile))
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
