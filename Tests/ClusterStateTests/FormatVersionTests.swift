// The cluster state's formats read at their current version and refused, naming both, at the next.
import ClusterModel
import ClusterState
import Testing

private let upgradeAdvice = "upgrade this node (docs/operations.md, Upgrades)"

@Test func anEntryOfTheCurrentFormatDecodes() throws {
    let envelope = CommandEnvelope(proposedAt: 1234, command: .setSetting(key: "a", value: "b"))
    #expect(envelope.encoded.first == CommandEnvelope.formatVersion)
    #expect(try CommandEnvelope(decoding: envelope.encoded) == envelope)
}

@Test func anEntryOfANewerFormatIsRefusedNamingBothVersions() throws {
    var bytes = CommandEnvelope(proposedAt: 1234, command: .setSetting(key: "a", value: "b")).encoded
    bytes[0] = CommandEnvelope.formatVersion + 1
    let error = #expect(throws: WireFormatError.self) { try CommandEnvelope(decoding: bytes) }
    #expect(error?.newerFormat?.found == UInt64(CommandEnvelope.formatVersion) + 1)
    #expect(error?.newerFormat?.newest == UInt64(CommandEnvelope.formatVersion))
    #expect(error?.description == "a log entry is entry format 10; this build reads up to 9: \(upgradeAdvice)")
}

/// Damage is not a newer format: a caller refuses it instead of stopping.
@Test func anEntryOfVersionZeroIsDamageNotANewerFormat() {
    let error = #expect(throws: WireFormatError.self) { try CommandEnvelope(decoding: [0, 0]) }
    #expect(error != nil && error?.newerFormat == nil)
}

@Test func aResultOfTheCurrentFormatDecodesAndANewerOneIsRefused() throws {
    let result = CommandResult.rejected(.conflict("taken"))
    #expect(try CommandResult(decoding: result.encoded) == result)
    var bytes = result.encoded
    bytes[0] = CommandResult.formatVersion + 1
    let error = #expect(throws: WireFormatError.self) { try CommandResult(decoding: bytes) }
    #expect(
        error?.description == "a command result is command result format 3; this build reads up to 2: \(upgradeAdvice)")
}

@Test func aStateSnapshotOfTheCurrentFormatDecodesAndANewerOneIsRefused() throws {
    var state = ClusterState()
    _ = state.apply(CommandEnvelope(proposedAt: 5, command: .setSetting(key: "a", value: "b")))
    #expect(state.snapshot.first == ClusterState.snapshotVersion)
    #expect(try ClusterState(snapshot: state.snapshot) == state)

    var bytes = state.snapshot
    bytes[0] = ClusterState.snapshotVersion + 1
    let error = #expect(throws: WireFormatError.self) { try ClusterState(snapshot: bytes) }
    #expect(error?.newerFormat?.found == UInt64(ClusterState.snapshotVersion) + 1)
    #expect(
        error?.description
            == "the cluster state snapshot is state snapshot format 7; this build reads up to 6: \(upgradeAdvice)")
}
