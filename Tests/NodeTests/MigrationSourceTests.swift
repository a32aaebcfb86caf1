// The source's budget for the last copy: the downtime target less what the switchover adds.
import Testing

@testable import Node

@Test func theLastCopyIsPlannedForHalfOfTheDowntimeTargetLessTheSwitchoversCost() {
    // 50 ms, a 3 ms commit, 1 GiB (two 3 ms checksums) and the 2 ms margin leave 39 ms: the last
    // pages are planned for half of it, so a copy twice as slow as its estimate still fits.
    #expect(
        MigrationSource.lastCopyTarget(.milliseconds(50), commit: .milliseconds(3), memoryBytes: 1 << 30)
            == .milliseconds(19.5))
    // A cost above the target still leaves a fifth of it, so a clean guest pauses at once.
    #expect(
        MigrationSource.lastCopyTarget(.milliseconds(10), commit: .milliseconds(30), memoryBytes: 16 << 30)
            == .milliseconds(2))
}
