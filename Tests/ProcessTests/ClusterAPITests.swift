// Real node processes: every cluster-state endpoint of the client API, its errors, and reads from any node.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import HTTP2
import Node
import Synchronization
import Testing

private let gib: UInt64 = 1 << 30
private let mib: UInt64 = 1 << 20

/// The committed part of VM views: without the memory figures their owners report, which move
/// with each balancing pass between one read and the next.
private func committed(_ vms: [VMView]) -> [VMView] {
    vms.map { vm in
        var vm = vm
        (vm.memory.assigned, vm.memory.demand, vm.memory.status, vm.memory.pagingBytes) = (nil, nil, nil, nil)
        return vm
    }
}

/// The committed part of node views: without the memory their nodes report.
private func committed(_ nodes: [NodeView]) -> [NodeView] {
    nodes.map { node in
        var node = node
        node.memory = nil
        return node
    }
}

/// Expects `body` to fail with an API error of `status`; returns its message.
@discardableResult
private func expectStatus(
    _ status: Int, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation
) async -> String {
    do {
        try await body()
        Issue.record("expected HTTP \(status), but the call succeeded", sourceLocation: sourceLocation)
    } catch let error as APIError {
        #expect(error.status == status, "\(error.message)", sourceLocation: sourceLocation)
        return error.message
    } catch {
        Issue.record("expected an APIError, got \(error)", sourceLocation: sourceLocation)
    }
    return ""
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct ClusterAPITests {
    @Test func everyEndpointAndItsErrorsOnAThreeNodeCluster() async throws {
        // A 1 s election timeout and clients that wait out an election: the suite runs beside
        // others on a busy machine, where a 200 ms timeout may move leadership mid-test.
        let cluster = try ProcessCluster(size: 3, electionTicks: 50)
        try cluster.startAll()
        let leaderNumber = try await cluster.awaitLeader()
        let clients = (1...3).map { node in
            APIClient(
                endpoint: Endpoint(host: "127.0.0.1", port: cluster.clientPorts[node - 1]), timeout: .seconds(10),
                noLeaderPatience: .seconds(10))
        }
        // "leader" is the first leader; should leadership move, it forwards like any node.
        let leader = clients[leaderNumber - 1]
        let follower = clients[leaderNumber % 3]

        // Every node registers itself with the default usable memory.
        try await cluster.await("all three nodes registered") {
            (try? await leader.nodes())?.map(\.id) == ["n1", "n2", "n3"]
        }
        let nodes = try await follower.nodes()
        #expect(nodes.allSatisfy { $0.usableMemory == 8 * gib && $0.state == "up" && $0.role == "voter" })
        #expect(nodes.map(\.clientAddress) == cluster.clientPorts.map { "127.0.0.1:\($0)" })

        // Volumes: create (through a follower, forwarded), and every refusal.
        let volume = try await follower.createVolume("csv1", coordinator: "n1")
        #expect(volume.id == "csv1" && volume.path == "volumes/csv1" && volume.coordinator == "n1")
        #expect(volume.state == "online" && volume.vms == [])
        await expectStatus(409) { try await leader.createVolume("csv1", coordinator: "n2", path: "other") }
        await expectStatus(400) { try await leader.createVolume("CSV 2", coordinator: "n1") }
        await expectStatus(404) { try await leader.createVolume("csv2", coordinator: "n9") }
        await expectStatus(400) { try await leader.createVolume("csv2", coordinator: "nine") }
        await expectStatus(400) { _ = try await leader.call(.post, "/v1/volumes", body: Data("{\"id\": 1}".utf8)) }

        // VMs: create with preferred owner n2, and the refusals of createVM.
        let finance = VMCreation(
            name: "Finance", startup: gib, minimum: 512 * mib, maximum: 4 * gib, buffer: 20, priority: 50,
            restartPriority: "high", preferredOwners: ["n2"], volume: "csv1")
        let created = try await follower.createVM(finance)
        #expect(created.id == "vm1" && created.state == "stopped" && created.owner == nil)
        #expect(
            created.memory.startup == gib && created.memory.minimum == 512 * mib && created.memory.maximum == 4 * gib)
        #expect(created.memory.buffer == 20 && created.memory.priority == 50)
        #expect(created.diskFile == "finance.vhdx" && created.volume == "csv1" && created.restartPriority == "high")
        await expectStatus(409) { try await leader.createVM(finance) }
        var inconsistent = finance
        inconsistent.name = "Broken"
        inconsistent.minimum = 2 * gib
        let message = await expectStatus(400) { try await leader.createVM(inconsistent) }
        #expect(message.contains("minimum ≤ startup ≤ maximum"))
        // Error names have one spelling, the state machine's refusals and the routes' own alike.
        #expect(message.hasPrefix("invalid: "), "\(message)")
        var elsewhere = finance
        elsewhere.name = "Elsewhere"
        elsewhere.volume = "csv9"
        await expectStatus(404) { try await leader.createVM(elsewhere) }
        let badSize = #"{"name": "X", "startup": "1X", "volume": "csv1"}"#
        let sizeMessage = await expectStatus(400) {
            _ = try await leader.call(.post, "/v1/vms", body: Data(badSize.utf8))
        }
        #expect(sizeMessage.contains("\"1X\" is not a size"))
        #expect(sizeMessage.hasPrefix("bad_request_body: "), "\(sizeMessage)")
        await expectStatus(400) {
            var wrong = finance
            wrong.name = "Wrong"
            wrong.restartPriority = "urgent"
            try await leader.createVM(wrong)
        }

        // Start: placement honours the preferred owner; a second start conflicts.
        let started = try await follower.startVM("Finance")
        #expect(started.state == "running" && started.owner == "n2" && started.epoch == 1)
        await expectStatus(409) { try await leader.startVM("Finance") }
        await expectStatus(404) { try await leader.startVM("Nobody") }
        // Only a real guest has a console: a simulated one says so, whichever node is asked.
        for client in clients {
            let noConsole = await expectStatus(409) { _ = try await client.console("Finance") }
            #expect(noConsole.hasPrefix("no_console: "), "\(noConsole)")
        }
        await expectStatus(404) { _ = try await follower.console("Nobody") }
        await expectStatus(400) { _ = try await follower.call(.get, "/v1/vms/Finance/console?limit=0") }
        // Only a real guest has a console: a simulated one says so, whichever node is asked.
        for client in clients {
            let noConsole = await expectStatus(409) { _ = try await client.console("Finance") }
            #expect(noConsole.hasPrefix("no_console: "), "\(noConsole)")
        }
        await expectStatus(404) { _ = try await follower.console("Nobody") }
        await expectStatus(400) { _ = try await follower.call(.get, "/v1/vms/Finance/console?limit=0") }

        // A VM bigger than any node: placement leaves it pending with the reason; a named node refuses it.
        try await leader.createVM(VMCreation(name: "Huge", startup: 9 * gib, volume: "csv1"))
        await expectStatus(409) { try await leader.startVM("Huge", on: "n1") }
        await expectStatus(404) { try await leader.startVM("Huge", on: "n9") }
        let pending = try await leader.startVM("Huge")
        #expect(pending.state == "pending" && pending.owner == nil)
        #expect(pending.pendingReason?.contains("needs 9.0 GiB startup memory") == true)

        // Memory: change, refuse inconsistent settings, unknown VM.
        let raised = try await follower.setVMMemory("Finance", MemoryChange(maximum: 8 * gib, buffer: 25))
        #expect(raised.memory.maximum == 8 * gib && raised.memory.buffer == 25 && raised.memory.startup == gib)
        await expectStatus(400) { try await leader.setVMMemory("Finance", MemoryChange(minimum: 2 * gib)) }
        await expectStatus(409) {
            try await leader.setVMMemory("Finance", MemoryChange(startup: 9 * gib, maximum: 9 * gib))
        }
        await expectStatus(404) { try await leader.setVMMemory("Nobody", MemoryChange(buffer: 30)) }

        // Reads: the VM by name or id, the lists, from the leader and from a follower alike.
        #expect(try await follower.vm("Finance") == (try await leader.vm("vm1")))
        await expectStatus(404) { _ = try await follower.vm("Nobody") }
        #expect(try await follower.vms() == (try await leader.vms()))
        #expect(try await follower.vms().map(\.name) == ["Finance", "Huge"])
        #expect(try await follower.volumes() == (try await leader.volumes()))
        #expect(try await follower.volumes().first?.vms == ["Finance", "Huge"])
        let n2 = try await follower.nodes().first { $0.id == "n2" }
        #expect(n2?.vms == ["Finance"] && n2?.reservedMemory == gib && n2?.freeMemory == 7 * gib)
        #expect(try await follower.migrations() == [])
        let fromFollower = try await follower.cluster()
        let fromLeader = try await leader.cluster()
        #expect(fromFollower.leader == fromFollower.servedBy && fromFollower.leader == fromLeader.leader)
        #expect(committed(fromFollower.nodes) == committed(fromLeader.nodes))
        #expect(committed(fromFollower.vms) == committed(fromLeader.vms))
        #expect(fromFollower.volumes == fromLeader.volumes && fromFollower.migrations == [])
        // A stale read is the follower's own copy: it catches up with the leader's.
        let leaderVMs = committed(try await leader.vms())
        try await cluster.await("a stale read shows the committed VMs") {
            (try? await follower.vms(stale: true)).map(committed) == leaderVMs
        }
        #expect(try await follower.cluster(stale: true).servedBy == "n\(leaderNumber % 3 + 1)")

        // Volumes move; the refusals of moveVolume.
        #expect(try await follower.moveVolume("csv1", to: "n2").coordinator == "n2")
        await expectStatus(409) { try await leader.moveVolume("csv1", to: "n2") }
        await expectStatus(404) { try await leader.moveVolume("csv9", to: "n2") }
        await expectStatus(404) { try await leader.moveVolume("csv1", to: "n9") }

        // Nodes: drain and resume; the refusals of setNodeState; a bad id.
        #expect(try await follower.changeNode("n3", "drain").state == "draining")
        // Nothing to move off it: the leader pauses it as drained.
        try await cluster.await("n3 drained and paused") {
            (try? await leader.nodes())?.first { $0.id == "n3" }?.state == "paused"
        }
        await expectStatus(409) { try await leader.changeNode("n3", "pause") }
        #expect(try await leader.changeNode("n3", "resume").state == "up")
        await expectStatus(409) { try await leader.changeNode("n3", "resume") }
        await expectStatus(404) { try await leader.changeNode("n9", "drain") }
        await expectStatus(400) { try await leader.changeNode("x", "drain") }

        // Stop and delete, with their refusals.
        await expectStatus(409) { try await leader.deleteVM("Finance") }
        #expect(try await follower.stopVM("Finance").state == "stopped")
        await expectStatus(409) { try await leader.stopVM("Finance") }
        try await follower.deleteVM("Finance")
        await expectStatus(404) { try await leader.deleteVM("Finance") }
        await expectStatus(404) { _ = try await leader.vm("Finance") }

        // Events: everything above, in order; paging with since; a bad since.
        let events = try await follower.events()
        #expect(events.map(\.sequence) == Array(1...UInt64(events.count)))
        let kinds = events.map(\.kind)
        #expect(kinds.filter { $0 == "node.registered" }.count == 3)
        #expect(kinds.suffix(2) == ["vm.stopped", "vm.deleted"])
        #expect(try await leader.events(since: UInt64(events.count - 2)).map(\.kind) == ["vm.stopped", "vm.deleted"])
        await expectStatus(400) { _ = try await leader.call(.get, "/v1/events?since=soon") }

        // Follow: the history after `since`, then new events as they are applied.
        let seen = Mutex<[String]>([])
        let follow = Task {
            try await follower.followEvents(since: UInt64(events.count - 1)) { event in
                let count = seen.withLock { seen in
                    seen.append(event.kind)
                    return seen.count
                }
                if count == 2 { throw CancellationError() }
            }
        }
        try await cluster.await("the followed stream sends the last event") { seen.withLock { $0 } == ["vm.deleted"] }
        try await leader.changeNode("n1", "pause")
        _ = await follow.result
        #expect(seen.withLock { $0 } == ["vm.deleted", "node.state-changed"])

        // Settings rejections carry their kind's status too.
        await expectStatus(400) { try await leader.setSetting("Bad Name", to: "x") }
        await expectStatus(404) { try await leader.deleteSetting("never-set") }

        // The same API over HTTP/1.1 (curl, as scripts and load balancers speak it): a linearizable
        // read from a follower, a write forwarded to the leader, and an error with its JSON body.
        let followerPort = cluster.clientPorts[leaderNumber % 3]
        let overview = try http1(["http://127.0.0.1:\(followerPort)/v1/cluster"])
        #expect(overview.status == 200 && overview.body.contains("\"volumes\""), "\(overview)")
        let volumeOverHTTP1 = try http1([
            "-X", "POST", "-H", "content-type: application/json", "--data", #"{"id": "csv9", "coordinator": "n2"}"#,
            "http://127.0.0.1:\(followerPort)/v1/volumes",
        ])
        #expect(
            (200...201).contains(volumeOverHTTP1.status) && volumeOverHTTP1.body.contains("csv9"), "\(volumeOverHTTP1)")
        let missingOverHTTP1 = try http1(["http://127.0.0.1:\(followerPort)/v1/vms/NoSuchVM"])
        #expect(
            missingOverHTTP1.status == 404 && missingOverHTTP1.body.contains(#""error": "not_found""#),
            "\(missingOverHTTP1)")

        // Health, metrics and routing errors.
        let health = try await follower.call(.get, "/healthz")
        #expect(String(decoding: health, as: UTF8.self).contains("\"status\":\"ok\""))
        let metrics = String(decoding: try await leader.call(.get, "/metrics"), as: UTF8.self)
        #expect(metrics.contains("flotilla_raft_role{node=\"n\(leaderNumber)\",role=\"leader\"} "))
        #expect(metrics.contains("flotilla_vms{state=\"pending\"} 1"))
        #expect(metrics.contains("flotilla_nodes{state=\"paused\"} 1"))
        #expect(metrics.contains("# TYPE flotilla_raft_term gauge"))
        await expectStatus(405) { _ = try await leader.call(.put, "/v1/vms") }
        await expectStatus(404) { _ = try await leader.call(.get, "/v1/nothing") }

        // A restarted node finds its record unchanged and registers nothing new.
        let registrations = try await leader.events().count { $0.kind == "node.registered" }
        let restarted = leaderNumber % 3 + 1
        #expect(cluster.terminate(restarted) == 0)
        try cluster.start(restarted)
        try await cluster.await("the restarted node serves again") {
            (try? await clients[restarted - 1].vms(stale: true)) != nil
        }
        // It compares its record with what it is, and finds nothing to write.
        try await cluster.await("the restarted node finds its record current") {
            cluster.log(of: restarted).contains("n\(restarted)'s record in the cluster state is current")
        }
        #expect(try await leader.events().count { $0.kind == "node.registered" } == registrations)
        // Each start says the seed of its election jitter, to replay with --raft-seed.
        #expect(cluster.log(of: restarted).components(separatedBy: "raft-seed=").count == 3, "two starts, two seeds")
        for client in clients { await client.close() }
        await cluster.close()
    }
}

/// One request with curl over HTTP/1.1; returns the status and body.
private func http1(_ arguments: [String]) throws -> (status: Int, body: String) {
    let curl = Process()
    curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    curl.arguments = ["--http1.1", "-s", "--max-time", "10", "-w", "\n%{http_code}"] + arguments
    let output = Pipe()
    curl.standardOutput = output
    try curl.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    curl.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    let status = Int(text.split(separator: "\n").last ?? "") ?? 0
    return (status, String(text.dropLast(String(status).count)))
}
