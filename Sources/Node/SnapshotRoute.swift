// `GET /v1/snapshot`: a consistent snapshot of the replicated state, taken by the leader, as a snapshot file.
import ClusterModel
import Foundation
import HTTP2
import NIOCore
import RaftCore
import RaftRuntime
import RaftStorage

extension ClientAPI {
    /// The snapshot route. Only the leader takes it (a follower forwards the request): after a
    /// ReadIndex round it serialises its applied state, which then holds every write committed
    /// before the request, at an index it has committed. The body is the whole `SnapshotFile`
    /// (`application/octet-stream`), checksummed; the index and term are also in the headers.
    func addSnapshotRoute(to router: inout Router) {
        router.get("/v1/snapshot") { request, _ in
            if await driver.status.role != .leader { return try await forwardOrFail(request) }
            let snapshot: Snapshot
            do {
                snapshot = try await driver.consistentSnapshot(timeoutTicks: timeoutTicks)
            } catch let error as RaftDriverError {
                if error.isNotLeader { return try await forwardOrFail(request) }
                throw httpError(error)
            }
            let takenAt = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
            let file = ClusterBackup.file(
                of: snapshot, clusterID: configuration.clusterID, takenAtMilliseconds: takenAt)
            var headers: HTTPFields = ["content-type": "application/octet-stream"]
            headers.append(name: "flotilla-snapshot-index", value: "\(file.index)")
            headers.append(name: "flotilla-snapshot-term", value: "\(file.term)")
            return HTTPResponse(status: 200, headers: headers, body: .buffer(ByteBuffer(bytes: file.encoded)))
        }
    }
}
