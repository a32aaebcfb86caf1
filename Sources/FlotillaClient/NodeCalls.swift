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
