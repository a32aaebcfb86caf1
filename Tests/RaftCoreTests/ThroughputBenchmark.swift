// A benchmark, not a timed test: three cores in one thread, no I/O, measuring what the core alone
// sustains. Skipped unless FLOTILLA_RAFT_BENCH=1; run it in release:
// FLOTILLA_RAFT_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter rawCoreThroughput
import ClusterModel
import Foundation
import RaftCore
import Testing

private let benchmarkEnabled = ProcessInfo.processInfo.environment["FLOTILLA_RAFT_BENCH"] == "1"

@Test(.enabled(if: benchmarkEnabled), arguments: [1, 10, 100, 1000])
func rawCoreThroughput(batch: Int) throws {
    var nodes: [NodeID: RaftNode] = [:]
    let ids: [NodeID] = [1, 2, 3]
    for id in ids {
        nodes[id] = try RaftNode(
            configuration: RaftConfiguration(id: id, preVote: false),
            membership: Membership(voters: Set(ids)),
            random: SeededGenerator(seed: id.rawValue)
        )
    }
    func settle() throws {
        var moved = true
        while moved {
            moved = false
            for id in ids where nodes[id]!.hasReady {
                moved = true
                let ready = nodes[id]!.ready()
                nodes[id]!.advance(ready)
                for message in ready.messages { try nodes[message.to]!.step(message) }
            }
        }
    }
    nodes[1]!.campaign()
    try settle()
    let payload = [UInt8](repeating: 7, count: 128)
    let total = 200_000
    var sequence: UInt64 = 0
    let clock = ContinuousClock()
    let elapsed = try clock.measure {
        while sequence < UInt64(total) {
            for _ in 0..<batch {
                sequence += 1
                try nodes[1]!.propose(payload, requestID: RequestID(client: 1, sequence: sequence))
            }
            try settle()
            if sequence % 20_000 == 0 {
                try nodes[1]!.compact(snapshotAt: nodes[1]!.status.applied, data: [])
            }
        }
    }
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    print(
        "raft core, 3 nodes in one thread, 128-byte commands, \(batch) per Ready: \(Int(Double(total) / seconds)) entries/s"
    )
    #expect(nodes.values.allSatisfy { $0.status.commit == LogIndex(UInt64(total) + 1) })
}
