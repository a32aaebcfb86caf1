// Nodes on their own hosts: a leader cut off into a minority steps down; its uncommitted writes vanish, its VMs move.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import Guests
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
        // A busy machine can time out one call while leadership settles: the write is tried until it
        // is acknowledged (it sets the same value, so a retry of an unknown outcome is harmless).
        try await cluster.await("the new leader acknowledges a write") {
            do {
                _ = try await cluster.client(newLeader).setSetting("after", to: "yes")
                return true
            } catch {
                return false
            }
        }
        // CheckQuorum: the old leader, hearing no majority, stops calling itself leader.
        try await cluster.await("n\(oldLeader) steps down") {
            (try? await cluster.client(oldLeader).status(stale: true).leader) != "n\(oldLeader)"
        }

        try cluster.heal(oldLeader)
        // Back in the majority, the old leader's uncommitted entry is replaced by the new leader's log.
        try await cluster.await("n\(oldLeader) catches up") {
            (try? await cluster.client(oldLeader).settings(stale: true))?["after"] == "yes"
        }
        var settings: [String: String] = [:]
        try await cluster.await("a linearizable read through n\(oldLeader)") {
            guard let read = try? await cluster.client(oldLeader).settings() else { return false }
            settings = read
            return true
        }
        #expect(settings["doomed"] == nil, "an uncommitted write of the deposed leader survived\n\(cluster.logTails())")
        #expect(Set(settings.keys) == Set((1...5).map { "before-\($0)" } + ["after"]))
        await cluster.close()
    }

    @Test func aLeaderCutOffAloneFencesBeforeItsVMsRunElsewhere() async throws {
        let cluster = try ProcessCluster(size: 3, hosts: true, journalIntervalMilliseconds: 50)
        try cluster.startAll()
        let leader = try await cluster.awaitLeader()
        let survivor = cluster.client(leader % 3 + 1)
        try await cluster.await("all three nodes registered") {
            (try? await survivor.nodes())?.map(\.id) == ["n1", "n2", "n3"]
        }
        // The volume's coordinator is a survivor: the VMs' disks stay served on the majority side.
        _ = try await survivor.createVolume("csv1", coordinator: "n\(leader % 3 + 1)")
        var disks: [String: String] = [:]
        for name in ["Finance", "Engineering"] {
            let vm = try await survivor.createVM(VMCreation(name: name, startup: 256 << 20, volume: "csv1"))
            _ = try await survivor.startVM(name, on: "n\(leader)")
            disks[name] = cluster.sharedRoot + "/volumes/csv1/\(vm.diskFile)"
        }
        try await FailoverProcessTests.awaitRunning(2, on: leader, cluster)
        // Still the leader (the test reaches it while the other nodes cannot).
        #expect(try await cluster.awaitLeader() == leader)
        let before = Dictionary(uniqueKeysWithValues: try await survivor.vms().map { ($0.name, $0.epoch) })

        try cluster.isolate(leader)
        try await cluster.await("its VMs running on the majority at a newer epoch", within: .seconds(20)) {
            guard let vms = try? await survivor.vms() else { return false }
            return vms.allSatisfy { $0.owner != nil && $0.owner != "n\(leader)" && $0.epoch > before[$0.name]! }
        }
        try await cluster.await("n\(leader) fenced") {
            (try? await cluster.client(leader).agent())?.fenced != nil
        }
        // The new owners append a few records each, then the old leader comes back.
        try await cluster.await("every VM's new owner has appended to its journal") {
            guard let vms = try? await survivor.vms() else { return false }
            for vm in vms {
                guard let owner = vm.owner.flatMap({ Int($0.dropFirst()) }),
                    let running = try? await cluster.client(owner).agent().vms.first(where: { $0.name == vm.name }),
                    running.epoch == vm.epoch, running.recordsWritten >= 3
                else { return false }
            }
            return true
        }
        try cluster.heal(leader)
        try await cluster.await("n\(leader) back up", within: .seconds(20)) {
            (try? await survivor.nodes())?.first { $0.id == "n\(leader)" }?.state == "up"
        }
        let after = Dictionary(uniqueKeysWithValues: try await survivor.vms().map { ($0.name, $0.epoch) })
        for (name, path) in disks.sorted(by: { $0.key < $1.key }) {
            let journal = try DiskJournal.read(path: path)
            let violations = JournalChecker.check(journal)
            #expect(violations.isEmpty, "\(name): \(violations)\n\(cluster.logTails())")
            #expect(journal.records.contains { $0.epoch.rawValue == before[name]! }, "\(name): the old owner's records")
            #expect(journal.records.contains { $0.epoch.rawValue == after[name]! }, "\(name): the new owner's records")
        }
        await cluster.close()
    }
}
