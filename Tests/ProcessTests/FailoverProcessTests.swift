// Real node processes: SIGKILL a node that owns VMs; the survivors restart them, and it comes back.
import ClusterModel
import Foundation
import Node
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct FailoverProcessTests {
    @Test func aKilledNodesVMsAndVolumeMoveToSurvivorsAndTheNodeComesBackUp() async throws {
        // A 1 s election timeout (20 ms ticks): elections stay rare on a busy machine.
        let cluster = try ProcessCluster(size: 3, electionTicks: 50)
        try cluster.startAll()
        let leaderNumber = try await cluster.awaitLeader()
        let victimNumber = leaderNumber % 3 + 1
        let victim = "n\(victimNumber)"
        let clients = (1...3).map { node in
            APIClient(
                endpoint: Endpoint(host: "127.0.0.1", port: cluster.clientPorts[node - 1]), timeout: .seconds(10),
                noLeaderPatience: .seconds(10))
        }
        let survivor = clients[leaderNumber - 1]
        try await cluster.await("all three nodes registered") {
            (try? await survivor.nodes())?.map(\.id) == ["n1", "n2", "n3"]
        }

        _ = try await survivor.createVolume("csv1", coordinator: victim)
        let names = ["Finance", "Engineering", "Sales"]
        for (name, priority) in zip(names, ["low", "high", "medium"]) {
            _ = try await survivor.createVM(
                VMCreation(name: name, startup: 1 << 30, restartPriority: priority, volume: "csv1"))
            _ = try await survivor.startVM(name, on: victim)
        }
        let before = Dictionary(uniqueKeysWithValues: try await survivor.vms().map { ($0.name, $0) })
        #expect(before.values.allSatisfy { $0.owner == victim && $0.state == "running" })

        let killedAt = ContinuousClock.now
        cluster.kill9(victimNumber)
        // Lease 2 s + margin 0.5 s, then one controller round and three commits.
        try await cluster.await("\(victim) declared down and its VMs running on survivors", within: .seconds(12)) {
            guard let nodes = try? await survivor.nodes(), let vms = try? await survivor.vms() else { return false }
            return nodes.first { $0.id == victim }?.state == "down"
                && vms.allSatisfy { $0.state == "running" && $0.owner != victim && $0.owner != nil }
        }
        let failoverTime = ContinuousClock.now - killedAt
        #expect(failoverTime >= .milliseconds(2000), "declared down before its lease could have run out")
        for vm in try await survivor.vms() {
            // Epoch + 1 when its owner went down, + 1 again for the new owner.
            #expect(vm.epoch == before[vm.name]!.epoch + 2, "\(vm)")
        }
        let volume = try await survivor.volumes().first { $0.id == "csv1" }
        #expect(volume?.state == "online" && volume?.coordinator != victim)
        let events = try await survivor.events()
        let placed = events.filter { $0.kind == "vm.owner-changed" && $0.detail.contains("failover from \(victim)") }
        // Restart priority order: Engineering (high), Sales (medium), Finance (low).
        let engineering = before["Engineering"]!.id
        let sales = before["Sales"]!.id
        let finance = before["Finance"]!.id
        #expect(placed.compactMap(\.vm) == [engineering, sales, finance], "\(placed)")

        try cluster.start(victimNumber)
        try await cluster.await("\(victim) back up", within: .seconds(12)) {
            (try? await survivor.nodes())?.first { $0.id == victim }?.state == "up"
        }
        // Its VMs stay where failover put them.
        #expect(try await survivor.vms().allSatisfy { $0.owner != victim })
        for client in clients { await client.close() }
        await cluster.close()
    }
}
