// The rules the state's records follow on their own: memory settings, paths, ids, byte counts, snapshots.
import ClusterModel
import ClusterState
import Testing

@Test func consistentMemorySettingsHaveNoProblem() {
    #expect(MemorySettings(startup: gib, minimum: 512 * mib, maximum: 4 * gib).problem == nil)
    #expect(MemorySettings(startup: gib, minimum: gib, maximum: gib, bufferPercent: 5, priority: 0).problem == nil)
    #expect(MemorySettings(startup: gib, minimum: gib, maximum: gib, bufferPercent: 2000, priority: 100).problem == nil)
    let defaults = MemorySettings(startup: gib, minimum: gib, maximum: gib)
    #expect(defaults.bufferPercent == 20)
    #expect(defaults.priority == 50)
}

@Test(
    arguments: [
        (MemorySettings(startup: gib, minimum: 0, maximum: gib), "more than 0"),
        (MemorySettings(startup: gib, minimum: 2 * gib, maximum: 4 * gib), "minimum ≤ startup ≤ maximum"),
        (MemorySettings(startup: 4 * gib, minimum: gib, maximum: 2 * gib), "minimum ≤ startup ≤ maximum"),
        (MemorySettings(startup: gib, minimum: gib, maximum: 1 << 51), "above the limit"),
        (MemorySettings(startup: gib, minimum: gib, maximum: gib, bufferPercent: 4), "5–2000 %"),
        (MemorySettings(startup: gib, minimum: gib, maximum: gib, bufferPercent: 2001), "5–2000 %"),
        (MemorySettings(startup: gib, minimum: gib, maximum: gib, priority: 101), "0–100"),
    ])
func inconsistentMemorySettingsAreExplained(settings: MemorySettings, expected: String) {
    #expect(settings.problem?.contains(expected) == true, "\(settings.problem ?? "no problem")")
}

@Test(arguments: ["volumes/csv1", "csv1", "a/b/c.vhdx", "Finance disk.img"])
func relativePathsInsideTheRootAreAccepted(path: String) {
    #expect(SharedPath.problem(path, what: "path") == nil)
}

@Test(arguments: [
    ("", "1–255 bytes"), ("/abs/path", "absolute"), ("a/../b", "'..'"), ("..", "'..'"), ("./a", "'.'"),
    ("a//b", "empty component"), ("a/", "empty component"), ("a\u{0}b", "control character"),
    ("a\\b", "backslash"), (String(repeating: "x", count: 256), "1–255 bytes"),
])
func pathsThatCouldLeaveTheRootAreRefused(path: String, expected: String) {
    let problem = SharedPath.problem(path, what: "path")
    #expect(problem?.contains(expected) == true, "\(problem ?? "accepted")")
}

@Test func volumeIDsAreShortAndLowercase() {
    #expect(VolumeID("csv1").problem == nil)
    #expect(VolumeID("csv-2").problem == nil)
    for bad in ["", "CSV1", "1csv", "csv_1", "csv 1", String(repeating: "a", count: 33)] {
        #expect(VolumeID(bad).problem != nil, "\(bad) was accepted")
    }
}

@Test func vmIDsParseAndPrint() {
    #expect(VMID(parsing: "vm3") == 3)
    #expect(VMID(parsing: "12") == 12)
    #expect(VMID(parsing: "vm0") == nil)
    #expect(VMID(parsing: "n3") == nil)
    #expect(VMID(7).description == "vm7")
    #expect(MigrationID(2).description == "mig2")
}

@Test func byteCountsReadAsPeopleWriteThem() {
    #expect(ByteCount(gib).description == "1.0 GiB")
    #expect(ByteCount(gib + gib / 2).description == "1.5 GiB")
    #expect(ByteCount(512 * mib).description == "512 MiB")
    #expect(ByteCount(mib + mib / 2).description == "1.5 MiB")
    #expect(ByteCount(1023).description == "1023 bytes")
    #expect(ByteCount(2047).description == "1.9 KiB")
    // Rounded down: a free amount is never overstated.
    #expect(ByteCount(2 * gib - 1).description == "1.9 GiB")
}

@Test func nodeStatesSayWhoOwnsAndWhoTakesNewWork() {
    #expect(NodeState.allCases.filter(\.canOwnVMs) == [.up, .draining, .paused])
    #expect(NodeState.allCases.filter(\.takesNewWork) == [.up])
    #expect(NodeState.down.allowedNext == [.up])
    #expect(NodeState.allCases.allSatisfy { !$0.allowedNext.contains($0) })
}

