// The bodies of the API's write requests: a new VM, a change of its memory settings.
import ClusterModel

/// What `POST /v1/vms` takes: a new VM's name, memory (bytes), placement hints and disk volume.
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

/// What `PATCH /v1/vms/{name}/memory` takes: only the settings to change.
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
