// SIGKILL a node while it writes snapshots: it restarts from what is on disk and loses nothing acknowledged.
import FlotillaClient
import Foundation
import Node
import Synchronization
import Testing

@Suite(.serialized, .timeLimit(.minutes(3)))
struct SnapshotKillTests {
    /// A one-node cluster that snapshots every ten entries of a multi-megabyte state spends much of
    /// its time writing snapshot files; killing it at random moments lands inside some of those
    /// writes (a `.tmp` file left behind proves it). Every restart must come back with every
    /// acknowledged write and never load the half-written file.
    @Test func killsDuringSnapshotWritesLoseNothingAcknowledged() async throws {
        let cluster = try ProcessCluster(size: 1, snapshotEntries: 10)
        let history = WriteHistory()
        var generator = SystemRandomNumberGenerator()
        var killedMidSnapshot = 0
        var round = 0
        while round < 12 && (round < 6 || killedMidSnapshot == 0) {
            round += 1
            try cluster.start(1)
            _ = try await cluster.awaitLeader()
            let problems = history.problems(in: try await cluster.client(1).settings())
            #expect(problems.isEmpty, "after kill \(round - 1): \(problems.prefix(3))")
            // Writers keep the node busy; the kill comes at a random moment.
            let writers = Task { [round] in
                await withTaskGroup(of: Void.self) { group in
                    for writer in 0..<4 {
                        group.addTask {
                            var number = 0
                            while !Task.isCancelled {
                                number += 1
                                let key = "w\(writer)-k\(number % 16)"
                                // ~48 KiB values: a state of a few MiB makes every snapshot a long write.
                                let text = "r\(round)n\(number)-" + String(repeating: "x", count: 48 << 10)
                                let acknowledged = (try? await cluster.client(1).setSetting(key, to: text)) != nil
                                history.record(key, text, acknowledged: acknowledged)
                            }
                        }
                    }
                }
            }
            // Odd rounds kill at a random moment; even rounds watch the snapshot directory and kill
            // the moment a snapshot's temporary file appears, i.e. inside the write.
            let snapshotDirectory = cluster.directory + "/n1/raft/snap"
            let writing = {
                (try? FileManager.default.contentsOfDirectory(atPath: snapshotDirectory))?.contains {
                    $0.hasSuffix(".tmp")
                } == true
            }
            if round % 2 == 1 {
                try await Task.sleep(for: .milliseconds(Int.random(in: 150...600, using: &generator)))
            } else {
                let deadline = ContinuousClock.now + .seconds(5)
                while !writing() && ContinuousClock.now < deadline { usleep(200) }
            }
            cluster.kill9(1)
            writers.cancel()
            await writers.value
            // The temporary file is renamed once written: still there, the kill was mid-write.
            if writing() { killedMidSnapshot += 1 }
        }
        #expect(killedMidSnapshot > 0, "no kill in \(round) rounds landed inside a snapshot write")
        try cluster.start(1)
        _ = try await cluster.awaitLeader()
        let problems = history.problems(in: try await cluster.client(1).settings())
        #expect(problems.isEmpty, "after the last kill: \(problems.prefix(3))")
        #expect(cluster.terminate(1) == 0)
        await cluster.close()
    }
}

/// Per key: the last acknowledged value, and values written after it whose answer never came
/// (they may or may not have been applied before the kill).
private final class WriteHistory: Sendable {
    private let keys = Mutex<[String: (acknowledged: String?, unsure: Set<String>)]>([:])

    func record(_ key: String, _ value: String, acknowledged: Bool) {
        keys.withLock { keys in
            if acknowledged {
                keys[key] = (value, [])
            } else {
                keys[key, default: (nil, [])].unsure.insert(value)
            }
        }
    }

    /// Keys whose value is neither the last acknowledged one nor a later unanswered write.
    func problems(in settings: [String: String]) -> [String] {
        keys.withLock { keys in
            keys.compactMap { key, history in
                let found = settings[key]
                if found == history.acknowledged { return nil }
                if let found, history.unsure.contains(found) { return nil }
                let want = history.acknowledged.map { String($0.prefix(12)) } ?? "nothing"
                return "\(key): expected \(want), found \(found.map { String($0.prefix(12)) } ?? "nothing")"
            }
        }
    }
}
