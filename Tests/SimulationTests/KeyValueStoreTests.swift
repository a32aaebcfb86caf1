// Tests of the simulated state machine's command and snapshot encodings.
import FlotillaTestKit
import Testing

@Test(arguments: [(UInt32(0), UInt64(0)), (7, 42), (.max, .max)])
func aPutCommandRoundTrips(key: UInt32, value: UInt64) {
    let command = KeyValueCommand.put(key: key, value: value)
    #expect(command.encoded.count <= 32)
    #expect(KeyValueCommand(decoding: command.encoded) == command)
}

@Test func malformedCommandsAreRejectedWithTheirSize() {
    #expect(KeyValueCommand(decoding: [0x50, 1, 2]) == nil)
    for text in ["P1=", "P=1", "X1=2", "P1=2=3", "P1=-2", "P4294967296=1", "P1=18446744073709551616"] {
        #expect(KeyValueCommand(decoding: Array(text.utf8)) == nil, "\(text) is not a put")
    }
    #expect(KeyValueCommand(decoding: Array("P7=42".utf8)) == .put(key: 7, value: 42))
    var store = KeyValueStore()
    let error = #expect(throws: KeyValueStore.DecodingError.self) { try store.apply([9]) }
    #expect(error?.description.contains("got 1 bytes") == true)
}

@Test func aSnapshotRebuildsTheSameStore() throws {
    var store = KeyValueStore()
    for key in (0..<20 as Range<UInt32>).reversed() {
        try store.apply(KeyValueCommand.put(key: key, value: UInt64(key) * 3).encoded)
    }
    try store.apply(KeyValueCommand.put(key: 4, value: 99).encoded)
    let restored = try KeyValueStore(snapshot: store.snapshotData())
    #expect(restored == store)
    #expect(restored[4] == 99)
    #expect(restored[100] == nil)
    #expect(throws: KeyValueStore.DecodingError.self) { try KeyValueStore(snapshot: [1, 2, 3]) }
}

@Test func theTraceKeepsTheLastLinesInOrder() {
    var trace = SimulationTrace(capacity: 3, echo: false)
    for line in 1...5 { trace.record("event \(line)") }
    #expect(trace.recentLines == ["event 3", "event 4", "event 5"])
    #expect(trace.recordedCount == 5)
}
