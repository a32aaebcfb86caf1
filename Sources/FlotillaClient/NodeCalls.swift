// The API client's calls for one node's own facts: what its agent runs, how it reaches volumes.
public import FlotillaAPI
import Foundation
import HTTP2

extension APIClient {
    /// What the node this client talks to runs.
    public func agent() async throws -> AgentView {
        try decoded(AgentView.self, try await call(.get, "/v1/agent"))
    }

    /// Marks the direct path of the node this client talks to as broken (its I/O to the volume
    /// then goes through the coordinator) or working again; answers that node's volume facts.
    @discardableResult
    public func setDirectIO(_ volume: String, broken: Bool) async throws -> VolumeAccessView {
        try decoded(
            VolumeAccessView.self,
            try await call(
                .post, "/v1/volumes/\(pathSegment(volume))/direct-io",
                body: try JSONEncoder().encode(DirectIOChange(broken: broken))))
    }
}

extension APIClient {
    /// A piece of a real guest's console, from the node that runs it (any node forwards): the
    /// last `limit` bytes, or up to `limit` bytes from `offset` on.
    public func console(_ name: String, offset: UInt64? = nil, limit: Int? = nil) async throws -> ConsoleView {
        let parameters = [offset.map { "offset=\($0)" }, limit.map { "limit=\($0)" }].compactMap { $0 }
        let query = parameters.isEmpty ? "" : "?" + parameters.joined(separator: "&")
        return try decoded(ConsoleView.self, try await call(.get, "/v1/vms/\(pathSegment(name))/console" + query))
    }
}
