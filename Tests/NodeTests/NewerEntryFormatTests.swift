// The node's state machine stops at an entry of a newer format and refuses a damaged one.
import ClusterModel
import ClusterState
import RaftCore
import Testing

@testable import Node

@Test func anEntryOfANewerFormatStopsTheStateMachineInsteadOfBeingRefused() throws {
    var machine = ClusterStateMachine(addressBook: AddressBook(configured: []))
    var current = CommandEnvelope(proposedAt: 1, command: .setSetting(key: "a", value: "b")).encoded
    #expect(try CommandResult(decoding: try machine.apply(current, at: 6)) == .applied(.previous(nil)))

    current[0] = CommandEnvelope.formatVersion + 1
    let error = #expect(throws: NewerFormatVersion.self) { try machine.apply(current, at: 7) }
    #expect(
        error?.description
            == "log entry 7 is entry format 10; this build reads up to 9: "
            + "upgrade this node (docs/operations.md, Upgrades)")
    #expect(machine.state.settings == ["a": "b"])

    // Damage is refused alike on every node, and the node goes on.
    let answer = try machine.apply([CommandEnvelope.formatVersion, 0xFF], at: 8)
    guard case .rejected(let rejection) = try CommandResult(decoding: answer) else {
        Issue.record("a damaged entry was not refused")
        return
    }
    #expect(rejection.reason.hasPrefix("entry 8 is not a command this version understands"))
}
