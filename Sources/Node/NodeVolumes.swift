// This node's part in Cluster Shared Volumes: coordinating its volumes, and reaching the others' coordinators.
public import ClusterModel
public import ClusterState
public import FlotillaAPI
import Foundation
import Guests
import HTTP2
public import Logging
import NIOCore
public import SharedVolumes
import Synchronization

/// Keeps this node's `VolumeCoordinator` serving exactly the online volumes its applied state
/// says it coordinates (validating each before it serves), and gives the agent the way to its
/// disks: disk files are created through the coordinator, and journal I/O goes through it while
/// this node's direct path to the volume is broken (DESIGN.md §11, docs/volumes.md).
///
/// Fenced, it stops coordinating: a node whose lease ran out may have lost its volumes already.
public final class NodeVolumes: Sendable {
    public let client: VolumeClient
    let readState: @Sendable () async -> ClusterState
    let logger: Logger
    private let interval: Duration
    /// Wakes `run` when the applied state changes or this node unfences.
    private let changes: StateChanges

    public var node: NodeID { client.node }
    public var coordinator: VolumeCoordinator { client.coordinator }
    public var directIO: DirectIOSwitch { client.directIO }

    /// `link` reaches other nodes' coordinators; without one this node can only use volumes it coordinates.
    public init(
        node: NodeID, sharedRoot: String, readState: @escaping @Sendable () async -> ClusterState,
        link: (any CoordinatorLink)?, logger: Logger, interval: Duration = .milliseconds(200),
        changes: StateChanges = StateChanges()
    ) {
        self.client = VolumeClient(
            node: node, coordinator: VolumeCoordinator(sharedRoot: sharedRoot, logger: logger),
            directIO: DirectIOSwitch(), link: link)
        self.readState = readState
        self.logger = logger
        self.interval = interval
        self.changes = changes
    }

    /// Follows the applied state (on every change, and at least every `interval`) until cancelled,
    /// so a volume moved here is validated (and one moved away released) without waiting for a request.
    public func run() async {
        await changes.follow(every: interval) { await self.reconcile(with: await self.readState()) }
    }

    /// Serves the online volumes `state` says this node coordinates, and no others.
    public func reconcile(with state: ClusterState) async {
        var assignments: [String: String] = [:]
        for volume in state.volumes.values where volume.coordinator == node && volume.state == .online {
            assignments[volume.id.rawValue] = volume.path
        }
        await coordinator.coordinate(assignments)
    }

    /// Makes sure `vm`'s disk file exists and is listed in its volume's metadata: a metadata
    /// operation, so it goes to the volume's coordinator (this node's own, if it is).
    public func prepareDisk(of vm: VMID) async throws(VolumeError) {
        let state = await readState()
        guard let record = state.vms[vm], let volume = state.volumes[record.disk.volume] else {
            throw VolumeError(.notFound, "\(vm) or its disk's volume is not in this node's applied state")
        }
        guard volume.state == .online else {
            throw VolumeError(
                .notServing, "volume \(volume.id) is offline; it is served again once its coordinator moves")
        }
        if volume.coordinator == node { await reconcile(with: state) }
        _ = try await client.metadata(
            .createDiskFile(file: record.disk.file, vm: vm, size: VolumeMetadata.defaultDiskSize),
            volume: volume.id.rawValue, coordinator: volume.coordinator)
    }

    /// The redirected path for a guest whose disk is `disk`: through whichever node coordinates
    /// the volume when the guest asks.
    public func redirect(for disk: DiskFile, diskPath: String) -> VolumeJournalRedirect {
        let readState = readState
        let volume = disk.volume
        return VolumeJournalRedirect(
            volume: disk.volume.rawValue, file: disk.file, diskPath: diskPath, client: client,
            currentCoordinator: { await readState().volumes[volume]?.coordinator })
    }

    /// This node's own view of its volumes (`GET /v1/internal/volumes/access`).
    public func access() async -> VolumeAccessView {
        VolumeAccessView(
            node: node.description, redirected: directIO.brokenVolumes, coordinating: await coordinator.served,
            refused: await coordinator.refusals, redirectedAppends: await coordinator.redirectedAppends)
    }
}

extension NodeVolumes: Fencing {
    public func fence(reason: String) async { await coordinator.fence(reason: reason) }
    public func unfence() async {
        await coordinator.unfence()
        changes.signal()
    }
}

/// Reaches other nodes' coordinators over HTTP/2 on their peer ports.
final class HTTPCoordinatorLink: CoordinatorLink {
    private let addressBook: AddressBook
    private let timeout: Duration
    private let clients = Mutex<[Endpoint: HTTP2Client]>([:])

    init(addressBook: AddressBook, timeout: Duration = .seconds(2)) {
        self.addressBook = addressBook
        self.timeout = timeout
    }

