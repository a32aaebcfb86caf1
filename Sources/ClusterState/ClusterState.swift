// The replicated state machine every node applies committed commands to (DESIGN.md §7).
import ClusterModel

/// The cluster's replicated state: named settings, member addresses, nodes, volumes, VMs,
/// migrations and a bounded event history.
///
/// Pure and deterministic: `apply` depends only on the state and the command, so every node that
/// applies the same log reaches the same state. Commands are validated here, at apply time,
/// against the committed state — never only by the node that proposed them.
public struct ClusterState: Hashable, Sendable {
    /// Named settings (`flotilla config set/get/list`); keys are `Setting.validate`d.
    public internal(set) var settings: [String: String] = [:]
    /// Where each member added through the API is reached. (The founding members' addresses come
    /// from their configuration; Raft's own log holds who votes.)
    public internal(set) var memberAddresses: [NodeID: MemberAddresses] = [:]
    /// The nodes that run VMs, by id.
    public internal(set) var nodes: [NodeID: NodeRecord] = [:]
    /// The Cluster Shared Volumes, by id.
    public internal(set) var volumes: [VolumeID: VolumeRecord] = [:]
    /// The VMs, by id.
    public internal(set) var vms: [VMID: VMRecord] = [:]
    /// The active migrations and the most recent finished ones (`finishedMigrationsKept`).
    public internal(set) var migrations: [MigrationID: MigrationRecord] = [:]
    /// The most recent events, oldest first, at most `eventHistoryLimit`; sequences grow by one.
    public internal(set) var events: [ClusterEvent] = []
    /// The id the next created VM gets; greater than every id ever given.
    public internal(set) var nextVMID: VMID = 1
    /// The id the next migration gets; greater than every id ever given.
    public internal(set) var nextMigrationID: MigrationID = 1
    /// The sequence number of the next event; greater than every sequence ever given.
    public internal(set) var nextEventSequence: UInt64 = 1

    /// How many events the state keeps; older ones are dropped (their sequence numbers are not reused).
    public static let eventHistoryLimit = 1000
    /// How many finished migrations the state keeps for inspection; older ones are dropped.
    public static let finishedMigrationsKept = 100

    public init() {}

    /// Applies one committed command and returns the answer for its client.
    public mutating func apply(_ command: ClusterCommand) -> CommandResult {
        switch command {
        case .setSetting(let key, let value):
            if let problem = Setting.problem(key: key, value: value) { return .rejected(problem) }
            let previous = settings.updateValue(value, forKey: key)
            return .applied(previous: previous)
        case .deleteSetting(let key):
            if let problem = Setting.problem(key: key, value: "") { return .rejected(problem) }
            guard let previous = settings.removeValue(forKey: key) else {
                return .rejected("no setting named \(key)")
            }
            return .applied(previous: previous)
        case .registerMember(let id, let addresses):
            if let (other, _) = memberAddresses.first(where: { $0.key != id && $0.value.peer == addresses.peer }) {
                return .rejected("peer address \(addresses.peer) already belongs to \(other); give \(id) its own")
            }
            let previous = memberAddresses.updateValue(addresses, forKey: id)
            return .applied(previous: previous.map { "\($0.peer) \($0.client)" })
        }
    }
}

/// Where one member is reached.
public struct MemberAddresses: Hashable, Sendable {
    /// Its peer RPC (Raft) address.
    public var peer: Endpoint
    /// Its client API address.
    public var client: Endpoint

    public init(peer: Endpoint, client: Endpoint) {
        self.peer = peer
        self.client = client
    }
}

/// The rules for setting names and values.
public enum Setting {
    public static let maxKeyLength = 128
    public static let maxValueBytes = 64 << 10

    /// Why a key or value is not acceptable, or nil when it is.
    public static func problem(key: String, value: String) -> String? {
        guard !key.isEmpty, key.utf8.count <= maxKeyLength else {
            return "a setting name must be 1–\(maxKeyLength) characters, got \(key.utf8.count)"
        }
        guard key.unicodeScalars.allSatisfy({ $0.isASCII && (isNameCharacter(Character($0))) }),
            key.first!.isLetter
        else {
            return "setting name \"\(key)\" must start with a letter and use only a–z, 0–9, '.', '-', '_' or '/'"
        }
        guard value.utf8.count <= maxValueBytes else {
            return "the value of \(key) is \(value.utf8.count) bytes; the limit is \(maxValueBytes)"
        }
        return nil
    }

    private static func isNameCharacter(_ character: Character) -> Bool {
        character.isLowercase || character.isNumber || ".-_/".contains(character)
    }
}

/// A change to the cluster state, as it travels through the log.
public enum ClusterCommand: Hashable, Sendable {
    case setSetting(key: String, value: String)
    case deleteSetting(key: String)
    /// Records a member's addresses (before Raft adds it), so every node can reach it.
    case registerMember(id: NodeID, addresses: MemberAddresses)
}

/// What applying a command did.
public enum CommandResult: Hashable, Sendable {
    /// Applied; `previous` is the value it replaced, if any.
    case applied(previous: String?)
    /// Refused by validation against the committed state; the text says why.
    case rejected(String)
}

// MARK: - Binary form

extension ClusterCommand {
    /// The command's bytes in the log.
    public var encoded: [UInt8] {
        var writer = ByteWriter()
        writer.write(1 as UInt8)  // format version
        switch self {
        case .setSetting(let key, let value):
            writer.write(1 as UInt8)
            writer.write(Array(key.utf8))
            writer.write(Array(value.utf8))
        case .deleteSetting(let key):
            writer.write(2 as UInt8)
            writer.write(Array(key.utf8))
        case .registerMember(let id, let addresses):
            writer.write(3 as UInt8)
            writer.writeVarint(id.rawValue)
            addresses.encode(into: &writer)
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(WireFormatError) {
        var reader = ByteReader(bytes)
        let version = try reader.readByte()
        guard version == 1 else { throw WireFormatError("cluster command format version \(version) is not known") }
        switch try reader.readByte() {
        case 1: self = .setSetting(key: try reader.readString(), value: try reader.readString())
        case 2: self = .deleteSetting(key: try reader.readString())
        case 3: self = .registerMember(id: try reader.readNodeID(), addresses: try MemberAddresses(from: &reader))
        case let kind: throw WireFormatError("unknown cluster command kind \(kind)")
        }
        guard reader.isAtEnd else { throw WireFormatError("\(reader.remaining) bytes after a cluster command") }
    }
}

extension CommandResult {
    public var encoded: [UInt8] {
        var writer = ByteWriter()
        switch self {
        case .applied(let previous):
            writer.write(0 as UInt8)
            writer.write(previous != nil)
            if let previous { writer.write(Array(previous.utf8)) }
        case .rejected(let reason):
            writer.write(1 as UInt8)
            writer.write(Array(reason.utf8))
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(WireFormatError) {
        var reader = ByteReader(bytes)
        switch try reader.readByte() {
        case 0: self = .applied(previous: try reader.readBool() ? try reader.readString() : nil)
        case 1: self = .rejected(try reader.readString())
        case let kind: throw WireFormatError("unknown command result kind \(kind)")
        }
    }
}
