// Settings are validated at apply time; the state survives snapshot and its commands the log.
import ClusterModel
import ClusterState
import Testing

@Test func settingsAreSetReplacedAndDeleted() {
    var state = ClusterState()
    #expect(state.apply(.setSetting(key: "failover.max-per-hour", value: "3")) == .applied(previous: nil))
    #expect(state.apply(.setSetting(key: "failover.max-per-hour", value: "5")) == .applied(previous: "3"))
    #expect(state.settings == ["failover.max-per-hour": "5"])
    #expect(state.apply(.deleteSetting(key: "failover.max-per-hour")) == .applied(previous: "5"))
    #expect(
        state.apply(.deleteSetting(key: "failover.max-per-hour")) == .rejected("no setting named failover.max-per-hour")
    )
    #expect(state.settings.isEmpty)
}

@Test(arguments: ["", "Upper", "9lives", "has space", "ünicode", String(repeating: "a", count: 129)])
func badNamesAreRejectedAndChangeNothing(key: String) {
    var state = ClusterState()
    guard case .rejected(let reason) = state.apply(.setSetting(key: key, value: "v")) else {
        Issue.record("\(key) was accepted")
        return
    }
    #expect(reason.contains("setting name"))
    #expect(state == ClusterState())
}

@Test func oversizedValuesAreRejected() {
    var state = ClusterState()
    let value = String(repeating: "x", count: Setting.maxValueBytes + 1)
    #expect(state.apply(.setSetting(key: "big", value: value)) != .applied(previous: nil))
    #expect(state.settings.isEmpty)
}

@Test func commandsResultsAndSnapshotsRoundTrip() throws {
    let commands: [ClusterCommand] = [
        .setSetting(key: "a/b.c-d_e", value: "välue"), .setSetting(key: "x", value: ""), .deleteSetting(key: "x"),
    ]
    var state = ClusterState()
    for command in commands {
        #expect(try ClusterCommand(decoding: command.encoded) == command)
        let result = state.apply(command)
        #expect(try CommandResult(decoding: result.encoded) == result)
    }
    #expect(try ClusterState(snapshot: state.snapshot) == state)
    let rejected = CommandResult.rejected("why")
    #expect(try CommandResult(decoding: rejected.encoded) == rejected)
}

@Test func damagedCommandsAndSnapshotsAreRefused() {
    let command = ClusterCommand.setSetting(key: "key", value: "value").encoded
    for cut in 0..<command.count {
        #expect(throws: WireFormatError.self) { try ClusterCommand(decoding: Array(command[0..<cut])) }
    }
    #expect(throws: WireFormatError.self) { try ClusterCommand(decoding: [2, 1]) }
    #expect(throws: WireFormatError.self) { try ClusterCommand(decoding: [1, 1, 2, 0xC3, 0x28, 0]) }
    #expect(throws: WireFormatError.self) { try ClusterState(snapshot: [1, 5]) }
}

@Test func memberAddressesAreRegisteredUniqueAndSnapshotted() throws {
    var state = ClusterState()
    let n4 = MemberAddresses(
        peer: Endpoint(host: "10.0.0.4", port: 7201), client: Endpoint(host: "10.0.0.4", port: 7101))
    let n5 = MemberAddresses(peer: Endpoint(host: "10.0.0.5", port: 7201), client: Endpoint(host: "::1", port: 7101))
    #expect(state.apply(.registerMember(id: 4, addresses: n4)) == .applied(previous: nil))
    #expect(state.apply(.registerMember(id: 5, addresses: n5)) == .applied(previous: nil))
    // Another member's peer address is refused; re-registering the same member updates it.
    guard case .rejected(let reason) = state.apply(.registerMember(id: 6, addresses: n4)) else {
        Issue.record("a duplicate peer address was accepted")
        return
    }
    #expect(reason.contains("already belongs to n4"))
    let moved = MemberAddresses(peer: Endpoint(host: "10.0.0.44", port: 7201), client: n4.client)
    #expect(state.apply(.registerMember(id: 4, addresses: moved)) == .applied(previous: "10.0.0.4:7201 10.0.0.4:7101"))
    #expect(state.memberAddresses == [4: moved, 5: n5])
    #expect(try ClusterState(snapshot: state.snapshot) == state)
    let command = ClusterCommand.registerMember(id: 5, addresses: n5)
    #expect(try ClusterCommand(decoding: command.encoded) == command)
}
