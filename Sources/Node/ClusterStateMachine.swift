// Connects the pure ClusterState to the Raft driver: commands in as bytes, answers out as bytes.
import ClusterModel
import ClusterState
import RaftRuntime

/// The node's Raft loop, driving the cluster state.
typealias ClusterDriver = RaftDriver<ClusterStateMachine>

/// `ClusterState` as the driver's `ReplicatedStateMachine`.
///
/// Member addresses registered through the log are copied into the node's `AddressBook` as they
/// are applied, and every applied command that can change what a node runs or coordinates is
/// signalled to `changes` (side effects outside the state, which stays deterministic).
struct ClusterStateMachine: ReplicatedStateMachine {
    var state = ClusterState()
    let addressBook: AddressBook
    let changes: StateChanges?
    /// Where the downtime of completed migrations is counted (for `/metrics`).
    let migrationMetrics: MigrationMetrics?

    init(addressBook: AddressBook, changes: StateChanges? = nil, migrationMetrics: MigrationMetrics? = nil) {
        self.addressBook = addressBook
        self.changes = changes
        self.migrationMetrics = migrationMetrics
    }

    mutating func apply(_ command: [UInt8], at index: LogIndex) throws(NewerFormatVersion) -> [UInt8] {
        do {
            let envelope = try CommandEnvelope(decoding: command)
            let result = state.apply(envelope)
            if case .applied = result {
                switch envelope.command {
                case .registerMember: addressBook.update(state.memberAddresses)
                // Settings are the bulk of writes and never change what runs where: no wake-up.
                case .setSetting, .deleteSetting: break
                case .recordMigrationStats: migrationMetrics?.applied(envelope.command, in: state)
                default: changes?.signal()
                }
            }
            return result.encoded
        } catch {
            if var newer = error.newerFormat {
                // Written by a newer build: the nodes that read it apply it, so refusing it here
                // would make this node's state differ. Stop the node instead.
                newer.subject = "log entry \(index)"
                throw newer
            }
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
        changes?.signal()
    }
}
