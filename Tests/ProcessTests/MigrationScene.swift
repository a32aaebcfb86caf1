// A VM to migrate on three real node processes, and what the tests of live migration check afterwards.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import Guests
import Synchronization
import Testing

/// Three node processes with one VM running on `source`, to migrate to `target`, while `leader` leads;
/// every agent is polled as it goes, so the test knows what the guests acknowledged.
///
/// The source and the target are the two followers, so killing or cutting off either one does not
/// also cost the cluster its leader (and killing the leader costs it neither of them).
final class MigrationScene: Sendable {
    enum Role { case leader, source, target }

    static let mib: UInt64 = 1 << 20
    let cluster: ProcessCluster
    let leader: Int
    let source: Int
    let target: Int
    let name = "Sales"
    let vm: VMID
    /// The epoch the VM ran under on the source before any migration.
    let epoch: UInt64
    let disk: String
    let acknowledged = AcknowledgedRecords()
    /// Paused guests' checksums the polls saw, as "node vm checksum".
    private let paused = PausedSightings()
    private let poller = Mutex<Task<Void, Never>?>(nil)

    /// Paused guests' checksums, as the polls saw them (a class: the poller holds it, not the scene).
    private final class PausedSightings: Sendable {
        let seen = Mutex<Set<String>>([])
    }

    /// A guest holding `demand` (32 MiB: its round 1 takes about a second in a debug build) and
    /// dirtying `dirtyPagesPerSecond`; `settings` are cluster settings written before it starts;
    /// the volume's coordinator is the node in `coordinator`'s role.
    init(
        hosts: Bool = false, environment: [String: String] = [:], settings: [String: String] = [:],
        demand: UInt64 = 32 << 20, dirtyPagesPerSecond: UInt64 = 2000, autoConverge: Bool = false,
        coordinator: Role = .leader
    ) async throws {
        // A 1 s election timeout: a copy that keeps both cores busy does not cost the cluster its leader.
        cluster = try ProcessCluster(
            size: 3, hosts: hosts, electionTicks: 50, journalIntervalMilliseconds: 50, environment: environment)
        try cluster.startAll()
        leader = try await cluster.awaitLeader()
        source = leader % 3 + 1
        target = source % 3 + 1
        let api = cluster.client(leader)
        try await cluster.await("all three nodes registered") {
            (try? await api.nodes())?.map(\.id) == ["n1", "n2", "n3"]
        }
        // A node makes no shell before it holds its first lease (a clean-clone run's migration
        // failed: "n1 could not make the shell: n1 is fenced (this node holds no lease yet)").
        let cluster = cluster
        try await cluster.await("every node holding a lease") {
            for node in 1...3 {
                guard let agent = try? await cluster.client(node).agent(), agent.fenced == nil else { return false }
            }
            return true
        }
        for (key, value) in settings.sorted(by: { $0.key < $1.key }) { try await api.setSetting(key, to: value) }
        let coordinatorNode = [Role.leader: leader, .source: source, .target: target][coordinator]!
        try await api.createVolume("csv1", coordinator: "n\(coordinatorNode)")
        let created = try await api.createVM(
            VMCreation(
                name: name, startup: 64 * Self.mib, minimum: 32 * Self.mib, maximum: 128 * Self.mib, volume: "csv1",
                workload: WorkloadView(demand: demand, dirtyPagesPerSecond: dirtyPagesPerSecond),
                autoConverge: autoConverge))
        vm = try #require(VMID(parsing: created.id))
        disk = cluster.sharedRoot + "/volumes/csv1/\(created.diskFile)"
        epoch = try await api.startVM(name, on: "n\(source)").epoch
        startPolling()
        // It runs and writes on the source, its memory filled to its demand.
        let (owner, _) = try await awaitRunningOnce()
        #expect(owner == source)
        try await cluster.await("\(name) holding its \(demand >> 20) MiB on n\(source)") {
            let guest = try? await self.cluster.client(self.source).agent().vms.first { $0.name == self.name }
            return (guest?.pagesTouched ?? 0) >= Int(demand >> 12)
        }
    }

    deinit { poller.withLock { $0 }?.cancel() }

    var leaderAPI: APIClient { cluster.client(leader) }

    /// Some node that runs and answers, for reads and writes (followers forward writes to the leader).
    func api(avoiding avoided: Set<Int> = []) -> APIClient {
        let node = (1...cluster.size).first { cluster.isRunning($0) && !avoided.contains($0) } ?? leader
        return cluster.client(node)
    }

    // MARK: Watching

