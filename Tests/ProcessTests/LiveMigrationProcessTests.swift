// Live migration on real node processes: a whole switchover, kills at each step, a guest faster than the link, and the API's refusals.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import Guests
import HTTP2
import Testing

private let mib = MigrationScene.mib
/// Pages a second (about 100 MB/s) that a link limited to `slowLink` does not keep up with, on
/// any machine: pre-copy goes on round after round, or gives up, unless auto-converge throttles the guest.
private let fasterThanTheLink: UInt64 = 25_000
/// The bandwidth limit that makes the link slower than the guest: 16 MiB/s, so 32 MiB take 2 s a round.
private let slowLink = ["migration.max-bandwidth-mib-s": "16"]

@Suite(.serialized, .timeLimit(.minutes(3)))
struct LiveMigrationProcessTests {
    @Test func aCompletedMigrationCopiesTheImageExactlyAndTheJournalGoesOnUnderTheNextEpoch() async throws {
        let scene = try await MigrationScene()
        let started = try await scene.leaderAPI.migrateVM(scene.name, to: "n\(scene.target)")
        #expect(started.source == "n\(scene.source)" && started.target == "n\(scene.target)")
        #expect(started.phase == "preparing")
        let done = try await scene.awaitMigration(started.id, "completed and announced") {
            !$0.active && ($0.phase != "completed" || $0.stats?.totalMilliseconds != nil)
        }
        #expect(done.phase == "completed", "\(done.reason ?? "")")
        let (owner, epoch) = try await scene.awaitRunningOnce()
        #expect(owner == scene.target)
        #expect(epoch == scene.epoch + 1, "the switchover is one new epoch")

        // The target runs the guest from the image that arrived, which is the source's at its pause.
        let guest = try #require(
            try await scene.cluster.client(scene.target).agent().vms.first { $0.name == scene.name })
        let arrival = try #require(guest.arrival, "n\(scene.target) started \(scene.name) from nothing, not the copy")
        #expect(arrival.migration == started.id)
        #expect(arrival.imageChecksum == arrival.sourceChecksum)
        let stats = try #require(done.stats)
        #expect(!stats.rounds.isEmpty && stats.totalBytes >= 32 * mib, "\(stats)")
        #expect(stats.downtimeMicroseconds.map { $0 > 0 } == true, "\(stats)")
        let events = try await scene.leaderAPI.events()
        #expect(events.contains { $0.kind == "migration.announced" && $0.migration == started.id })

