// Settings are validated at apply time; the state survives snapshot and its commands the log.
import ClusterModel
import ClusterState
import Testing

@Test func settingsAreSetReplacedAndDeleted() {
    var state = ClusterState()
    #expect(
        state.apply(.setSetting(key: "failover.max-per-hour", value: "3"), proposedAt: 1) == .applied(.previous(nil)))
    #expect(
        state.apply(.setSetting(key: "failover.max-per-hour", value: "5"), proposedAt: 2) == .applied(.previous("3")))
    #expect(state.settings == ["failover.max-per-hour": "5"])
    #expect(state.apply(.deleteSetting(key: "failover.max-per-hour"), proposedAt: 3) == .applied(.previous("5")))
    #expect(
        state.apply(.deleteSetting(key: "failover.max-per-hour"), proposedAt: 4)
            == .rejected(.notFound("no setting named failover.max-per-hour")))
    #expect(state.settings.isEmpty)
    #expect(state.events.map(\.kind) == [.settingChanged, .settingChanged, .settingDeleted])
    #expect(state.events.map(\.time) == [1, 2, 3])
}

/// A setting's event reads the same whether it was just recorded (its key and value kept, worded
/// when read) or read back from a snapshot (text): the value quoted up to 64 bytes, its length
/// beyond; and the two states compare and hash alike.
@Test func settingEventsReadTheSameRecordedOrRestored() throws {
    var state = ClusterState()
    let long = String(repeating: "v", count: 65)
    let exact = String(repeating: "w", count: 64)
    for (key, value) in [("a", "x"), ("b", exact), ("c", long), ("d", "with \"quotes\"")] {
        _ = state.apply(.setSetting(key: key, value: value), proposedAt: 1)
    }
    let expected = [
        "a set to \"x\"", "b set to \"\(exact)\"", "c set to a 65-byte value", "d set to \"with \"quotes\"\"",
    ]
    #expect(state.events.map(\.detail) == expected)
    let restored = try ClusterState(snapshot: state.snapshot)
    #expect(restored.events.map(\.detail) == expected)
    #expect(restored == state)
    #expect(restored.events.map(\.hashValue) == state.events.map(\.hashValue))
    #expect(restored.snapshot == state.snapshot)
}

@Test func theMigrationLimitIsAWholeNumberInRange() {
    var state = ClusterState()
    #expect(state.migrationLimitPerNode == 2)
    for bad in ["0", "65", "two", "-1", ""] {
        #expect(
            state.apply(.setSetting(key: Setting.migrationLimitKey, value: bad), proposedAt: 1).rejection?.kind
                == .invalid, "\(bad) was accepted")
    }
    #expect(
        state.apply(.setSetting(key: Setting.migrationLimitKey, value: "4"), proposedAt: 1) == .applied(.previous(nil)))
    #expect(state.migrationLimitPerNode == 4)
}

@Test(arguments: ["", "Upper", "9lives", "has space", "ünicode", String(repeating: "a", count: 129)])
func badNamesAreRejectedAndChangeNothing(key: String) {
    var state = ClusterState()
    guard case .rejected(let rejection) = state.apply(.setSetting(key: key, value: "v"), proposedAt: 1) else {
        Issue.record("\(key) was accepted")
        return
    }
    #expect(rejection.kind == .invalid)
    #expect(rejection.reason.contains("setting name"))
    #expect(state == ClusterState())
}

@Test func oversizedValuesAreRejected() {
    var state = ClusterState()
    let value = String(repeating: "x", count: Setting.maxValueBytes + 1)
    #expect(state.apply(.setSetting(key: "big", value: value), proposedAt: 1).rejection?.kind == .invalid)
    #expect(state.settings.isEmpty)
}

@Test func commandsResultsAndSnapshotsRoundTrip() throws {
    let commands: [ClusterCommand] = [
        .setSetting(key: "a/b.c-d_e", value: "välue"), .setSetting(key: "x", value: ""), .deleteSetting(key: "x"),
    ]
    var state = ClusterState()
    for command in commands {
        let envelope = CommandEnvelope(proposedAt: 1_700_000_000_000, command: command)
        #expect(try CommandEnvelope(decoding: envelope.encoded) == envelope)
        let result = state.apply(envelope)
        #expect(try CommandResult(decoding: result.encoded) == result)
    }
    #expect(try ClusterState(snapshot: state.snapshot) == state)
    let rejected = CommandResult.rejected(.conflict("why"))
    #expect(try CommandResult(decoding: rejected.encoded) == rejected)
}

