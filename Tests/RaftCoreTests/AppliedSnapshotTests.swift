// A backup's metadata: what the state as applied stands for, taken without compacting the log.
import ClusterModel
import RaftCore
import Testing

@Test func theAppliedMetadataMatchesWhatCompactionWouldRecordAndKeepsTheLog() throws {
    var node = try RaftNode(
        configuration: RaftConfiguration(id: 1), membership: Membership(voters: [1]), random: SeededGenerator(seed: 1))
    func settle() {
        while node.hasReady { node.advance(node.ready()) }
    }
    node.campaign()
    settle()
    for sequence: UInt64 in 1...5 {
        _ = try node.propose(Array("set k\(sequence)".utf8), requestID: RequestID(client: 9, sequence: sequence))
    }
    settle()
    let metadata = try node.appliedSnapshotMetadata()
    #expect(metadata.index == node.status.applied)
    #expect(metadata.term == node.term)
    #expect(metadata.membership == Membership(voters: [1]))
    #expect(metadata.appliedRequests == [9: 5])
    // Nothing was compacted: the entries are still in the log.
    #expect(node.logEntries(from: 1).count == Int(metadata.index.rawValue))

    // While a batch is out, the state machine may not match the commit: refused.
    _ = try node.propose(Array("set k6".utf8), requestID: RequestID(client: 9, sequence: 6))
    node.advance(node.ready())  // persisted: it commits
    let pending = node.ready()
    #expect(!pending.committedEntries.isEmpty)
    #expect(throws: CompactionError.self) { try node.appliedSnapshotMetadata() }
    node.advance(pending)
    settle()

    let after = try node.appliedSnapshotMetadata()
    let compacted = try node.compact(snapshotAt: node.status.applied, data: [])
    #expect(compacted.metadata == after)
}
