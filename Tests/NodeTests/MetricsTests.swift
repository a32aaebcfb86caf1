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
}