@Test func migrationPhasesMoveForwardOnly() {
    #expect(MigrationPhase.preparing.next == .copying)
    #expect(MigrationPhase.copying.next == .paused)
    #expect(MigrationPhase.paused.next == nil)
    #expect(MigrationPhase.allCases.filter(\.isActive) == [.queued, .preparing, .copying, .paused])
    #expect(MigrationPhase.allCases.filter(\.isRunning) == [.preparing, .copying, .paused])
    #expect(MigrationPhase.queued.next == nil, "a queued migration starts when its turn comes, not by command")
}

/// A snapshot written by the first release: version 1, settings and member addresses only.
@Test func versionOneSnapshotsStillDecode() throws {
    func string(_ text: String) -> [UInt8] { [UInt8(text.utf8.count)] + Array(text.utf8) }
    let bytes: [UInt8] =
        [1, 1] + string("failover.max-per-hour") + string("3") + [1, 4] + string("10.0.0.4:7201")
        + string("10.0.0.4:7101")
    let state = try ClusterState(snapshot: bytes)
    #expect(state.settings == ["failover.max-per-hour": "3"])
    #expect(
        state.memberAddresses == [
            4: MemberAddresses(
                peer: Endpoint(host: "10.0.0.4", port: 7201), client: Endpoint(host: "10.0.0.4", port: 7101))
        ])
    #expect(state.nodes.isEmpty && state.vms.isEmpty && state.events.isEmpty)
    #expect(state.nextVMID == 1)
    // Re-written in today's format, it reads back the same.
    #expect(state.snapshot.first == ClusterState.snapshotVersion)
    #expect(try ClusterState(snapshot: state.snapshot) == state)
}

@Test func unknownSnapshotVersionsAreRefused() {
    #expect(throws: WireFormatError.self) { try ClusterState(snapshot: [ClusterState.snapshotVersion + 1, 0, 0]) }
    #expect(throws: WireFormatError.self) { try ClusterState(snapshot: []) }
    // Versions 2 and 3 with their record sections missing.
    #expect(throws: WireFormatError.self) { try ClusterState(snapshot: [2, 0, 0]) }
    #expect(throws: WireFormatError.self) { try ClusterState(snapshot: [3, 0, 0]) }
}

/// A version-2 snapshot had no workloads: its VMs run the standard one.
@Test func versionTwoSnapshotsGiveTheirVMsTheStandardWorkload() throws {
    let memory = MemorySettings(startup: 1 << 30, minimum: 1 << 29, maximum: 1 << 32)
    var cluster = TestCluster.threeNodes()
    cluster.applied(
        .createVM(VMSpec(name: "Finance", memory: memory, disk: DiskFile(volume: "csv1", file: "finance.vhdx"))))
    let state = cluster.state
    var workload = ByteWriter()
    Workload.standard(for: memory).encode(into: &workload)
    // The one VM record's workload, auto-converge flag (0) and driver (0: simulated), cut out of
    // today's snapshot, make it a version-2 one.
    var bytes = state.snapshot
    let start = try #require(
        bytes.indices.first { bytes[$0...].starts(with: workload.bytes + [0, 0]) }, "the workload is in the snapshot")
    bytes.removeSubrange(start..<start + workload.bytes.count + 2)
    bytes[0] = 2
    #expect(try ClusterState(snapshot: bytes) == state)
}

/// A version-4 snapshot had no guest drivers: its VMs are simulated.
@Test func versionFourSnapshotsMakeTheirVMsSimulated() throws {
    var cluster = TestCluster.threeNodes()
    let id = cluster.createVM("Finance")
    let state = cluster.state
    #expect(state.vms[id]?.driver == .simulated)
    var bytes = state.snapshot
    // The driver (0: simulated) follows the workload and the auto-converge flag (0); cut it.
    var workload = ByteWriter()
    state.vms[id]!.workload.encode(into: &workload)
    let start = try #require(
        bytes.indices.first { bytes[$0...].starts(with: workload.bytes + [0, 0]) }, "the workload is in the snapshot")
    bytes.remove(at: start + workload.bytes.count + 1)
    bytes[0] = 4
    #expect(try ClusterState(snapshot: bytes) == state)
}