    func metadata(_ operation: MetadataOperation, volume: String, coordinator: NodeID) async throws(VolumeError)
        -> VolumeMetadata
    {
        try await call(VolumeMetadata.self, VolumeWire.metadataPath(volume), operation, on: coordinator)
    }

    func journal(_ operation: JournalOperation, volume: String, coordinator: NodeID) async throws(VolumeError)
        -> JournalPosition
    {
        try await call(JournalPosition.self, VolumeWire.journalPath(volume), operation, on: coordinator)
    }

    /// Another node's facts about its volumes, or nil when it does not answer in time.
    func access(of node: NodeID, timeout: Duration) async -> VolumeAccessView? {
        guard let client = client(for: node) else { return nil }
        let request = HTTPRequest(method: .get, path: VolumeWire.accessPath)
        guard let response = try? await client.send(request, timeout: timeout), response.status == 200,
            let body = try? await response.body.collect(upTo: 1 << 20)
        else { return nil }
        return try? JSONDecoder().decode(VolumeAccessView.self, from: Data(body.readableBytesView))
    }

    func close() async {
        for client in clients.withLock({ $0.values }) { await client.close() }
    }

    private func client(for node: NodeID) -> HTTP2Client? {
        guard let peer = addressBook.addresses(of: node)?.peer else { return nil }
        return clients.withLock { clients in
            if let known = clients[peer] { return known }
            let client = HTTP2Client(configuration: .init(host: peer.host, port: peer.port))
            clients[peer] = client
            return client
        }
    }

    private func call<Answer: Decodable>(
        _ type: Answer.Type, _ path: String, _ operation: some Encodable, on coordinator: NodeID
    ) async throws(VolumeError) -> Answer {
        guard let client = client(for: coordinator) else {
            throw VolumeError(.unreachable, "no peer address is known for the coordinator \(coordinator)")
        }
        do {
            let request = HTTPRequest(
                method: .post, path: path, headers: ["content-type": "application/json"],
                body: .buffer(ByteBuffer(bytes: try JSONEncoder().encode(operation))))
            let response = try await client.send(request, timeout: timeout)
            let body = Data(try await response.body.collect(upTo: 16 << 20).readableBytesView)
            guard response.status == 200 else {
                if let refusal = try? JSONDecoder().decode(VolumeWire.Refusal.self, from: body) {
                    throw VolumeError(VolumeError.Kind(rawValue: refusal.error) ?? .io, refusal.detail)
                }
                throw VolumeError(
                    .io,
                    "the coordinator \(coordinator) answered \(response.status): \(String(decoding: body, as: UTF8.self))"
                )
            }
            return try JSONDecoder().decode(type, from: body)
        } catch let error as VolumeError {
            throw error
        } catch {
            throw VolumeError(.unreachable, "the coordinator \(coordinator) did not answer: \(error)")
        }
    }
}

/// The peer routes volume traffic uses.
enum VolumeWire {
    static let accessPath = "/v1/internal/volumes/access"
    static func metadataPath(_ volume: String) -> String { "/v1/internal/volumes/\(volume)/metadata" }
    static func journalPath(_ volume: String) -> String { "/v1/internal/volumes/\(volume)/journal" }

    /// A refused volume request: `error` is a `VolumeError.Kind`.
    struct Refusal: Codable {
        var error: String
        var detail: String
    }
}

/// Merges every node's own volume facts into the API's volume views: which nodes' I/O is
/// redirected, and why a coordinator refuses a volume. Asked of each node that is not down at
/// the time of the request (half a second at most), since these are soft facts the log never holds.
struct VolumeAccessGatherer: Sendable {
    let local: NodeVolumes
    let link: HTTPCoordinatorLink

    func annotate(_ views: [VolumeView], in state: ClusterState) async -> [VolumeView] {
        let nodes = state.nodes.values.filter { $0.state != .down }.map(\.id)
        var facts: [NodeID: VolumeAccessView] = [:]
        var silent: [NodeID] = []
        await withTaskGroup(of: (NodeID, VolumeAccessView?).self) { group in
            for node in nodes {
                group.addTask {
                    if node == local.node { return (node, await local.access()) }
                    return (node, await link.access(of: node, timeout: .milliseconds(500)))
                }
            }
            for await (node, view) in group {
                if let view { facts[node] = view } else { silent.append(node) }
            }
        }
        return views.map { view in
            var view = view
            view.redirected = facts.keys.sorted().filter { facts[$0]!.redirected.contains(view.id) }.map(\.description)
            if let coordinator = state.volumes[VolumeID(view.id)]?.coordinator {
                view.coordinatorProblem = facts[coordinator]?.refused[view.id]
            }
            view.accessUnknown = silent.isEmpty ? nil : silent.sorted().map(\.description)
            return view
        }
    }
}
