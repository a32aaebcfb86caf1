// What the CLI prints of live migrations: the table, and the four steps of `vm migrate --watch` as they happen.
import FlotillaAPI
import FlotillaCLI
import Testing

@Suite struct MigrationTextTests {
    static let start: UInt64 = 1_700_000_000_000

    static func view(
        phase: String, timings: [String: UInt64], rounds: Int = 0, downtime: UInt64? = nil, total: UInt64? = nil,
        reason: String? = nil
    ) -> MigrationView {
        let round = MigrationStatsView.Round(
            bytes: 16_384 * 4104, milliseconds: 240, dirtyBytes: 3 << 20, throttlePercent: 0)
        return MigrationView(
            id: "mig4", vm: "vm2", vmName: "Sales", source: "n3", target: "n1", phase: phase,
            active: !["completed", "failed", "cancelled"].contains(phase),
            timings: timings.mapValues { start + $0 }, reason: reason,
            stats: MigrationStatsView(
                rounds: Array(repeating: round, count: rounds), memoryBytes: 512 << 20,
                totalBytes: UInt64(rounds) * 16_384 * 4104 + (downtime == nil ? 0 : 768 * 4104),
                downtimeMicroseconds: downtime, totalMilliseconds: total))
    }

    @Test func theFourStepsArePrintedOnceEachAsTheyHappen() {
        var progress = MigrationProgress()
        #expect(progress.lines(for: Self.view(phase: "preparing", timings: ["preparing": 0])).isEmpty)
        #expect(
            progress.lines(for: Self.view(phase: "copying", timings: ["preparing": 0, "copying": 21]))
                == ["1. +21.0 ms: n1 made the shell of Sales and reserved 512 MiB"])
        let copying: [String: UInt64] = ["preparing": 0, "copying": 21]
        #expect(
            progress.lines(for: Self.view(phase: "copying", timings: copying, rounds: 1))
                == ["2. round 1: 16384 pages, 64.1 MiB in 240.0 ms; 3 MiB dirtied meanwhile"])
        #expect(progress.lines(for: Self.view(phase: "copying", timings: copying, rounds: 1)).isEmpty)
        let paused = copying.merging(["paused": 520]) { $1 }
        let lines = progress.lines(for: Self.view(phase: "paused", timings: paused, rounds: 2))
        #expect(lines.count == 2)
        #expect(lines.last == "3. +520.0 ms: paused on n3 for the last pages and the device state")
        // Committed, but the target has not recorded the downtime yet: wait for it.
        let completed = paused.merging(["completed": 540]) { $1 }
        #expect(progress.lines(for: Self.view(phase: "completed", timings: completed, rounds: 2)).isEmpty)
        #expect(!progress.finished)
        #expect(
            progress.lines(
                for: Self.view(phase: "completed", timings: completed, rounds: 2, downtime: 31_500, total: 548))
                == [
                    "4. +540.0 ms: switchover committed; n1 resumed Sales and announced it — downtime 31.5 ms, "
                        + "total 548.0 ms, 131.2 MiB sent for 512 MiB of memory"
                ])
        #expect(progress.finished && progress.switchedOver)
    }

    @Test func aFailedMigrationEndsTheWatchWithItsReason() {
        var progress = MigrationProgress()
        let lines = progress.lines(
            for: Self.view(
                phase: "failed", timings: ["preparing": 0, "copying": 20, "failed": 9000], rounds: 3,
                reason: "did not converge in 3 rounds"))
        #expect(lines.last == "mig4 failed: did not converge in 3 rounds; Sales stays on n3")
        // `vm migrate --watch` then exits non-zero.
        #expect(progress.finished && !progress.switchedOver)
    }

    @Test func theTableShowsRoundsBytesDowntimeAndTotal() {
        let table = ClusterText.migrationTable([
            Self.view(
                phase: "completed", timings: ["preparing": 0, "completed": 540], rounds: 2, downtime: 31_500,
                total: 548)
        ])
        #expect(table.contains("ID    VM     FROM  TO  PHASE      ROUNDS  SENT       DOWNTIME  TOTAL     REASON"))
        #expect(table.contains("mig4  Sales  n3    n1  completed  2       131.2 MiB  31.5 ms   548.0 ms"))
        #expect(ClusterText.migrationTable([]) == "(none)")
    }
}
