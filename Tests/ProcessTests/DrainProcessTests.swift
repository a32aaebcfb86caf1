// Drain by live migration on real node processes: the leader holding a volume's coordinator and several VMs is drained.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import Guests
import Testing

@Suite(.serialized, .timeLimit(.minutes(3)))
struct DrainProcessTests {
    static let mib: UInt64 = 1 << 20

    /// The leader coordinates csv1 and runs three VMs. Drained, its VMs leave by live migration (a
    /// switchover each: epoch + 1, not a restart), the coordinator moves, it hands leadership over
    /// and is paused; every journal holds all that its guests acknowledged.
    @Test func drainingTheLeaderMovesItsVMsCoordinatorAndLeadershipThenPausesIt() async throws {
        let cluster = try ProcessCluster(size: 3, electionTicks: 50, journalIntervalMilliseconds: 50)
        try cluster.startAll()
        let leader = try await cluster.awaitLeader()
        let api = cluster.client(leader)
        try await cluster.await("all three nodes registered") { (try? await api.nodes())?.count == 3 }
        try await api.createVolume("csv1", coordinator: "n\(leader)")
        let names = ["Finance", "Engineering", "Sales"]
        var disks: [VMID: String] = [:]
        var epochs: [String: UInt64] = [:]
        for (index, name) in names.enumerated() {
            let created = try await api.createVM(
                VMCreation(
                    name: name, startup: 64 * Self.mib, minimum: 32 * Self.mib, maximum: 128 * Self.mib,
                    restartPriority: ["high", "medium", "low"][index], volume: "csv1",
                    workload: WorkloadView(demand: 16 * Self.mib, dirtyPagesPerSecond: 1000)))
            disks[try #require(VMID(parsing: created.id))] = cluster.sharedRoot + "/volumes/csv1/\(created.diskFile)"
            epochs[name] = try await api.startVM(name, on: "n\(leader)").epoch
        }
        let acknowledged = AcknowledgedRecords()
        let poller = Task {
            while !Task.isCancelled {
                for node in 1...3 where cluster.isRunning(node) {
                    if let view = try? await cluster.client(node).agent() { acknowledged.record(view) }
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        try await cluster.await("the three VMs writing on n\(leader)") {
            let view = try? await cluster.client(leader).agent()
            return view?.vms.filter { $0.running && $0.recordsWritten >= 3 }.count == 3
        }

        let drained = try await api.changeNode("n\(leader)", "drain")
        #expect(drained.state == "draining")
        // Any node answers (a follower forwards): the leadership moves during the drain.
        try await cluster.await("n\(leader) drained and paused", within: .seconds(60)) {
            for node in 1...3 {
                guard let nodes = try? await cluster.client(node).nodes() else { continue }
                return nodes.first { $0.id == "n\(leader)" }?.state == "paused"
            }
            return false
        }
        let newLeader = try await cluster.awaitLeader()
        #expect(newLeader != leader, "a drained leader hands leadership over")
        let now = cluster.client(newLeader)
        #expect(try await now.volumes().first?.coordinator != "n\(leader)")
        let migrations = try await now.migrations()
        #expect(migrations.count == 3 && migrations.allSatisfy { $0.phase == "completed" }, "\(migrations)")
        let events = try await now.events()
        for name in names {
            let vm = try await now.vm(name)
            #expect(vm.state == "running" && vm.owner != "n\(leader)")
            #expect(vm.epoch == epochs[name]! + 1, "\(name) moved by one switchover, not a restart")
            #expect(
                events.contains {
                    $0.kind == "migration.started" && $0.detail.contains("(\(name))")
                        && $0.detail.contains("(drain of n\(leader))")
                })
        }
        // Each VM runs once, on its new owner, and writes there.
        try await cluster.await("every VM writing on its new owner") {
            var running = 0
            for node in 1...3 {
                guard let view = try? await cluster.client(node).agent() else { return false }
                if node == leader && !view.vms.isEmpty { return false }
                running += view.vms.filter { $0.running && $0.recordsWritten >= 3 }.count
            }
            return running == 3
        }

        poller.cancel()
        await poller.value
        for node in 1...3 { if let view = try? await cluster.client(node).agent() { acknowledged.record(view) } }
        let tails = cluster.logTails()
        await cluster.close()
        for (vm, path) in disks {
            let journal = try DiskJournal.read(path: path)
            let violations = JournalChecker.check(journal, acknowledged: acknowledged.acknowledged(vm: vm))
            #expect(violations.isEmpty, "\(vm): \(violations)\n\(tails)")
        }
        #expect(acknowledged.ownerViolations.isEmpty, "\(acknowledged.ownerViolations)")
    }
}
