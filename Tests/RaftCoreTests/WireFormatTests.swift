// Every Raft value survives encoding; damaged or hostile bytes are refused, never crash.
import ClusterModel
import RaftCore
import Testing

private let membership = Membership(voters: [1, 2, 3], learners: [4])
private let metadata = SnapshotMetadata(
    index: 120, term: 7, membership: membership, appliedRequests: [9: 44, 1 << 40: .max])

private let entries: [Entry] = [
    Entry(term: 1, index: 1, payload: .noop),
    Entry(term: 2, index: 2, requestID: RequestID(client: 77, sequence: 3), payload: .command(Array("put k v".utf8))),
    Entry(term: .init(UInt64.max), index: .init(UInt64.max - 1), payload: .command([])),
    Entry(term: 3, index: 4, payload: .membership(membership)),
]

private let messages: [Message] = [
    .preVote(VoteRequest(lastIndex: 9, lastTerm: 2)),
    .preVoteResponse(granted: true),
    .vote(VoteRequest(lastIndex: 9, lastTerm: 2, isLeadershipTransfer: true)),
    .voteResponse(granted: false),
    .append(AppendEntries(previousIndex: 3, previousTerm: 1, entries: entries, commit: 2)),
    .append(AppendEntries(previousIndex: 0, previousTerm: 0, entries: [], commit: 0)),
    .appendResponse(AppendResponse(index: 8, rejected: true, hintIndex: 5, hintTerm: 2)),
    .heartbeat(Heartbeat(commit: 5, readRound: 12)),
    .heartbeat(Heartbeat(commit: 5, readRound: 13, lease: .milliseconds(40))),
    .heartbeatResponse(readRound: 12),
    .heartbeatResponse(readRound: 13, promised: true),
    .installSnapshot(SnapshotChunk(metadata: metadata, offset: 4, bytes: [1, 2, 3], totalBytes: 10, isLast: false)),
    .snapshotResponse(SnapshotChunkResponse(index: 120, nextOffset: 7, resend: true)),
    .timeoutNow,
    .readIndex(context: Array("read-1".utf8)),
    .readIndexResponse(ReadState(index: 17, context: [0xFF])),
].enumerated().map { Message(from: 1, to: NodeID(UInt64($0.offset + 2)), term: 5, kind: $0.element) }

@Test func everyMessageKindRoundTrips() throws {
    for message in messages {
        #expect(try Message(wireBytes: message.wireBytes) == message)
    }
}

/// Heartbeats and answers without a lease promise are written as builds before lease reads wrote
/// them (kinds 6 and 7): only a lease round's heartbeat (13, with the lease in microseconds, rounded
/// up) and a promise's answer (14) use kinds they cannot read (peer stream format 2).
@Test func onlyALeaseRoundsHeartbeatAndAPromisesAnswerUseTheNewKinds() throws {
    func bytes(_ kind: MessageKind) -> [UInt8] { Message(from: 1, to: 2, term: 5, kind: kind).wireBytes }
    #expect(bytes(.heartbeat(Heartbeat(commit: 5, readRound: 12))) == [1, 2, 5, 6, 5, 12])
    #expect(
        bytes(.heartbeat(Heartbeat(commit: 5, readRound: 12, lease: .microseconds(100)))) == [1, 2, 5, 13, 5, 12, 100])
    #expect(bytes(.heartbeatResponse(readRound: 12)) == [1, 2, 5, 7, 12])
    #expect(bytes(.heartbeatResponse(readRound: 12, promised: true)) == [1, 2, 5, 14, 12])
    let rounded = try Message(
        wireBytes: bytes(.heartbeat(Heartbeat(commit: 5, readRound: 12, lease: .nanoseconds(99_001)))))
    #expect(rounded.kind == .heartbeat(Heartbeat(commit: 5, readRound: 12, lease: .microseconds(100))))
}

@Test func storedValuesRoundTrip() throws {
    for entry in entries { #expect(try Entry(wireBytes: entry.wireBytes) == entry) }
    let hardStates = [HardState(), HardState(term: 9, vote: 3, commit: 77)]
    for hardState in hardStates { #expect(try HardState(wireBytes: hardState.wireBytes) == hardState) }
    let snapshot = Snapshot(metadata: metadata, data: Array(repeating: 0xAB, count: 300))
    #expect(try Snapshot(wireBytes: snapshot.wireBytes) == snapshot)
}

/// Cut short anywhere, or with a byte more, a message is refused with an error.
@Test func truncatedOrPaddedMessagesAreRefused() {
    for message in messages {
        let bytes = message.wireBytes
        for cut in 0..<bytes.count {
            #expect(throws: WireFormatError.self, "\(message) cut at \(cut)") {
                try Message(wireBytes: Array(bytes[0..<cut]))
            }
        }
        #expect(throws: WireFormatError.self) { try Message(wireBytes: bytes + [0]) }
    }
}

/// Random bytes and random corruptions of real messages decode or throw; none crashes or allocates wildly.
@Test func randomBytesNeverCrashTheDecoder() {
    var random = SeededGenerator(seed: 2024)
    for round in 0..<20_000 {
        var bytes: [UInt8]
        if round % 2 == 0 {
            bytes = (0..<Int.random(in: 0..<64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
        } else {
            bytes = messages[round % messages.count].wireBytes
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
        }
        _ = try? Message(wireBytes: bytes)
    }
}

@Test func hostileCountsAndValuesAreNamed() {
    // An append claiming 2^40 entries in a few bytes.
    var writer = ByteWriter()
    for value: UInt64 in [1, 2, 5] { writer.writeVarint(value) }
    writer.write(4 as UInt8)
    for value: UInt64 in [0, 0, 0, 1 << 40] { writer.writeVarint(value) }
    let error = #expect(throws: WireFormatError.self) { try Message(wireBytes: writer.bytes) }
    #expect(error?.description.contains("exceeds") == true)

    #expect(throws: WireFormatError.self) { try Message(wireBytes: [0, 2, 5, 10]) }  // node id 0
    #expect(throws: WireFormatError.self) { try Message(wireBytes: [1, 2, 5, 99]) }  // unknown kind
    let overflow: [UInt8] = [1, 2] + Array(repeating: 0xFF, count: 10) + [0x01]
    #expect(throws: WireFormatError.self) { try Message(wireBytes: overflow) }
    let both = Membership(voters: [1], learners: [1])
    #expect(throws: WireFormatError.self) { try Membership(wireBytes: both.wireBytes) }
}
