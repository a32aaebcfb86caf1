// Decommissioning: a node leaves the cluster for good (`DELETE /v1/members/{id}`), an unused volume is deleted.
import ClusterModel
import ClusterState
import Controllers
import FlotillaAPI
import HTTP2
import RaftCore
import RaftRuntime

extension ClientAPI {
    /// `DELETE /v1/members/{id}`: on the leader, asks `NodeRemoval` whether the node may go, then
    /// removes it from the Raft membership and, once that has committed, its node record.
    ///
    /// Raft first: a node that is still a member registers a missing record again
    /// (`NodeRegistrar`), one that is not never does. Either step may already be done (a retry
    /// after a leader change between them), so the route does what is left, and answers 404 only
    /// when the node is neither a member nor a record.
    func removeMember(_ id: NodeID, _ request: HTTPRequest) async throws -> HTTPResponse {
        guard await driver.status.role == .leader else { return try await forwardOrFail(request) }
        let state = try await clusterState(request)
        // Re-read after the await: the decision is made on this leader's current view of Raft.
        let status = await driver.status
        guard status.role == .leader else { return try await forwardOrFail(request) }
        let isMember = status.membership.contains(id)
        guard isMember || state.nodes[id] != nil else {
            throw HTTPError(
                status: 404, error: "not_found",
                detail:
                    "\(id) is neither a member nor a registered node; list them with GET /v1/status and GET /v1/nodes")
        }
        let reachable = Set(
            status.progress.filter { $0.value.ticksSinceHeard <= configuration.electionTicks }.keys
        ).union([configuration.nodeID])
        let refusals = NodeRemoval.refusals(
            removing: id, state: state, voters: status.membership.voters, leader: status.leader, reachable: reachable)
        guard refusals.isEmpty else {
            throw HTTPError(
                status: 409, error: "removal_refused",
                detail: "\(id) cannot be removed now: " + refusals.map(\.description).joined(separator: "; "))
        }
        if isMember, case .forwarded(let response) = try await proposeMembershipChange(.remove(id), request) {
            return response
        }
        if state.nodes[id] != nil {
            do {
                if case .forwarded(let response) = try await write(.removeNode(id), request) { return response }
            } catch let error as HTTPError where error.status == 409 {
                // Something landed on it between the decision and the commit (an operator resumed it).
                throw HTTPError(
                    status: 409, error: "removal_refused",
                    detail: "\(id) left the Raft membership, but its record stays: \(error.detail); "
                        + "then run flotilla members remove \(id) again")
            }
        }
        return try json(await statusView())
    }

    func addDecommissionRoutes(to router: inout Router) {
        router.delete("/v1/volumes/{id}") { request, parameters in
            try await onLeader(request) {
                let volume = try Self.volume(parameters, in: try await clusterState(request))
                switch try await write(.deleteVolume(volume.id), request) {
                case .forwarded(let response): return response
                case .applied:
                    return try json(
                        VolumeDeletion(
                            deleted: volume.id.description, path: volume.path,
                            detail: "\(volume.id)'s record is gone; its directory \(volume.path) under the shared "
                                + "root is left as it was, with any files in it"))
                }
            }
        }
    }
}
