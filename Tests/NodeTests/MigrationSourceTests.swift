// The source's budget for the last copy: the downtime target less what the switchover adds.
import Testing

@testable import Node

@Test func theLastCopyGetsTheDowntimeTargetLessTheSwitchoversCost() {
    // 50 ms, a 3 ms commit, 1 GiB (two 3 ms checksums) and the 2 ms margin: 39 ms for the last pages.
    #expect(
        MigrationSource.lastCopyTarget(.milliseconds(50), commit: .milliseconds(3), memoryBytes: 1 << 30)
            == .milliseconds(39))
    // A cost above the target still leaves a fifth of it, so a clean guest pauses at once.
    #expect(
        MigrationSource.lastCopyTarget(.milliseconds(10), commit: .milliseconds(30), memoryBytes: 16 << 30)
            == .milliseconds(2))
}
