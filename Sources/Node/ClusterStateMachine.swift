// Connects the pure ClusterState to the Raft driver: commands in as bytes, answers out as bytes.
import ClusterModel
import ClusterState

/// `ClusterState` as the driver's `ReplicatedStateMachine`.
struct ClusterStateMachine: ReplicatedStateMachine {
    var state = ClusterState()

    mutating func apply(_ command: [UInt8], at index: LogIndex) -> [UInt8] {
        do {
            return state.apply(try ClusterCommand(decoding: command)).encoded
        } catch {
            // Every node refuses the same bytes the same way, so the state stays identical.
            return CommandResult.rejected("entry \(index) is not a command this version understands: \(error)").encoded
        }
    }

    func snapshot() -> [UInt8] { state.snapshot }

    mutating func restore(from snapshot: [UInt8]) throws {
        state = try ClusterState(snapshot: snapshot)
    }
}
