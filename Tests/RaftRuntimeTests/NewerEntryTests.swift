// A committed entry the state machine cannot read (a newer format) stops the driver before it.
import ClusterModel
import FlotillaTestKit
import RaftCore
import RaftRuntime
import RaftStorage
import Testing

/// Applies commands as text; `from the future` is an entry of a format it does not read.
private struct TextLog: ReplicatedStateMachine {
    var applied: [String] = []

    mutating func apply(_ command: [UInt8], at index: LogIndex) throws -> [UInt8] {
        let text = String(decoding: command, as: UTF8.self)
        guard text != "from the future" else {
            throw NewerFormatVersion(subject: "log entry \(index)", format: "test format", found: 2, newest: 1)
        }
        applied.append(text)
        return command
    }

    func snapshot() -> [UInt8] { [] }
    mutating func restore(from snapshot: [UInt8]) throws {}
}

private struct Alone: PeerTransport {
    func send(_ messages: [Message]) {}
}

@Test(.timeLimit(.minutes(1)))
func aDriverStopsAtAnEntryItsMachineCannotReadAndAppliesNothingAfterIt() async throws {
    let root = try TemporaryDirectory()
    let (storage, recovered) = try RaftDiskStorage.open(directory: root.path)
    let driver = try RaftDriver(
        configuration: RaftConfiguration(id: 1, electionTicks: 10, heartbeatTicks: 1),
        bootstrapMembership: Membership(voters: [1]), storage: storage, recovered: recovered,
        machine: TextLog(), transport: Alone(), tickDuration: .milliseconds(2), seed: 1)
    await driver.start()
    _ = await driver.awaitLeader()

    let answer = try await driver.propose(
        Array("first".utf8), requestID: RequestID(client: 1, sequence: 1), timeoutTicks: 500)
    #expect(answer == Array("first".utf8))
    await #expect(throws: RaftDriverError.self) {
        try await driver.propose(
            Array("from the future".utf8), requestID: RequestID(client: 1, sequence: 2), timeoutTicks: 500)
    }
    let failure = await driver.waitForFailure()
    #expect(
        failure as? NewerFormatVersion
            == NewerFormatVersion(
                subject: "log entry 3", format: "test format", found: 2, newest: 1))
    await #expect(throws: RaftDriverError.self) {
        try await driver.propose(Array("after".utf8), requestID: RequestID(client: 1, sequence: 3), timeoutTicks: 500)
    }
    #expect(await driver.staleRead { $0.applied } == ["first"])
}
