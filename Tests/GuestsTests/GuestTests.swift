// A running guest: its workload touches memory and its journal grows, fsynced, until it stops.
import ClusterModel
import FlotillaTestKit
import Guests
import Synchronization
import TestSupport
import Testing

@Suite struct GuestTests {
    final class Acknowledgements: Sendable {
        let ids = Mutex<[JournalRecordID]>([])
        func record(_ id: JournalRecordID) { ids.withLock { $0.append(id) } }
    }

    /// The guests' beats come when the test moves this clock.
    let clock = ManualClock()

    func configuration(_ path: String) -> GuestConfiguration {
        GuestConfiguration(
            vm: 2, diskPath: path, memoryBytes: 64 << 20,
            workload: Workload(demand: .constant(2 << 20), dirtyPagesPerSecond: 2500),
            journalInterval: .milliseconds(10), seed: 9, clock: NodeClock(clock))
    }

    /// Moves the clock a beat at a time until `guest` has written `count` records.
    func waitForRecords(_ guest: Guest, atLeast count: Int) async throws {
        try await clock.advance(by: .milliseconds(10), until: "the guest writes \(count) records") {
            await guest.status.recordsWritten >= count
        }
    }

    @Test func aGuestWritesItsJournalAndAStartedOwnerContinuesIt() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/vm2.vhdx"
        let acknowledged = Acknowledgements()

        let first = Guest(configuration: configuration(path), onAcknowledged: acknowledged.record)
        try await first.start(epoch: 1)
        try await waitForRecords(first, atLeast: 5)
        await first.stop()
        let stopped = await first.status
        #expect(!stopped.running)
        #expect(stopped.residentPages > 0, "the workload touched memory")
        let afterStop = try DiskJournal.read(path: path).records.count
        #expect(afterStop == stopped.recordsWritten)
        #expect(clock.sleepers == 0, "the stopped guest still waits for its next beat")
        clock.advance(by: .seconds(60))
        #expect(try DiskJournal.read(path: path).records.count == afterStop, "nothing is written after stop()")

        // The next owner, under a newer epoch, replays and continues the sequence.
        let second = Guest(configuration: configuration(path), onAcknowledged: acknowledged.record)
        try await second.start(epoch: 3)
        #expect(await second.status.recordsReplayed == afterStop)
        try await waitForRecords(second, atLeast: 3)
        await second.stop()

        // A node still holding the old epoch cannot start the guest again.
        let stale = Guest(configuration: configuration(path))
        await #expect(throws: JournalError.self) { try await stale.start(epoch: 1) }
        #expect(await !stale.status.running)

        let journal = try DiskJournal.read(path: path)
        let ids = acknowledged.ids.withLock { $0 }
        #expect(ids.count == journal.records.count)
        #expect(Set(journal.records.map(\.epoch)) == [1, 3])
        #expect(JournalChecker.check(journal, acknowledged: ids).isEmpty)
    }
}
