// Keeps this node's `node` record in the cluster state, so VMs can be placed on it.
import ClusterModel
import ClusterState
import FlotillaAPI
import Foundation
import HTTP2
import Logging
import NIOCore
import RaftCore
import RaftRuntime

/// Registers this node (its addresses, Raft role and usable memory) through the log once a leader
/// exists, and again whenever the record differs from what the node is — after a restart with
/// other settings, or a promotion from learner to voter.
///
/// Idempotent across restarts: it compares first and proposes only a difference, so a node that
/// restarts unchanged writes nothing. Its own applied copy may lag a moment
/// behind a registration just committed, so it reads through ReadIndex.
struct NodeRegistrar: Sendable {
    let api: ClientAPI
    let logger: Logger

    func run() async {
        var registered = false
        var lastProblem: String?
        while !Task.isCancelled {
            try? await Task.sleep(for: registered ? .seconds(2) : .milliseconds(200))
            guard let wanted = await wantedRegistration() else { continue }
            let id = wanted.id
            // A linearizable read: a node that just restarted may not have applied its own
            // registration yet, and must not take that for a missing record.
            let current: NodeRecord?
            do {
                current = try await api.driver.linearizableRead(timeoutTicks: api.timeoutTicks) {
                    $0.state.nodes[id]
                }
            } catch {
                continue
            }
            if let current, current.addresses == wanted.addresses, current.role == wanted.role,
                current.usableMemory == wanted.usableMemory
            {
                if !registered { logger.info("\(id)'s record in the cluster state is current: nothing to register") }
                registered = true
                continue
            }
            do {
                try await api.register(wanted)
                logger.info(
                    "registered \(id) in the cluster state",
                    metadata: ["role": "\(wanted.role)", "usable-memory": "\(ByteCount(wanted.usableMemory))"])
                lastProblem = nil
                registered = true
            } catch {
                // Retried on the next round; said once per distinct problem, not every round.
                let problem = "\(error)"
                if problem != lastProblem { logger.warning("cannot register \(id) yet: \(problem)") }
                lastProblem = problem
                registered = false
            }
        }
    }

    /// What the record should say, or nil while there is no leader or this node is not a member.
    private func wantedRegistration() async -> NodeRegistration? {
        let status = await api.driver.status
        let configuration = api.configuration
        let id = configuration.nodeID
        guard status.leader != nil, status.membership.members.contains(id) else { return nil }
        let addresses =
            api.addressBook.addresses(of: id)
            ?? MemberAddresses(peer: configuration.peerListen, client: configuration.clientListen)
        return NodeRegistration(
            id: id, addresses: addresses, role: status.membership.learners.contains(id) ? .learner : .voter,
            usableMemory: configuration.usableMemory)
    }
}

extension ClientAPI {
    /// Proposes a node's registration on the leader, forwarding there as `POST /v1/nodes` would.
    func register(_ registration: NodeRegistration) async throws {
        let body = NodeRegistrationRequest(
            id: registration.id.description, peer: registration.addresses.peer.description,
            client: registration.addresses.client.description, role: registration.role.description,
            usableMemory: registration.usableMemory)
        let request = HTTPRequest(
            method: .post, path: "/v1/nodes", headers: ["content-type": "application/json"],
            body: .buffer(ByteBuffer(bytes: try JSONEncoder().encode(body))))
        let response = try await onLeader(request) { try await registerNode(request) }
        guard (200..<300).contains(response.status) else {
            let text = try await response.body.collect(upTo: 64 << 10)
            throw HTTPError(
                status: response.status, error: "registration_refused", detail: String(buffer: text))
        }
    }
}