@Test func damagedCommandsAndSnapshotsAreRefused() {
    let command = CommandEnvelope(proposedAt: 5, command: .setSetting(key: "key", value: "value")).encoded
    for cut in 0..<command.count {
        #expect(throws: WireFormatError.self) { try CommandEnvelope(decoding: Array(command[0..<cut])) }
    }
    #expect(throws: WireFormatError.self) { try CommandEnvelope(decoding: command + [0]) }
    #expect(throws: WireFormatError.self) { try CommandEnvelope(decoding: [3, 1]) }
    #expect(throws: WireFormatError.self) { try CommandEnvelope(decoding: [1, 1, 2, 0xC3, 0x28, 0]) }
    // Format version 1 knew only the settings and member commands.
    #expect(throws: WireFormatError.self) { try CommandEnvelope(decoding: [1, 12, 1]) }
    #expect(throws: WireFormatError.self) { try ClusterState(snapshot: [1, 5]) }
}

@Test func memberAddressesAreRegisteredUniqueAndSnapshotted() throws {
    var state = ClusterState()
    let n4 = MemberAddresses(
        peer: Endpoint(host: "10.0.0.4", port: 7201), client: Endpoint(host: "10.0.0.4", port: 7101))
    let n5 = MemberAddresses(peer: Endpoint(host: "10.0.0.5", port: 7201), client: Endpoint(host: "::1", port: 7101))
    #expect(state.apply(.registerMember(id: 4, addresses: n4), proposedAt: 1) == .applied(.previous(nil)))
    #expect(state.apply(.registerMember(id: 5, addresses: n5), proposedAt: 1) == .applied(.previous(nil)))
    // Another member's peer address is refused; re-registering the same member updates it.
    guard case .rejected(let rejection) = state.apply(.registerMember(id: 6, addresses: n4), proposedAt: 1) else {
        Issue.record("a duplicate peer address was accepted")
        return
    }
    #expect(rejection.kind == .conflict)
    #expect(rejection.reason.contains("already belongs to n4"))
    let moved = MemberAddresses(peer: Endpoint(host: "10.0.0.44", port: 7201), client: n4.client)
    #expect(
        state.apply(.registerMember(id: 4, addresses: moved), proposedAt: 1)
            == .applied(.previous("10.0.0.4:7201 10.0.0.4:7101")))
    #expect(state.memberAddresses == [4: moved, 5: n5])
    #expect(try ClusterState(snapshot: state.snapshot) == state)
    let envelope = CommandEnvelope(proposedAt: 9, command: .registerMember(id: 5, addresses: n5))
    #expect(try CommandEnvelope(decoding: envelope.encoded) == envelope)
}

/// Entries written by the first release (format version 1, no time) still apply.
@Test func versionOneEntriesStillDecode() throws {
    func string(_ text: String) -> [UInt8] { [UInt8(text.utf8.count)] + Array(text.utf8) }
    let set: [UInt8] = [1, 1] + string("a") + string("b")
    #expect(
        try CommandEnvelope(decoding: set) == CommandEnvelope(proposedAt: 0, command: .setSetting(key: "a", value: "b"))
    )
    let delete: [UInt8] = [1, 2] + string("a")
    #expect(try CommandEnvelope(decoding: delete).command == .deleteSetting(key: "a"))
    let register: [UInt8] = [1, 3, 4] + string("10.0.0.4:7201") + string("10.0.0.4:7101")
    #expect(
        try CommandEnvelope(decoding: register).command
            == .registerMember(
                id: 4,
                addresses: MemberAddresses(
                    peer: Endpoint(host: "10.0.0.4", port: 7201), client: Endpoint(host: "10.0.0.4", port: 7101))))
    // And the results the first release sent.
    #expect(try CommandResult(decoding: [0, 1] + string("old")) == .applied(.previous("old")))
    #expect(try CommandResult(decoding: [0, 0]) == .applied(.previous(nil)))
    #expect(try CommandResult(decoding: [1] + string("why")) == .rejected(.invalid("why")))
}

/// Entries of format version 2 carried no reason on setNodeState and moveVolume; they still apply.
@Test func versionTwoNodeAndVolumeEntriesDecodeWithoutAReason() throws {
    func string(_ text: String) -> [UInt8] { [UInt8(text.utf8.count)] + Array(text.utf8) }
    let down = CommandEnvelope(proposedAt: 7, command: .setNodeState(3, .down))
    // Version 2 wrote the same fields as version 3 without the trailing optional reason (one 0 byte);
    // version 7 added the optional expected state after it (one 0 byte when absent).
    var old = down.encoded
    old[0] = 2
    old.removeLast(2)
    #expect(try CommandEnvelope(decoding: old) == down)
    var six = down.encoded
    six[0] = 6
    six.removeLast()
    #expect(try CommandEnvelope(decoding: six) == down)
    let move: [UInt8] = [2, 7, CommandKind.moveVolume.rawValue] + string("csv1") + [2]
    #expect(try CommandEnvelope(decoding: move).command == .moveVolume("csv1", coordinator: 2, reason: nil))
    // Version 3 keeps the reason; a version-2 entry with one is damaged (bytes after the command).
    let reasoned = CommandEnvelope(proposedAt: 7, command: .setNodeState(3, .down, reason: "no heartbeat for 2.6 s"))
    #expect(try CommandEnvelope(decoding: reasoned.encoded) == reasoned)
    var mislabelled = Array(reasoned.encoded.dropLast())
    mislabelled[0] = 2
    #expect(throws: WireFormatError.self) { try CommandEnvelope(decoding: mislabelled) }
}

