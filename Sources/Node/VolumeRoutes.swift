// Volume routes: the coordinator's peer routes, and the direct-path switch on the client API.
import ClusterModel
import ClusterState
import FlotillaAPI
import Foundation
import HTTP2
import Logging
import RaftRuntime
import SharedVolumes

extension NodeVolumes {
    /// On the peer port: what other nodes send this node as a volume's coordinator, and its facts.
    func addPeerRoutes(to router: inout Router) {
        router.post("/v1/internal/volumes/{id}/metadata") { request, parameters in
            let volume = parameters["id"] ?? ""
            let operation = try await ClientAPI.decode(
                MetadataOperation.self, request, example: "send a metadata operation")
            // Up to date with the applied state first: a volume just moved here is validated now.
            await self.reconcile(with: await self.readState())
            do {
                return try json(try await self.coordinator.perform(operation, on: volume))
            } catch let error as VolumeError {
                return try Self.refusal(error)
            }
        }
        router.post("/v1/internal/volumes/{id}/journal") { request, parameters in
            let volume = parameters["id"] ?? ""
            let operation = try await ClientAPI.decode(
                JournalOperation.self, request, example: "send a journal operation")
            let state = await self.readState()
            await self.reconcile(with: state)
            do {
                // The epoch fences here too: an owner the log has already replaced may not write.
                if let vm = state.vms[operation.vm], vm.epoch > operation.epoch {
                    throw VolumeError(
                        .conflict,
                        "\(vm.id) is at epoch \(vm.epoch) in the coordinator's state; a write of epoch "
                            + "\(operation.epoch) comes from an owner that was replaced")
                }
                return try json(try await self.coordinator.journal(operation, on: volume))
            } catch let error as VolumeError {
                return try Self.refusal(error)
            }
        }
        router.get(VolumeWire.accessPath) { _, _ in try json(await self.access()) }
    }

    /// On the client API, answered by this node for itself (never forwarded): the simulated
    /// fault switch of its direct path to a volume.
    func addClientRoutes(to router: inout Router) {
        router.post("/v1/volumes/{id}/direct-io") { request, parameters in
            let body = try await ClientAPI.decode(DirectIOChange.self, request, example: #"send {"broken": true}"#)
            let volume = VolumeID(parameters["id"] ?? "")
            guard await self.readState().volumes[volume] != nil else {
                throw HTTPError(
                    status: 404, error: "not_found",
                    detail: "no volume \(volume) exists; list them with GET /v1/volumes")
            }
            self.directIO.set(volume.rawValue, broken: body.broken)
            self.logger.notice(
                "direct I/O to volume \(volume) on \(self.node) marked \(body.broken ? "broken: redirected through its coordinator" : "working")"
            )
            return try json(await self.access())
        }
    }

    private static func refusal(_ error: VolumeError) throws -> HTTPResponse {
        try json(VolumeWire.Refusal(error: error.kind.rawValue, detail: error.detail), status: error.httpStatus)
    }
}
