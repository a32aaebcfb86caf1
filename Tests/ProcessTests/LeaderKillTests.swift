// Real node processes: SIGKILL the leader under concurrent writes; nothing acknowledged is lost.
import FlotillaClient
import FlotillaTestKit
import Foundation
import Node
import Testing

@Suite(.serialized, .timeLimit(.minutes(3)))
struct LeaderKillTests {
    @Test func killingTheLeaderUnderWritesLosesNothingAcknowledged() async throws {
        let cluster = try ProcessCluster(size: 3)
        try cluster.startAll()
        let firstLeader = try await cluster.awaitLeader()
        let recorder = HistoryRecorder()

        // Six clients, each on its own node in turn, writing unique values to three keys and reading them.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 1...6 {
                group.addTask {
                    for step in 0..<40 {
                        let key = UInt32((client + step) % 3)
                        let node = (client + 2 * step) % 3 + 1
                        let api = cluster.client(node)
                        if step % 3 == 2 {
                            let handle = recorder.invoke(client: UInt64(client), .get(key: key))
                            // A failed read stays pending: it changed nothing and constrains nothing.
                            if let result = await readSetting(api, key) { recorder.complete(handle, result) }
                        } else {
                            let value = UInt64(client * 1000 + step)
                            let handle = recorder.invoke(client: UInt64(client), .put(key: key, value: value))
                            do {
                                try await api.setSetting("k\(key)", to: String(value))
                                recorder.complete(handle, .written)
                            } catch let error as APIError where error.hadNoEffect {
                                recorder.discard(handle)
                            } catch {
                                // Any other failure stays pending: the write may or may not have been applied.
                            }
                        }
                    }
                }
            }
            // Once some writes are acknowledged, kill the leader with SIGKILL.
            group.addTask {
                while recorder.acknowledgedWrites < 30 { try await Task.sleep(for: .milliseconds(5)) }
                cluster.kill9(firstLeader)
            }
            try await group.waitForAll()
        }

        // A new leader serves; the old one comes back and catches up.
        let newLeader = try await cluster.awaitLeader(excluding: [firstLeader])
        #expect(newLeader != firstLeader)
        try cluster.start(firstLeader)
        _ = try await cluster.awaitLeader()

        // Final linearizable reads through every node, including the restarted one.
        for node in 1...3 {
            for key: UInt32 in 0..<3 {
                let handle = recorder.invoke(client: 100, .get(key: key))
                let result = try #require(
                    await readSetting(cluster.client(node), key), "final read of k\(key) on n\(node)")
                recorder.complete(handle, result)
            }
        }

        let history = recorder.operations
        let acknowledged = history.filter { $0.result == .written }.count
        #expect(acknowledged >= 30, "only \(acknowledged) writes were acknowledged\n\(cluster.logTails())")
        let report = LinearizabilityChecker().check(history)
        #expect(report.verdict == .linearizable, "\(report.verdict)\n\(cluster.logTails())")
        await cluster.close()
    }
}
