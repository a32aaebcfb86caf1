// The API client's calls for nodes, volumes, VMs, migrations and events.
import ClusterModel
public import FlotillaAPI
import Foundation
import HTTP2
import NIOCore

extension APIClient {
    private func query(stale: Bool) -> String { stale ? "?stale=true" : "" }

    public func cluster(stale: Bool = false) async throws -> ClusterView {
        try decoded(ClusterView.self, try await call(.get, "/v1/cluster" + query(stale: stale)))
    }

    public func nodes(stale: Bool = false) async throws -> [NodeView] {
        struct List: Decodable { var nodes: [NodeView] }
        return try decoded(List.self, try await call(.get, "/v1/nodes" + query(stale: stale))).nodes
    }

    public func vms(stale: Bool = false) async throws -> [VMView] {
        struct List: Decodable { var vms: [VMView] }
        return try decoded(List.self, try await call(.get, "/v1/vms" + query(stale: stale))).vms
    }

    public func vm(_ name: String, stale: Bool = false) async throws -> VMView {
        try decoded(VMView.self, try await call(.get, "/v1/vms/\(pathSegment(name))" + query(stale: stale)))
    }

    public func volumes(stale: Bool = false) async throws -> [VolumeView] {
        struct List: Decodable { var volumes: [VolumeView] }
        return try decoded(List.self, try await call(.get, "/v1/volumes" + query(stale: stale))).volumes
    }

    /// The active migrations and the most recent ended ones; only the active ones with `activeOnly`.
    public func migrations(activeOnly: Bool = false, stale: Bool = false) async throws -> [MigrationView] {
        struct List: Decodable { var migrations: [MigrationView] }
        let query = [activeOnly ? "active=true" : nil, stale ? "stale=true" : nil].compactMap { $0 }
        let path = "/v1/migrations" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        return try decoded(List.self, try await call(.get, path)).migrations
    }

    public func migration(_ id: String, stale: Bool = false) async throws -> MigrationView {
        try decoded(MigrationView.self, try await call(.get, "/v1/migrations/\(pathSegment(id))" + query(stale: stale)))
    }

    /// Starts a live migration of a running VM to `node`, or where placement puts it; the
    /// migration as committed (it may be queued behind the limits).
    public func migrateVM(_ name: String, to node: String? = nil) async throws -> MigrationView {
        try decoded(
            MigrationView.self,
            try await call(
                .post, "/v1/vms/\(pathSegment(name))/migrate", body: try JSONEncoder().encode(VMMigration(to: node))))
    }

    @discardableResult
    public func cancelMigration(_ id: String) async throws -> MigrationView {
        try decoded(MigrationView.self, try await call(.post, "/v1/migrations/\(pathSegment(id))/cancel"))
    }

    /// Whether a live migration of the VM that does not converge throttles its guest.
    @discardableResult
    public func setVMAutoConverge(_ name: String, _ enabled: Bool) async throws -> VMView {
        try decoded(
            VMView.self,
            try await call(
                .put, "/v1/vms/\(pathSegment(name))/auto-converge",
                body: try JSONEncoder().encode(AutoConvergeChange(enabled: enabled))))
    }

    public func events(since: UInt64 = 0, stale: Bool = false) async throws -> [EventView] {
        struct List: Decodable { var events: [EventView] }
        return try decoded(
            List.self, try await call(.get, "/v1/events?since=\(since)" + (stale ? "&stale=true" : ""))
        ).events
    }

    /// Calls `handle` with every event after `since`, then with each new one as it happens,
    /// until the node ends the stream (it shuts down) or `handle` throws.
    public func followEvents(since: UInt64 = 0, _ handle: (EventView) async throws -> Void) async throws {
        let response = try await stream(.get, "/v1/events?since=\(since)&follow=true")
        guard case .stream(let body) = response.body else {
            for event in try lines(try await response.body.collect(upTo: 64 << 20)) { try await handle(event) }
            return
        }
        var pending = ByteBuffer()
        for try await var chunk in body {
            pending.writeBuffer(&chunk)
            guard let end = pending.readableBytesView.lastIndex(of: UInt8(ascii: "\n")) else { continue }
            let complete = pending.readSlice(length: end - pending.readerIndex + 1)!
            for event in try lines(complete) { try await handle(event) }
            pending.discardReadBytes()
        }
    }

    private func lines(_ buffer: ByteBuffer) throws -> [EventView] {
        try buffer.readableBytesView.split(separator: UInt8(ascii: "\n")).map { line in
            try decoded(EventView.self, Data(line))
        }
    }

    @discardableResult
    public func createVM(_ creation: VMCreation) async throws -> VMView {
        try decoded(VMView.self, try await call(.post, "/v1/vms", body: try JSONEncoder().encode(creation)))
    }

    /// Starts a VM on `node`, or where placement puts it; a VM that fits nowhere comes back pending.
    @discardableResult
    public func startVM(_ name: String, on node: String? = nil) async throws -> VMView {
        let body = try node.map { try JSONEncoder().encode(VMStart(node: $0)) }
        return try decoded(VMView.self, try await call(.post, "/v1/vms/\(pathSegment(name))/start", body: body))
    }

    @discardableResult
    public func stopVM(_ name: String) async throws -> VMView {
        try decoded(VMView.self, try await call(.post, "/v1/vms/\(pathSegment(name))/stop"))
    }

    @discardableResult
    public func setVMMemory(_ name: String, _ change: MemoryChange) async throws -> VMView {
        try decoded(
            VMView.self,
            try await call(.patch, "/v1/vms/\(pathSegment(name))/memory", body: try JSONEncoder().encode(change)))
    }

    /// Sets what the VM's guest does with memory; a running guest follows it at once.
    @discardableResult
    public func setVMWorkload(_ name: String, _ workload: WorkloadView) async throws -> VMView {
        try decoded(
            VMView.self,
            try await call(.put, "/v1/vms/\(pathSegment(name))/workload", body: try JSONEncoder().encode(workload)))
    }

    public func deleteVM(_ name: String) async throws {
        _ = try await call(.delete, "/v1/vms/\(pathSegment(name))")
    }

    @discardableResult
    public func createVolume(_ id: String, coordinator: String, path: String? = nil) async throws -> VolumeView {
        let body = try JSONEncoder().encode(VolumeCreation(id: id, coordinator: coordinator, path: path))
        return try decoded(VolumeView.self, try await call(.post, "/v1/volumes", body: body))
    }

    @discardableResult
    public func moveVolume(_ id: String, to coordinator: String) async throws -> VolumeView {
        try decoded(
            VolumeView.self,
            try await call(
                .post, "/v1/volumes/\(pathSegment(id))/move",
                body: try JSONEncoder().encode(VolumeMove(coordinator: coordinator))))
    }

    /// Deletes a volume's record (refused while a VM uses it); its directory stays on the shared root.
    @discardableResult
    public func deleteVolume(_ id: String) async throws -> VolumeDeletion {
        try decoded(VolumeDeletion.self, try await call(.delete, "/v1/volumes/\(pathSegment(id))"))
    }

    /// `drain`, `pause` or `resume` a node.
    @discardableResult
    public func changeNode(_ id: String, _ action: String) async throws -> NodeView {
        try decoded(NodeView.self, try await call(.post, "/v1/nodes/\(pathSegment(id))/\(action)"))
    }
}