/// Entries before format version 4 carried no workload: a VM they create runs the standard one,
/// and `setVMWorkload` did not exist.
@Test func entriesBeforeVersionFourCreateVMsWithTheStandardWorkload() throws {
    let memory = MemorySettings(startup: 1 << 30, minimum: 1 << 29, maximum: 1 << 32)
    let spec = VMSpec(name: "Finance", memory: memory, disk: DiskFile(volume: "csv1", file: "finance.vhdx"))
    #expect(spec.workload == Workload.standard(for: memory))
    var workload = ByteWriter()
    spec.workload.encode(into: &workload)
    let entry = CommandEnvelope(proposedAt: 7, command: .createVM(spec)).encoded
    #expect(
        Array(entry.suffix(workload.bytes.count + 2)) == workload.bytes + [0, 0],
        "workload, auto-converge and the driver (simulated) end it")
    // Version 7 had no driver (its VMs are simulated); version 4 had the workload, not the
    // auto-converge flag; version 3 neither.
    var seven = Array(entry.dropLast())
    seven[0] = 7
    #expect(try CommandEnvelope(decoding: seven) == CommandEnvelope(proposedAt: 7, command: .createVM(spec)))
    var four = Array(entry.dropLast(2))
    four[0] = 4
    #expect(try CommandEnvelope(decoding: four) == CommandEnvelope(proposedAt: 7, command: .createVM(spec)))
    var old = Array(entry.dropLast(workload.bytes.count + 2))
    old[0] = 3
    #expect(try CommandEnvelope(decoding: old) == CommandEnvelope(proposedAt: 7, command: .createVM(spec)))

    let ramp = Workload(demand: .ramp(from: 1 << 30, to: 3 << 30, over: .seconds(60)), dirtyPagesPerSecond: 2000)
    let set = CommandEnvelope(proposedAt: 7, command: .setVMWorkload(1, ramp))
    #expect(try CommandEnvelope(decoding: set.encoded) == set)
    var mislabelled = set.encoded
    mislabelled[0] = 3
    #expect(throws: WireFormatError.self) { try CommandEnvelope(decoding: mislabelled) }
}

@Test func theBalanceIntervalIsAWholeNumberOfMillisecondsInRange() {
    var state = ClusterState()
    for bad in ["0", "9", "60001", "fast", "100ms"] {
        #expect(
            state.apply(.setSetting(key: Setting.balanceIntervalKey, value: bad), proposedAt: 1).rejection?.kind
                == .invalid, "\(bad)")
    }
    #expect(
        state.apply(.setSetting(key: Setting.balanceIntervalKey, value: "250"), proposedAt: 1)
            == .applied(.previous(nil)))
    #expect(Setting.balanceInterval(state.settings[Setting.balanceIntervalKey]!) == .milliseconds(250))
}

/// A restored cluster keeps everything but the old members' addresses, which it replaces by its own.
@Test func aStateMovedToNewMembersKeepsAllButTheAddresses() throws {
    var state = ClusterState()
    let old = MemberAddresses(
        peer: Endpoint(host: "10.0.0.1", port: 7201), client: Endpoint(host: "10.0.0.1", port: 7101))
    #expect(state.apply(.registerMember(id: 1, addresses: old), proposedAt: 1) == .applied(.previous(nil)))
    #expect(
        state.apply(.setSetting(key: "failover.max-per-hour", value: "3"), proposedAt: 2) == .applied(.previous(nil)))
    let new = MemberAddresses(
        peer: Endpoint(host: "192.168.9.1", port: 8201), client: Endpoint(host: "192.168.9.1", port: 8101))
    let moved = state.movedTo(memberAddresses: [1: new])
    #expect(moved.memberAddresses == [1: new])
    #expect(moved.settings == state.settings)
    #expect(moved.events == state.events)
    #expect(try ClusterState(snapshot: moved.snapshot) == moved)
    #expect(state.movedTo(memberAddresses: state.memberAddresses) == state)
}