        // The journal goes on from where the source's ended: the next sequence, the next epoch.
        let journal = try await scene.finish(runningAt: epoch)
        #expect(MigrationScene.epochs(of: journal) == [scene.epoch, scene.epoch + 1])
        let lastOnSource = try #require(journal.records.last { $0.epoch.rawValue == scene.epoch })
        let firstOnTarget = try #require(journal.records.first { $0.epoch.rawValue == scene.epoch + 1 })
        #expect(firstOnTarget.sequence == lastOnSource.sequence + 1)
        #expect(guest.recordsReplayed == Int(lastOnSource.sequence), "the target replayed the source's records")
    }

    @Test func aSourceKilledDuringPreCopyFailsTheMigrationAndItsVMFailsOverOnce() async throws {
        // Dirtying faster than the link: pre-copy goes on for rounds, so the kill finds it copying.
        let scene = try await MigrationScene(settings: slowLink, dirtyPagesPerSecond: fasterThanTheLink)
        let started = try await scene.leaderAPI.migrateVM(scene.name, to: "n\(scene.target)")
        try await scene.awaitMigration(started.id, "copying after its first round") {
            $0.phase == "copying" && ($0.stats?.rounds.count ?? 0) >= 1
        }
        scene.cluster.kill9(scene.source)

        let failed = try await scene.awaitMigration(started.id, "ended") { !$0.active }
        #expect(failed.phase == "failed", "\(failed)")
        let (owner, epoch) = try await scene.awaitRunningOnce()
        #expect(owner != scene.source)
        #expect(epoch >= scene.epoch + 2, "down, then a new owner")
        // The source comes back: it runs nothing of the VM, and the migration stays failed.
        try scene.cluster.start(scene.source)
        try await scene.cluster.await("n\(scene.source) up again") {
            (try? await scene.leaderAPI.nodes())?.first { $0.id == "n\(scene.source)" }?.state == "up"
        }
        #expect(try await scene.awaitRunningOnce() == (owner, epoch))
        #expect(try await scene.leaderAPI.migration(started.id).phase == "failed")

        let journal = try await scene.finish(runningAt: epoch)
        #expect(MigrationScene.epochs(of: journal) == [scene.epoch, epoch])
    }

    @Test func aTargetKilledDuringPreCopyLeavesTheVMRunningOnItsSourceUnderItsEpoch() async throws {
        let scene = try await MigrationScene(settings: slowLink, dirtyPagesPerSecond: fasterThanTheLink)
        let started = try await scene.leaderAPI.migrateVM(scene.name, to: "n\(scene.target)")
        try await scene.awaitMigration(started.id, "copying after its first round") {
            $0.phase == "copying" && ($0.stats?.rounds.count ?? 0) >= 1
        }
        scene.cluster.kill9(scene.target)

        let failed = try await scene.awaitMigration(started.id, "ended") { !$0.active }
        #expect(failed.phase == "failed", "\(failed)")
        let (owner, epoch) = try await scene.awaitRunningOnce()
        #expect(owner == scene.source && epoch == scene.epoch, "the VM never left its source")

        let journal = try await scene.finish(runningAt: epoch)
        #expect(MigrationScene.epochs(of: journal) == [scene.epoch])
    }

    @Test func aLeaderKilledBetweenPauseAndSwitchoverStillSwitchesOverOnceFromTheCopiedImage() async throws {
        // The source holds its paused guest 1.5 s before it proposes the switchover: the kill lands
        // in that window. The leader also coordinates the VM's volume, so the target must wait for
        // the volume's failover before the guest can open its disk — with the copied image kept.
        let scene = try await MigrationScene(environment: ["FLOTILLA_TEST_SWITCHOVER_DELAY_MS": "1500"])
        let started = try await scene.leaderAPI.migrateVM(scene.name, to: "n\(scene.target)")
        try await scene.awaitMigration(started.id, "paused") { $0.phase == "paused" }
        #expect(try await scene.cluster.awaitLeader() == scene.leader, "the leader moved before the kill")
        scene.cluster.kill9(scene.leader)

        let done = try await scene.awaitMigration(started.id, "ended") { !$0.active }
        #expect(done.phase == "completed", "\(done.reason ?? "")")
        let (owner, epoch) = try await scene.awaitRunningOnce()
        #expect(owner == scene.target && epoch == scene.epoch + 1)
        // The image the target started from is the one the source held paused.
        let guest = try #require(
            try await scene.cluster.client(scene.target).agent().vms.first { $0.name == scene.name })
        let arrival = try #require(guest.arrival, "n\(scene.target) started \(scene.name) from nothing, not the copy")
        #expect(scene.pausedChecksums(on: scene.source) == [arrival.sourceChecksum])
        #expect(arrival.imageChecksum == arrival.sourceChecksum)
        let stats = try await scene.awaitMigration(started.id, "announced") { $0.stats?.totalMilliseconds != nil }.stats
        #expect(
            (stats?.downtimeMicroseconds ?? 0) >= 1_500_000,
            "the hold is part of the downtime: \(String(describing: stats))")

        let journal = try await scene.finish(runningAt: epoch)
        #expect(MigrationScene.epochs(of: journal) == [scene.epoch, scene.epoch + 1])
    }

    @Test func aGuestDirtyingFasterThanTheLinkIsAbortedUnlessAutoConvergeThrottlesIt() async throws {
        let scene = try await MigrationScene(
            settings: slowLink.merging(
                ["migration.max-rounds": "4", "migration.time-limit-s": "30", "migration.downtime-ms": "10"]
            ) { $1 },
            demand: 8 * mib, dirtyPagesPerSecond: fasterThanTheLink)
        let reservedBefore = try #require(
            try await scene.leaderAPI.nodes().first { $0.id == "n\(scene.target)" }?.memory?.assigned)

        // Without auto-converge: aborted with the planner's reason; the VM runs on, where it was.
        let first = try await scene.leaderAPI.migrateVM(scene.name, to: "n\(scene.target)")
        let aborted = try await scene.awaitMigration(first.id, "ended") { !$0.active }
        #expect(aborted.phase == "failed")
        let reason = aborted.reason ?? ""
        #expect(reason.contains("did not converge") && reason.contains("set auto-converge on the VM"), "\(reason)")
        #expect(aborted.stats?.rounds.allSatisfy { $0.throttlePercent == 0 } == true)
        #expect(try await scene.awaitRunningOnce() == (scene.source, scene.epoch))
        // The target let its reservation go.
        try await scene.cluster.await("n\(scene.target)'s memory back to what it was") {
            (try? await scene.leaderAPI.nodes())?.first { $0.id == "n\(scene.target)" }?.memory?.assigned
                == reservedBefore
        }

        // With auto-converge the guest is throttled until its dirty pages fit the downtime target.
        #expect(try await scene.leaderAPI.setVMAutoConverge(scene.name, true).autoConverge == true)
        let second = try await scene.leaderAPI.migrateVM(scene.name, to: "n\(scene.target)")
        let converged = try await scene.awaitMigration(second.id, "ended", within: .seconds(60)) { !$0.active }
        #expect(converged.phase == "completed", "\(converged.reason ?? "")")
        #expect(
            converged.stats?.rounds.contains { $0.throttlePercent > 0 } == true,
            "\(String(describing: converged.stats))")
        let (owner, epoch) = try await scene.awaitRunningOnce()
        #expect(owner == scene.target && epoch == scene.epoch + 1)

        let journal = try await scene.finish(runningAt: epoch)
        #expect(MigrationScene.epochs(of: journal) == [scene.epoch, scene.epoch + 1])
    }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct LiveMigrationRefusalTests {
    /// What a refused request must leave as it was: every VM's owner, epoch and state, the
    /// migrations there are (a migration already running goes on through its phases meanwhile),
    /// and every other event.
    private struct Snapshot: Equatable {
        var vms: [String]
        var migrations: [String]
        var events: [String]

        init(_ api: APIClient) async throws {
            vms = try await api.vms().map { "\($0.name) \($0.state) \($0.owner ?? "-") \($0.epoch)" }
            migrations = try await api.migrations().map { "\($0.id) \($0.vm) \($0.source) → \($0.target)" }
            events = try await api.events().filter { !$0.kind.hasPrefix("migration.") }.map(\.detail)
        }
    }

    @Test func badMigrationRequestsAreRefusedWithA4xxThatSaysWhyAndChangeNothing() async throws {
        let cluster = try ProcessCluster(size: 3, electionTicks: 50, journalIntervalMilliseconds: 50)
        try cluster.startAll()
        let leader = try await cluster.awaitLeader()
        // n(home) runs the VMs to migrate, n(full) one whose startup memory leaves no room, n(spare) nothing.
        let full = leader
        let home = leader % 3 + 1
        let spare = home % 3 + 1
        let api = cluster.client(leader)
        try await cluster.await("all three nodes registered") { (try? await api.nodes())?.count == 3 }
        try await api.setSetting("migration.max-rounds", to: "1000")
        for (key, value) in slowLink { try await api.setSetting(key, to: value) }
        try await api.createVolume("csv1", coordinator: "n\(leader)")
        let small = WorkloadView(demand: 32 * mib, dirtyPagesPerSecond: fasterThanTheLink)
        for (name, startup, node) in [("Sales", 64 * mib, home), ("Wide", 3072 * mib, home), ("Big", 6144 * mib, full)]
        {
            try await api.createVM(VMCreation(name: name, startup: startup, volume: "csv1", workload: small))
            try await api.startVM(name, on: "n\(node)")
        }
        try await api.createVM(VMCreation(name: "Idle", startup: 64 * mib, volume: "csv1", workload: small))
        try await cluster.await("the three VMs running") {
            var running = 0
            for node in 1...3 { running += (try? await cluster.client(node).agent().vms.count { $0.running }) ?? 0 }
            return running == 3
        }

        /// Sends the request, expects it refused with `status` and an answer that says `why`, and
        /// the state unchanged.
        func expectRefused(
            _ status: Int, _ path: String, body: String? = nil, saying why: String,
            sourceLocation: SourceLocation = #_sourceLocation
        ) async throws {
            let before = try await Snapshot(api)
            do {
                _ = try await api.call(.post, path, body: body.map { Data($0.utf8) })
                Issue.record("POST \(path) \(body ?? "") was accepted", sourceLocation: sourceLocation)
            } catch let error as APIError {
                #expect(error.status == status, "POST \(path) \(body ?? ""): \(error)", sourceLocation: sourceLocation)
                #expect(error.message.contains(why), "\(error.message)", sourceLocation: sourceLocation)
            }
            #expect(
                try await Snapshot(api) == before, "\(path) \(body ?? "") changed something",
                sourceLocation: sourceLocation)
        }

        try await expectRefused(404, "/v1/vms/Sales/migrate", body: #"{"to": "n9"}"#, saying: "no node n9")
        try await expectRefused(
            404, "/v1/vms/Nobody/migrate", body: #"{"to": "n\#(spare)"}"#, saying: "no VM is named Nobody")
        try await expectRefused(
            409, "/v1/vms/Sales/migrate", body: #"{"to": "n\#(home)"}"#, saying: "already runs on n\(home)")
        try await expectRefused(
            409, "/v1/vms/Idle/migrate", body: #"{"to": "n\#(spare)"}"#, saying: "only a running VM migrates")
        try await expectRefused(
            409, "/v1/vms/Wide/migrate", body: #"{"to": "n\#(full)"}"#, saying: "insufficient_memory")
        try await expectRefused(400, "/v1/vms/Sales/migrate", body: #"{"to": 2}"#, saying: "wrong type")
        try await expectRefused(400, "/v1/vms/Sales/migrate", body: #"{"to": "banana"}"#, saying: "bad_node_id")
        try await expectRefused(400, "/v1/vms/Sales/migrate", body: "migrate it", saying: "not a JSON object")
        try await expectRefused(404, "/v1/migrations/mig99/cancel", saying: "no migration mig99")
        try await expectRefused(400, "/v1/migrations/soon/cancel", saying: "bad_migration_id")

        // A draining node takes no incoming migration (nor, once drained, the paused node it becomes).
        _ = try await api.changeNode("n\(spare)", "drain")
        // Holding nothing, it is paused by the leader's next controller round; the request is
        // checked once that has happened, so the pause is not read as the request's doing.
        try await cluster.await("n\(spare), drained, paused") {
            (try? await api.nodes())?.first { $0.id == "n\(spare)" }?.state == "paused"
        }
        try await expectRefused(
            409, "/v1/vms/Sales/migrate", body: #"{"to": "n\#(spare)"}"#, saying: "and takes no incoming migrations")
        _ = try await api.changeNode("n\(spare)", "resume")

        // A VM already migrating (one that dirties faster than the link copies for a while).
        let running = try await api.migrateVM("Sales", to: "n\(spare)")
        try await expectRefused(
            409, "/v1/vms/Sales/migrate", body: #"{"to": "n\#(full)"}"#, saying: "already migrating")
        try await expectRefused(409, "/v1/vms/Sales/migrate", body: "{}", saying: "already migrating")
        let cancelled = try await api.cancelMigration(running.id)
        #expect(cancelled.phase == "cancelled" && cancelled.reason == "cancelled by operator")
        // An ended migration cannot be cancelled again; the VM stays where it was.
        try await expectRefused(409, "/v1/migrations/\(running.id)/cancel", saying: "already ended: cancelled")
        try await cluster.await("Sales running on n\(home) alone, at its epoch") {
            guard let vm = try? await api.vm("Sales"), vm.owner == "n\(home)", vm.epoch == 1 else { return false }
            let here = try? await cluster.client(home).agent().vms.first { $0.name == "Sales" }
            let there = try? await cluster.client(spare).agent().vms.first { $0.name == "Sales" }
            return here?.running == true && there == nil
        }

        // A node that is down takes none either.
        cluster.kill9(spare)
        try await cluster.await("n\(spare) declared down", within: .seconds(15)) {
            (try? await api.nodes())?.first { $0.id == "n\(spare)" }?.state == "down"
        }
        try await expectRefused(
            409, "/v1/vms/Sales/migrate", body: #"{"to": "n\#(spare)"}"#, saying: "is down and takes no")
        await cluster.close()
    }
}

@Suite(.serialized, .timeLimit(.minutes(3)), .enabled(if: ProcessCluster.canIsolateHosts, "needs root and iproute2"))
struct LiveMigrationPartitionTests {
    @Test func aSourceCutOffFromItsTargetDuringPreCopyKeepsTheVMUnderItsEpoch() async throws {
        // Both still reach the leader; the round in flight hangs until the copy's time limit ends it.
        // 64 MiB: the copy is still in its first rounds when the link is cut, however fast the bridge.
        let scene = try await MigrationScene(
            hosts: true, settings: slowLink.merging(["migration.time-limit-s": "5"]) { $1 }, demand: 64 * mib,
            dirtyPagesPerSecond: fasterThanTheLink)
        let started = try await scene.leaderAPI.migrateVM(scene.name, to: "n\(scene.target)")
        try await scene.awaitMigration(started.id, "copying") { $0.phase == "copying" }
        try scene.cluster.cut(scene.source, from: scene.target)

        let failed = try await scene.awaitMigration(started.id, "ended") { !$0.active }
        #expect(failed.phase == "failed")
        #expect(failed.reason?.contains("pages to n\(scene.target)") == true, "\(failed.reason ?? "")")
        #expect(try await scene.awaitRunningOnce() == (scene.source, scene.epoch))
        try scene.cluster.mend(scene.source, from: scene.target)
        #expect(try await scene.awaitRunningOnce() == (scene.source, scene.epoch))

        let journal = try await scene.finish(runningAt: scene.epoch)
        #expect(MigrationScene.epochs(of: journal) == [scene.epoch])
    }

    @Test func aSourceCutOffAtTheSwitchoverNeverResumesOnceItsVMRunsElsewhere() async throws {
        // The source holds its paused guest 1.5 s before it proposes the switchover; it is cut off
        // from every node in that window, so the switchover is never proposed. Its lease runs out
        // (it fences), it is declared down, the migration fails and the VM fails over.
        let scene = try await MigrationScene(
            hosts: true, environment: ["FLOTILLA_TEST_SWITCHOVER_DELAY_MS": "1500"], demand: 8 * mib,
            dirtyPagesPerSecond: 200)
        let started = try await scene.leaderAPI.migrateVM(scene.name, to: "n\(scene.target)")
        try await scene.awaitMigration(started.id, "paused") { $0.phase == "paused" }
        try scene.cluster.isolate(scene.source)

        let failed = try await scene.awaitMigration(started.id, "ended") { !$0.active }
        #expect(failed.phase == "failed", "\(failed)")
        let (owner, epoch) = try await scene.awaitRunningOnce()
        #expect(owner != scene.source && epoch >= scene.epoch + 2)
        // Healed, the source learns from the log that the switchover did not commit — and that the
        // VM runs elsewhere now: its paused guest stays stopped.
        try scene.cluster.heal(scene.source)
        try await scene.cluster.await("n\(scene.source) up again") {
            (try? await scene.leaderAPI.nodes())?.first { $0.id == "n\(scene.source)" }?.state == "up"
        }
        try await scene.cluster.await("n\(scene.source)'s source gave the migration up") {
            scene.cluster.log(of: scene.source).contains("\(started.id) ended")
        }
        #expect(try await scene.awaitRunningOnce() == (owner, epoch))

        let journal = try await scene.finish(runningAt: epoch)
        #expect(MigrationScene.epochs(of: journal) == [scene.epoch, epoch])
    }
}
