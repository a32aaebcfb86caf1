// What the CLI prints: aligned tables, the status view, one-line errors, and where it finds a node.
import ClusterModel
import FlotillaAPI
import FlotillaCLI
import FlotillaClient
import Foundation
import Testing

private let gib: UInt64 = 1 << 30

private func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
    try JSONDecoder().decode(type, from: Data(json.utf8))
}

private let clusterJSON = """
    {"cluster": "local", "servedBy": "n1", "leader": "n1", "term": 2, "commitIndex": 17, "appliedIndex": 16,
     "members": [{"id": "n1", "role": "voter", "state": "leader"}, {"id": "n2", "role": "voter", "state": "follower"}],
     "nodes": [
      {"id": "n1", "state": "up", "role": "voter", "peerAddress": "127.0.0.1:7201", "clientAddress": "127.0.0.1:7101",
       "usableMemory": 8589934592, "reservedMemory": 1073741824, "freeMemory": 7516192768, "vms": ["Finance"],
       "memory": {"usable": 8589934592, "assigned": 3221225472}},
      {"id": "n2", "state": "draining", "role": "voter", "peerAddress": "127.0.0.1:7202", "clientAddress": "127.0.0.1:7102",
       "usableMemory": 17179869184, "reservedMemory": 0, "freeMemory": 17179869184, "vms": []}],
     "volumes": [{"id": "csv1", "path": "volumes/csv1", "coordinator": "n1", "state": "online", "vms": ["Finance", "Huge"]}],
     "vms": [
      {"id": "vm1", "name": "Finance", "state": "running", "desiredState": "running", "owner": "n1", "epoch": 1,
       "memory": {"startup": 1073741824, "minimum": 536870912, "maximum": 4294967296, "buffer": 20, "priority": 50,
                  "assigned": 3221225472, "demand": 2684354560, "status": "ok", "pagingBytes": 0},
       "restartPriority": "high", "preferredOwners": [], "volume": "csv1", "diskFile": "finance.vhdx", "migration": "mig1"},
      {"id": "vm2", "name": "Huge", "state": "pending", "desiredState": "running", "epoch": 0,
       "pendingReason": "needs 32.0 GiB startup memory; the most free on any up node is 7.0 GiB (n1)",
       "memory": {"startup": 34359738368, "minimum": 34359738368, "maximum": 34359738368, "buffer": 20, "priority": 50},
       "restartPriority": "medium", "preferredOwners": [], "volume": "csv1", "diskFile": "huge.vhdx"}],
     "migrations": [{"id": "mig1", "vm": "vm1", "vmName": "Finance", "source": "n1", "target": "n2", "phase": "copying",
       "active": true, "timings": {"preparing": 1000, "copying": 2000}}]}
    """

@Test func theStatusViewIsAlignedTablesUnderAHeadline() throws {
    let text = ClusterText.status(try decode(ClusterView.self, clusterJSON))
    #expect(
        text == """
            cluster local · leader n1 · term 2 · commit 17 · applied 16 · served by n1

            NODES
            ID  STATE     RAFT      RESERVED  ASSIGNED/USABLE  VMS  CLIENT
            n1  up        leader    1G        3G/8G            1    127.0.0.1:7101
            n2  draining  follower  0B        -/16G            0    127.0.0.1:7102

            VMS
            NAME     ID   STATE    OWNER  STARTUP  MIN   MAX  ASSIGNED  DEMAND  STATUS  EPOCH  NOTE
            Finance  vm1  running  n1     1G       512M  4G   3G        2.5G    ok      1      migrating (mig1)
            Huge     vm2  pending  -      32G      32G   32G  -         -       -       0      needs 32.0 GiB startup memory; the most free on any up node is 7.0 GiB (n1)

            VOLUMES
            ID    STATE   COORDINATOR  PATH          VMS
            csv1  online  n1           volumes/csv1  2

            MIGRATIONS
            ID    VM       SOURCE  TARGET  PHASE    REASON
            mig1  Finance  n1      n2      copying
            """)
}

