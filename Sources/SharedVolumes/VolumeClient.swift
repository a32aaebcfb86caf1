// A node's way to its volumes: metadata and redirected I/O to each volume's coordinator, and the direct-path switch.
public import ClusterModel
public import Guests
import Synchronization

/// How a node reaches another node's coordinator (HTTP/2 on the peer port in the daemon).
public protocol CoordinatorLink: Sendable {
    func metadata(_ operation: MetadataOperation, volume: String, coordinator: NodeID) async throws(VolumeError)
        -> VolumeMetadata
    func journal(_ operation: JournalOperation, volume: String, coordinator: NodeID) async throws(VolumeError)
        -> JournalPosition
}

/// Per volume, whether this node's direct path to it is broken (simulated: an operator or a
/// test sets it, `POST /v1/volumes/{id}/direct-io`). Soft state of this node, never in the log.
public final class DirectIOSwitch: Sendable {
    private let broken = Mutex<Set<String>>([])

    public init() {}

    public func isBroken(_ volume: String) -> Bool { broken.withLock { $0.contains(volume) } }

    public func set(_ volume: String, broken isBroken: Bool) {
        broken.withLock { if isBroken { $0.insert(volume) } else { $0.remove(volume) } }
    }

    /// The volumes whose direct path is broken, sorted.
    public var brokenVolumes: [String] { broken.withLock { $0.sorted() } }
}

/// Sends metadata operations and redirected journal I/O to a volume's coordinator: this node's
/// own `VolumeCoordinator` when it coordinates the volume, else over the link.
public final class VolumeClient: Sendable {
    public let node: NodeID
    public let coordinator: VolumeCoordinator
    public let directIO: DirectIOSwitch
    private let link: (any CoordinatorLink)?

    public init(node: NodeID, coordinator: VolumeCoordinator, directIO: DirectIOSwitch, link: (any CoordinatorLink)?) {
        self.node = node
        self.coordinator = coordinator
        self.directIO = directIO
        self.link = link
    }

    public func metadata(_ operation: MetadataOperation, volume: String, coordinator target: NodeID)
        async throws(VolumeError) -> VolumeMetadata
    {
        if target == node { return try await coordinator.perform(operation, on: volume) }
        return try await linked(target).metadata(operation, volume: volume, coordinator: target)
    }

    public func journal(_ operation: JournalOperation, volume: String, coordinator target: NodeID)
        async throws(VolumeError) -> JournalPosition
    {
        if target == node { return try await coordinator.journal(operation, on: volume) }
        return try await linked(target).journal(operation, volume: volume, coordinator: target)
    }

    private func linked(_ target: NodeID) throws(VolumeError) -> any CoordinatorLink {
        guard let link else {
            throw VolumeError(.unreachable, "\(target) coordinates the volume and this node has no link to other nodes")
        }
        return link
    }
}

/// A guest's redirected path: through whichever node coordinates its volume at the time.
public struct VolumeJournalRedirect: JournalRedirect {
    public let volume: String
    public let file: String
    /// The disk path the guest writes directly, for errors.
    public let diskPath: String
    public let client: VolumeClient
    /// The volume's coordinator in this node's applied state now (it moves on command and on failover).
    public let currentCoordinator: @Sendable () async -> NodeID?

    public init(
        volume: String, file: String, diskPath: String, client: VolumeClient,
        currentCoordinator: @escaping @Sendable () async -> NodeID?
    ) {
        self.volume = volume
        self.file = file
        self.diskPath = diskPath
        self.client = client
        self.currentCoordinator = currentCoordinator
    }

    public func isRedirected() -> Bool { client.directIO.isBroken(volume) }

    public func open(vm: VMID, epoch: Epoch) async throws(JournalError) -> JournalPosition {
        try await send(.open(file: file, vm: vm, epoch: epoch))
    }

    public func append(_ id: JournalRecordID, payload: [UInt8]) async throws(JournalError) {
        _ = try await send(
            .append(file: file, vm: id.vm, epoch: id.epoch, sequence: id.sequence, payload: payload))
    }

    private func send(_ operation: JournalOperation) async throws(JournalError) -> JournalPosition {
        guard let coordinator = await currentCoordinator() else {
            throw .redirected(file: diskPath, "volume \(volume) is not in this node's state")
        }
        do {
            return try await client.journal(operation, volume: volume, coordinator: coordinator)
        } catch {
            throw .redirected(file: diskPath, "\(coordinator): \(error.detail)")
        }
    }
}
