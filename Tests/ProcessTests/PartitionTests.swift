// Nodes on their own hosts: a leader cut off into a minority steps down; its uncommitted writes vanish.
import Foundation
import Node
import Testing

@Suite(.serialized, .timeLimit(.minutes(3)), .enabled(if: ProcessCluster.canIsolateHosts, "needs root and iproute2"))
struct PartitionTests {
    @Test func aLeaderPartitionedIntoAMinorityStepsDownAndItsUncommittedWritesAreDiscarded() async throws {
        let cluster = try ProcessCluster(size: 3, hosts: true)
        try cluster.startAll()
        let oldLeader = try await cluster.awaitLeader()
        for number in 1...5 { try await cluster.client(oldLeader).setSetting("before-\(number)", to: "yes") }

        try cluster.isolate(oldLeader)
        // A write to the isolated leader cannot commit: it times out, its outcome unknown to the client.
        await #expect(throws: APIError.self) {
            try await cluster.client(oldLeader).setSetting("doomed", to: "never-committed")
        }
        // The majority elects a new leader and goes on.
        let newLeader = try await cluster.awaitLeader(excluding: [oldLeader])
        #expect(newLeader != oldLeader)
        try await cluster.client(newLeader).setSetting("after", to: "yes")
        // CheckQuorum: the old leader, hearing no majority, stops calling itself leader.
        try await cluster.await("n\(oldLeader) steps down") {
            (try? await cluster.client(oldLeader).status(stale: true).leader) != "n\(oldLeader)"
        }

        try cluster.heal(oldLeader)
        // Back in the majority, the old leader's uncommitted entry is replaced by the new leader's log.
        try await cluster.await("n\(oldLeader) catches up") {
            (try? await cluster.client(oldLeader).settings(stale: true))?["after"] == "yes"
        }
        let settings = try await cluster.client(oldLeader).settings()
        #expect(settings["doomed"] == nil, "an uncommitted write of the deposed leader survived\n\(cluster.logTails())")
        #expect(Set(settings.keys) == Set((1...5).map { "before-\($0)" } + ["after"]))
        await cluster.close()
    }
}
