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

@Suite struct GuestMigrationTests {
    let clock = ManualClock()

    func configuration(_ path: String, seed: UInt64) -> GuestConfiguration {
        GuestConfiguration(
            vm: 4, diskPath: path, memoryBytes: 16 << 20,
            workload: Workload(demand: .constant(8 << 20), dirtyPagesPerSecond: 3000),
            journalInterval: .milliseconds(10), seed: seed, clock: NodeClock(clock))
    }

    func beat(_ guest: Guest, until done: @escaping () async -> Bool) async throws {
        try await clock.advance(by: .milliseconds(10), until: "the guest beats") { await done() }
    }

    /// The copy a migration makes, in this process: every page, rounds of dirty pages while the
    /// guest runs, then the last ones once it is paused; the target continues from the image.
    @Test func aCopiedGuestContinuesWithTheSameMemoryAndAJournalWithoutAGapOrADuplicate() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/vm4.vhdx"
        let acknowledged = Mutex<[JournalRecordID]>([])
        let source = Guest(configuration: configuration(path, seed: 1)) { id in acknowledged.withLock { $0.append(id) }
        }
        try await source.start(epoch: 1)
        try await beat(source) { await source.status.recordsWritten >= 3 }

        var image = GuestMemory(bytes: 16 << 20)
        for (page, word) in await source.beginCopy() { image.write(page: page, word: word) }
        #expect(image.residentPages == 2048, "the guest holds its 8 MiB demand")
        for _ in 0..<3 {
            try await beat(source) { await source.dirtyPageCount > 0 }
            for (page, word) in await source.takeDirtyPages() { image.write(page: page, word: word) }
        }
        await source.pause()
        #expect(await source.isPaused)
        #expect(clock.sleepers == 0, "a paused guest waits for no beat")
        for (page, word) in await source.takeDirtyPages() { image.write(page: page, word: word) }
        let (activity, bytes, checksum) = await source.migrationState
        #expect(bytes == 16 << 20)
        #expect(image.checksum == checksum, "the target's image is the source's at pause")

        let target = Guest(configuration: configuration(path, seed: 2), migrated: image, activity: activity) { id in
            acknowledged.withLock { $0.append(id) }
        }
        try await target.start(epoch: 2)
        try await beat(target) { await target.status.recordsWritten >= 3 }
        #expect(await target.status.residentPages == 2048)
        // The source cannot come back under its old epoch once the target has written a newer one.
        await #expect(throws: JournalError.self) { try await source.resume() }
        await target.stop()
        await source.stop()

        let journal = try DiskJournal.read(path: path)
        #expect(JournalChecker.check(journal, acknowledged: acknowledged.withLock { $0 }).isEmpty)
        #expect(Set(journal.records.map(\.epoch)) == [1, 2])
    }

    @Test func aPausedGuestThatResumesContinuesItsJournalUnderItsEpoch() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/vm4.vhdx"
        let guest = Guest(configuration: configuration(path, seed: 3))
        try await guest.start(epoch: 5)
        try await beat(guest) { await guest.status.recordsWritten >= 2 }
        await guest.pause()
        let paused = try DiskJournal.read(path: path)
        clock.advance(by: .seconds(10))
        #expect(try DiskJournal.read(path: path) == paused, "nothing is written while paused")
        try await guest.resume()
        try await beat(guest) { await guest.status.recordsWritten >= 2 }
        await guest.stop()
        let journal = try DiskJournal.read(path: path)
        #expect(journal.records.count > paused.records.count && JournalChecker.check(journal).isEmpty)
        #expect(Set(journal.records.map(\.epoch)) == [5])
    }

    @Test func aThrottledGuestDirtiesLess() async throws {
        let directory = try TemporaryDirectory()
        let guest = Guest(configuration: configuration(directory.path + "/vm4.vhdx", seed: 4))
        try await guest.start(epoch: 1)
        try await beat(guest) { await guest.status.recordsWritten >= 1 }
        _ = await guest.beginCopy()
        await guest.throttle(percent: 90)
        let before = await guest.status.recordsWritten
        try await beat(guest) { await guest.status.recordsWritten >= before + 10 }
        // 100 ms at 3000 pages/s less 90 %: about 30 pages, against 300 unthrottled.
        #expect(await guest.dirtyPageCount <= 40)
        await guest.stop()
    }
}