@Test func emptyListsSaySoInsteadOfPrintingABareHeader() {
    #expect(ClusterText.vms([]) == "(no VMs)")
    #expect(ClusterText.nodes([]) == "(no nodes registered yet)")
    #expect(ClusterText.volumes([]) == "(no volumes)")
    #expect(ClusterText.migrations([]) == "(none running)")
}

@Test func tablesPadEveryColumnButTheLastAndLeaveNoTrailingSpaces() {
    let table = TextTable.render(header: ["A", "LONGER", "C"], rows: [["wide-cell", "x", ""], ["b", "", "last"]])
    #expect(table == "A          LONGER  C\nwide-cell  x\nb                  last")
}

@Test func anEventIsOneLineWithItsUTCTime() throws {
    let event = try decode(
        EventView.self,
        #"{"sequence": 7, "time": 1767225600000, "kind": "vm.started", "vm": "vm1", "detail": "vm1 (Finance) started on n2, epoch 1", "command": "startVM"}"#
    )
    let line = ClusterText.event(event)
    #expect(line == "     7  2026-01-01T00:00:00Z  vm.started           " + "vm1 (Finance) started on n2, epoch 1")
}

@Test func anErrorIsOneLineStartingWithTheCommandName() {
    #expect(
        ClusterText.errorLine("conflict: the name Finance is taken by vm1;\n  pick another name")
            == "flotilla: conflict: the name Finance is taken by vm1; pick another name")
}

@Test func theCLIFindsANodeFromTheFlagTheEnvironmentOrTheLocalCluster() throws {
    let local = Data(
        #"{"members": [{"id": "n1", "peer": "127.0.0.1:7201", "client": "127.0.0.1:17101"}, {"id": "n2", "peer": "127.0.0.1:7202", "client": "127.0.0.1:17102"}]}"#
            .utf8)
    #expect(
        try APILocation.candidates(flag: "http://10.0.0.5:7101/", environment: "127.0.0.1:1", localConfig: local)
            == [Endpoint(host: "10.0.0.5", port: 7101)])
    #expect(
        try APILocation.candidates(flag: nil, environment: "127.0.0.1:9", localConfig: local)
            == [Endpoint(host: "127.0.0.1", port: 9)])
    #expect(
        try APILocation.candidates(flag: nil, environment: nil, localConfig: local)
            == [Endpoint(host: "127.0.0.1", port: 17101), Endpoint(host: "127.0.0.1", port: 17102)])
    #expect(
        try APILocation.candidates(flag: nil, environment: nil, localConfig: nil)
            == [Endpoint(host: "127.0.0.1", port: 7101)])
    #expect {
        try APILocation.candidates(flag: "nowhere", environment: nil, localConfig: nil)
    } throws: { error in
        "\(error)" == "--api nowhere is not host:port (e.g. 127.0.0.1:7101)"
    }
}

@Test func aVMThatPagesSaysHowMuchInItsNote() throws {
    let vm = VMView(
        id: "vm3", name: "Sales", state: "running", desiredState: "running", owner: "n2", epoch: 4,
        memory: MemoryView(
            startup: gib, minimum: gib, maximum: 2 * gib, buffer: 20, priority: 10, assigned: gib, demand: 3 * gib / 2,
            status: "warning", pagingBytes: gib / 2),
        restartPriority: "low", preferredOwners: [], volume: "csv1", diskFile: "sales.vhdx")
    #expect(
        ClusterText.vms([vm]) == """
            NAME   ID   STATE    OWNER  STARTUP  MIN  MAX  ASSIGNED  DEMAND  STATUS   EPOCH  NOTE
            Sales  vm3  running  n2     1G       1G   2G   1G        1.5G    warning  4      pages 512M
            """)
}
