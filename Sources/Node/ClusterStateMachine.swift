// Connects the pure ClusterState to the Raft driver: commands in as bytes, answers out as bytes.
import ClusterModel
import ClusterState

/// `ClusterState` as the driver's `ReplicatedStateMachine`.
///
/// Member addresses registered through the log are copied into the node's `AddressBook` as they
/// are applied (a side effect outside the state, which stays deterministic).
struct ClusterStateMachine: ReplicatedStateMachine {
    var state = ClusterState()
    let addressBook: AddressBook

    init(addressBook: AddressBook) {
        self.addressBook = addressBook
    }

    mutating func apply(_ command: [UInt8], at index: LogIndex) -> [UInt8] {
        do {
            let envelope = try CommandEnvelope(decoding: command)
            let result = state.apply(envelope)
            if case .registerMember = envelope.command, case .applied = result {
                addressBook.update(state.memberAddresses)
            }
            return result.encoded
        } catch {
            // Every node refuses the same bytes the same way, so the state stays identical.
            return CommandResult.rejected(
                .invalid("entry \(index) is not a command this version understands: \(error)")
            ).encoded
        }
    }

    func snapshot() -> [UInt8] { state.snapshot }

    mutating func restore(from snapshot: [UInt8]) throws {
        state = try ClusterState(snapshot: snapshot)
        addressBook.update(state.memberAddresses)
    }
}
