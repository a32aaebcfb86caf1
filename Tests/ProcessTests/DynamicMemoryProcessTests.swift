// Real node processes: a VM's memory follows its workload, the leader shows what its owner reports, and a failover keeps it within the new owner.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import HTTP2
import Testing

private let mib: UInt64 = 1 << 20

@Suite(.serialized, .timeLimit(.minutes(2)))
struct DynamicMemoryProcessTests {
    @Test func aVMsMemoryFollowsItsWorkloadAndEveryNodeShowsWhatItsOwnerReports() async throws {
        let cluster = try ProcessCluster(size: 3, electionTicks: 50)
        try cluster.startAll()
        _ = try await cluster.awaitLeader()
        let api = cluster.client(1)
        try await cluster.await("all three nodes registered") { (try? await api.nodes().count) == 3 }
        try await api.createVolume("csv1", coordinator: "n1")
        try await api.createVM(
            VMCreation(
                name: "Finance", startup: 512 * mib, minimum: 256 * mib, maximum: 2048 * mib, preferredOwners: ["n2"],
                volume: "csv1", workload: WorkloadView(demand: 400 * mib)))
        #expect(try await api.startVM("Finance").owner == "n2")

        // 400 MiB demanded, a 480 MiB target: n2 balloons its startup 512 MiB down to it.
        try await cluster.await("n2 reports Finance at its 480 MiB target") {
            (try? await api.vm("Finance").memory)?.assigned == 480 * mib
        }
        let vm = try await api.vm("Finance")
        #expect(vm.memory.status == "ok" && vm.memory.demand == 400 * mib && vm.memory.pagingBytes == 0)
        #expect(vm.workload == WorkloadView(demand: 400 * mib, dirtyPagesPerSecond: 500))

        // A step to 1 GiB: a 1.2 GiB target, hot-added; every node answers with the leader's figures.
        try await api.setVMWorkload("Finance", WorkloadView(demand: 1024 * mib))
        for node in 1...3 {
            try await cluster.await("n\(node) shows Finance at its new target") {
                (try? await cluster.client(node).vm("Finance").memory)?.assigned == 1229 * mib
            }
        }
        let nodes = try await api.nodes()
        #expect(nodes.first { $0.id == "n2" }?.memory?.assigned == 1229 * mib)
        #expect(nodes.first { $0.id == "n2" }?.memory?.usable == 8192 * mib)
        // The leader's /metrics has them too (a node's metrics are its own: the reports are the leader's).
        let leader = try await cluster.awaitLeader()
        let metrics = try await cluster.client(leader).call(.get, "/metrics")
        #expect(
            String(decoding: metrics, as: UTF8.self).contains(
                #"flotilla_vm_assigned_memory_bytes{node="n2",vm="vm1",name="Finance"} 1288699904"#))

        // Its owner dies: Finance restarts on a survivor with its startup memory, then its target again.
        cluster.kill9(2)
        try await cluster.await("Finance runs on a survivor at its target", within: .seconds(30)) {
            guard let vm = try? await api.vm("Finance"), let owner = vm.owner, owner != "n2" else { return false }
            return vm.memory.assigned == 1229 * mib
        }
        await cluster.close()
    }
}