    private func startPolling() {
        // The poller holds what it fills, not the scene: a test that fails early drops the scene,
        // whose deinit stops the poller, and then the cluster's kills its processes.
        let task = Task { [cluster, acknowledged, paused] in
            while !Task.isCancelled {
                for node in 1...cluster.size where cluster.isRunning(node) {
                    guard let view = try? await cluster.client(node).agent() else { continue }
                    acknowledged.record(view)
                    for guest in view.vms {
                        guard let checksum = guest.pausedChecksum else { continue }
                        _ = paused.seen.withLock { $0.insert("\(view.node) \(guest.id) \(checksum)") }
                    }
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        poller.withLock { $0 = task }
    }

    /// The checksums the polls saw of this VM's guest while it was paused on `node`.
    func pausedChecksums(on node: Int) -> Set<String> {
        let prefix = "n\(node) \(vm) "
        return Set(
            paused.seen.withLock { $0 }.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) })
    }

    /// Polls the migration through any node until `condition` holds; answers what it last saw.
    @discardableResult
    func awaitMigration(
        _ id: String, _ what: String, within limit: Duration = .seconds(30), _ condition: (MigrationView) -> Bool
    ) async throws -> MigrationView {
        var last: MigrationView?
        try await cluster.await("\(id) \(what)", within: limit) {
            for node in 1...cluster.size where cluster.isRunning(node) {
                guard let seen = try? await cluster.client(node).migration(id) else { continue }
                last = seen
                return condition(seen)
            }
            return false
        }
        return try #require(last)
    }

    /// Waits until the VM runs exactly once: on its owner in the committed state, at the committed
    /// epoch, and writing (3 records or more under it), while no other node's agent has a guest of
    /// it, paused or not. Answers the owner and the epoch.
    @discardableResult
    func awaitRunningOnce(within limit: Duration = .seconds(30)) async throws -> (owner: Int, epoch: UInt64) {
        let deadline = ContinuousClock.now + limit
        var why = ""
        while ContinuousClock.now < deadline {
            switch await runningOnce() {
            case .success(let answer): return answer
            case .failure(let problem): why = problem.description
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ProcessClusterError(
            description: "\(name) does not run exactly once within \(limit): \(why)\n" + cluster.logTails())
    }

    private func runningOnce() async -> Result<(owner: Int, epoch: UInt64), ProcessClusterError> {
        func no(_ why: String) -> Result<(owner: Int, epoch: UInt64), ProcessClusterError> {
            .failure(ProcessClusterError(description: why))
        }
        var record: VMView?
        for node in 1...cluster.size where cluster.isRunning(node) {
            record = try? await cluster.client(node).vm(name)
            if record != nil { break }
        }
        guard let record else { return no("no node answers GET /v1/vms/\(name)") }
        guard record.state == "running", let owner = record.owner.flatMap({ Int($0.dropFirst()) }) else {
            return no("it is \(record.state) (\(record.pendingReason ?? "no reason"))")
        }
        for node in 1...cluster.size where cluster.isRunning(node) {
            guard let view = try? await cluster.client(node).agent() else {
                return no("n\(node)'s agent does not answer")
            }
            let guest = view.vms.first { $0.id == record.id }
            if node == owner {
                guard let guest, guest.running, guest.epoch == record.epoch, guest.recordsWritten >= 3 else {
                    return no(
                        "n\(owner) owns it at epoch \(record.epoch) and runs "
                            + (guest.map { "epoch \($0.epoch), running \($0.running), \($0.recordsWritten) records" }
                                ?? "no guest of it") + (view.fenced.map { " (fenced: \($0))" } ?? ""))
                }
            } else if let guest {
                return no("n\(owner) owns it, yet n\(node) has a guest of it too (epoch \(guest.epoch))")
            }
        }
        return .success((owner, record.epoch))
    }

    // MARK: The end

    /// Stops the polls and the nodes, then reads the VM's journal and checks it: every record a
    /// guest acknowledged is on disk, epochs never go back, sequences have no gap, the newest
    /// epoch is `epoch` (what the one running instance ran under), and no VM epoch was reported by
    /// two nodes. Answers the journal for the test's own checks.
    func finish(runningAt epoch: UInt64) async throws -> JournalContents {
        poller.withLock { $0 }?.cancel()
        await poller.withLock { $0 }?.value
        for node in 1...cluster.size where cluster.isRunning(node) {
            if let view = try? await cluster.client(node).agent() { acknowledged.record(view) }
        }
        // Stopped nodes stop their guests first: the journal is read whole and at rest.
        let tails = cluster.logTails()

        await cluster.close()
        let journal = try DiskJournal.read(path: disk)
        let expected = acknowledged.acknowledged(vm: vm)
        #expect(!expected.isEmpty, "no acknowledged record of \(vm) was seen")
        let violations = JournalChecker.check(journal, acknowledged: expected)
        #expect(violations.isEmpty, "\(violations)\n\(tails)")
        #expect(acknowledged.ownerViolations.isEmpty, "\(acknowledged.ownerViolations)")
        #expect(journal.records.last?.epoch == Epoch(epoch), "the newest record's epoch is not the running one's")
        return journal
    }

    /// The epochs of the journal's records in file order, each once.
    static func epochs(of journal: JournalContents) -> [UInt64] {
        var epochs: [UInt64] = []
        for record in journal.records where epochs.last != record.epoch.rawValue {
            epochs.append(record.epoch.rawValue)
        }
        return epochs
    }
}
