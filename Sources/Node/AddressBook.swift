// Where every member is reached: the configured founders plus members registered through the log.
import ClusterModel
import ClusterState
import Synchronization

/// Member addresses, read by the peer transport and the client API, written as the log is applied.
final class AddressBook: Sendable {
    private let members: Mutex<[NodeID: MemberAddresses]>

    init(configured: [MemberAddress]) {
        members = Mutex(
            Dictionary(
                uniqueKeysWithValues: configured.map { ($0.id, MemberAddresses(peer: $0.peer, client: $0.client)) }))
    }

    func addresses(of node: NodeID) -> MemberAddresses? { members.withLock { $0[node] } }

    func update(_ registered: [NodeID: MemberAddresses]) {
        members.withLock { $0.merge(registered) { _, new in new } }
    }
}
