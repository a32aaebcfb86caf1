// Real node processes: SIGKILL a node that owns VMs; the survivors restart them, and it comes back.
import ClusterModel
import FlotillaAPI
import FlotillaClient
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
        // It holds a lease and runs them: only then may a lease keep them from failing over at once.
        try await Self.awaitRunning(names.count, on: victimNumber, cluster)

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

    @Test func theLeadersKilledNodeFailsOverALeaseAfterItWasLastHeardOf() async throws {
        // A 1 s election timeout (20 ms ticks): the survivors elect a new leader 1-2 s after the kill,
        // so a bound from the new leader's own election would come that much later. Without the
        // leader-silence fast path (a frozen leader is silent, as a vanished host is): with it the
        // survivors would elect within a few hundred ms, too soon to tell the two bounds apart.
        let cluster = try ProcessCluster(
            size: 3, electionTicks: 50, environment: ["FLOTILLA_LEADER_SILENCE_TICKS": "0"])
        try cluster.startAll()
        let victimNumber = try await cluster.awaitLeader()
        let victim = "n\(victimNumber)"
        let survivorNumber = victimNumber % 3 + 1
        let survivor = cluster.client(survivorNumber)
        try await cluster.await("all three nodes registered") {
            (try? await survivor.nodes())?.map(\.id) == ["n1", "n2", "n3"]
        }
        _ = try await survivor.createVolume("csv1", coordinator: victim)
        for name in ["Finance", "Engineering"] {
            _ = try await survivor.createVM(VMCreation(name: name, startup: 1 << 30, volume: "csv1"))
            _ = try await survivor.startVM(name, on: victim)
        }
        try await Self.awaitRunning(2, on: victimNumber, cluster)
        // The leader is still the victim (no election since): it kills the leader.
        #expect(try await cluster.awaitLeader() == victimNumber)

        // Frozen first, so the survivors notice only by the election timeout (a killed process closes
        // its connections, and followers that see that elect a new leader within a few ticks, which
        // would leave too little time between the last contact and the election to tell the two
        // bounds apart); killed once a new leader is in place.
        let killedAt = ContinuousClock.now
        cluster.freeze(victimNumber)
        try await cluster.await("a leader other than the frozen \(victim)", within: .seconds(15)) {
            guard let leader = try? await survivor.status(stale: true).leader else { return false }
            return leader != victim
        }
        cluster.kill9(victimNumber)
        try await cluster.await("\(victim) declared down and its VMs running on survivors", within: .seconds(15)) {
            guard let nodes = try? await survivor.nodes(), let vms = try? await survivor.vms() else { return false }
            return nodes.first { $0.id == victim }?.state == "down"
                && vms.allSatisfy { $0.state == "running" && $0.owner != victim && $0.owner != nil }
        }
        let failoverTime = ContinuousClock.now - killedAt
        #expect(failoverTime >= .milliseconds(2000), "declared down before its lease could have run out")

        // The new leader's bound: the predecessor was last heard of about when it was killed,
        // at least most of an election timeout before the new leader took over.
        let newLeader = try await cluster.awaitLeader(excluding: [victimNumber])
        let log = try String(contentsOfFile: cluster.directory + "/n\(newLeader).log", encoding: .utf8)
        let line = try #require(
            log.split(separator: "\n").last { $0.contains("the failover controller starts") },
            "\(cluster.logTails())")
        let heard = try #require(Self.number(before: " ms ago", in: line), "\(line)")
        let wait = try #require(Self.number(atEndOf: line), "\(line)")
        #expect(heard >= 700, "the bound is the predecessor contact, not the election: \(line)")
        // The wait is lease 2 s + margin 0.5 s after the last contact, not after the election: how
        // soon the VMs then run elsewhere is measured by scripts/bench-failover.sh, not asserted here.
        #expect(wait <= 2500 - 700, "\(line)")
        await cluster.close()
    }

    /// Waits until node `node`'s agent, unfenced, runs `count` VMs.
    static func awaitRunning(_ count: Int, on node: Int, _ cluster: ProcessCluster) async throws {
        try await cluster.await("n\(node) holding a lease and running its \(count) VMs") {
            guard let agent = try? await cluster.client(node).agent() else { return false }
            return agent.fenced == nil && agent.vms.count == count && agent.vms.allSatisfy(\.running)
        }
    }

    /// The integer right before `suffix` in `line` ("… 1234 ms ago" → 1234).
    static func number(before suffix: String, in line: Substring) -> Int? {
        guard let range = line.range(of: suffix) else { return nil }
        return Int(line[..<range.lowerBound].split(separator: " ").last ?? "")
    }

    /// The integer before the trailing " ms" of a line.
    static func number(atEndOf line: Substring) -> Int? {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasSuffix(" ms") else { return nil }
        return Int(trimmed.dropLast(3).split(separator: " ").last ?? "")
    }
}
