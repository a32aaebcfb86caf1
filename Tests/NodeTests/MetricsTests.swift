// The metrics page shows the memory the nodes report: per node assigned, per VM assigned, demand, paging and status.
import ClusterModel
import ClusterState
import RaftCore
import Testing

@testable import Node

@Test func theMetricsPageShowsReportedMemory() throws {
    let status = try RaftNode(
        configuration: RaftConfiguration(id: 1, electionTicks: 10, heartbeatTicks: 1),
        membership: Membership(voters: [1]),
        random: SeededGenerator(seed: 1)
    ).status
    let reported: [NodeID: NodeMemoryFacts] = [
        2: NodeMemoryFacts(
            usable: 8 << 30, assigned: 3 << 30,
            vms: [VMMemoryFacts(vm: 7, assigned: 3 << 30, demand: 4 << 30, status: .warning, pagingBytes: 1 << 30)])
    ]
    let page = Metrics.render(node: 1, status: status, state: ClusterState(), reported: reported)
    #expect(page.contains("flotilla_node_assigned_memory_bytes{node=\"n2\"} 3221225472\n"))
    #expect(page.contains("flotilla_vm_assigned_memory_bytes{node=\"n2\",vm=\"vm7\",name=\"vm7\"} 3221225472\n"))
    #expect(page.contains("flotilla_vm_memory_demand_bytes{node=\"n2\",vm=\"vm7\",name=\"vm7\"} 4294967296\n"))
    #expect(page.contains("flotilla_vm_paging_bytes{node=\"n2\",vm=\"vm7\",name=\"vm7\"} 1073741824\n"))
    #expect(page.contains("flotilla_vm_memory_status{node=\"n2\",vm=\"vm7\",name=\"vm7\",status=\"warning\"} 1\n"))
    #expect(page.contains("flotilla_vm_memory_status{node=\"n2\",vm=\"vm7\",name=\"vm7\",status=\"ok\"} 0\n"))
    #expect(Metrics.escaped("a \"b\"\\c\n") == "a \\\"b\\\"\\\\c\\n")

    // The heap allocation counter appears only when the malloc counter is preloaded (a benchmark's).
    #expect(!page.contains("flotilla_process_heap_allocations_total"))
    let counted = Metrics.render(node: 1, status: status, state: ClusterState(), allocations: 12345)
    #expect(counted.contains("flotilla_process_heap_allocations_total{node=\"n1\"} 12345\n"))

    var leased = status
    leased.leaseReads = 7
    #expect(
        Metrics.render(node: 1, status: leased, state: ClusterState()).contains(
            "flotilla_raft_lease_reads_total{node=\"n1\"} 7\n"))
}

@Test func theDowntimeHistogramCountsEachCompletedMigrationOnceFromItsFinalStats() throws {
    let status = try RaftNode(
        configuration: RaftConfiguration(id: 1, electionTicks: 10, heartbeatTicks: 1),
        membership: Membership(voters: [1]),
        random: SeededGenerator(seed: 1)
    ).status
    var state = ClusterState()
    var time: UInt64 = 1_700_000_000_000
    func apply(_ command: ClusterCommand) {
        time += 1000
        #expect(state.apply(command, proposedAt: time).rejection == nil, "\(command)")
    }
    for id: UInt64 in 1...2 {
        apply(
            .registerNode(
                NodeRegistration(
                    id: NodeID(id),
                    addresses: MemberAddresses(
                        peer: Endpoint(host: "10.0.0.\(id)", port: 7201),
                        client: Endpoint(host: "10.0.0.\(id)", port: 7101)),
                    role: .voter, usableMemory: 8 << 30)))
    }
    apply(.createVolume("csv1", path: "volumes/csv1", coordinator: 1))
    apply(
        .createVM(
            VMSpec(
                name: "web", memory: MemorySettings(startup: 1 << 30, minimum: 1 << 30, maximum: 1 << 30),
                disk: DiskFile(volume: "csv1", file: "web.disk"))))
    apply(.startVM(1, on: 1))
    let metrics = MigrationMetrics()
    let round = MigrationStats.Round(bytes: 1 << 20, milliseconds: 10, dirtyBytes: 0, throttlePercent: 0)
    // The source's stats of a round are not final: not counted.
    apply(.beginMigration(1, target: 2))
    let partial = ClusterCommand.recordMigrationStats(
        1, MigrationStats(rounds: [round], memoryBytes: 1 << 30, totalBytes: 1 << 20))
    apply(partial)
    metrics.applied(partial, in: state)
    apply(.advanceMigration(1, to: .copying))
    apply(.advanceMigration(1, to: .paused))
    apply(.finishMigration(1))
    let final = ClusterCommand.recordMigrationStats(
        1,
        MigrationStats(
            rounds: [round], memoryBytes: 1 << 30, totalBytes: 2 << 20, downtimeMicroseconds: 30_000,
            totalMilliseconds: 800))
    apply(final)
    metrics.applied(final, in: state)
    metrics.observe(downtimeMicroseconds: 400_000)
    let page = Metrics.render(node: 1, status: status, state: state, downtime: metrics.current)
    #expect(page.contains("# TYPE flotilla_migration_downtime_seconds histogram\n"))
    #expect(page.contains("flotilla_migration_downtime_seconds_bucket{le=\"0.025\"} 0\n"))
    #expect(page.contains("flotilla_migration_downtime_seconds_bucket{le=\"0.05\"} 1\n"))
    #expect(page.contains("flotilla_migration_downtime_seconds_bucket{le=\"0.25\"} 1\n"))
    #expect(page.contains("flotilla_migration_downtime_seconds_bucket{le=\"0.5\"} 2\n"))
    #expect(page.contains("flotilla_migration_downtime_seconds_bucket{le=\"+Inf\"} 2\n"))
    #expect(page.contains("flotilla_migration_downtime_seconds_sum 0.43\n"))
    #expect(page.contains("flotilla_migration_downtime_seconds_count 2\n"))
}
