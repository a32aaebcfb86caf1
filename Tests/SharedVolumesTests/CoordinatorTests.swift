// Two nodes in one process share a root: disk files are made through the coordinator, broken
// direct paths redirect journal I/O to it, and a new coordinator validates before it serves.
import ClusterModel
import FlotillaTestKit
import Foundation
import Guests
import Logging
import SharedVolumes
import Synchronization
import TestSupport
import Testing

private let quiet = Logger(label: "flotilla.test", factory: { _ in SwiftLogNoOpLogHandler() })

/// The link between the in-process nodes: calls the other node's coordinator directly, as the
/// peer route does over HTTP/2, and counts what it carried.
final class InProcessLink: CoordinatorLink {
    let coordinators: [NodeID: VolumeCoordinator]
    let appends = Mutex(0)

    init(_ coordinators: [NodeID: VolumeCoordinator]) { self.coordinators = coordinators }

    func metadata(_ operation: MetadataOperation, volume: String, coordinator: NodeID) async throws(VolumeError)
        -> VolumeMetadata
    {
        try await coordinators[coordinator]!.perform(operation, on: volume)
    }

    func journal(_ operation: JournalOperation, volume: String, coordinator: NodeID) async throws(VolumeError)
        -> JournalPosition
    {
        if case .append = operation { appends.withLock { $0 += 1 } }
        return try await coordinators[coordinator]!.journal(operation, on: volume)
    }
}

/// Holds the coordinator the test says the volume has, as a node's applied state would.
final class CurrentCoordinator: Sendable {
    let node = Mutex<NodeID>(1)
}

@Suite final class CoordinatorTests {
    let root: TemporaryDirectory
    let n1: VolumeCoordinator
    let n2: VolumeCoordinator
    let link: InProcessLink
    let client2: VolumeClient
    let assignment = ["csv1": "volumes/csv1"]

    init() throws {
        root = try TemporaryDirectory()
        n1 = VolumeCoordinator(sharedRoot: root.path, logger: quiet)
        n2 = VolumeCoordinator(sharedRoot: root.path, logger: quiet)
        link = InProcessLink([1: n1, 2: n2])
        client2 = VolumeClient(node: 2, coordinator: n2, directIO: DirectIOSwitch(), link: link)
    }

    var disk: String { root.path + "/volumes/csv1/finance.vhdx" }

    /// The guests' beats come when the test moves this clock.
    let clock = ManualClock()

    /// Moves the clock a beat at a time until `guest` has written `count` records.
    private func waitForRecords(_ guest: Guest, atLeast count: Int) async throws {
        try await clock.advance(by: .milliseconds(10), until: "the guest writes \(count) records") {
            await guest.status.recordsWritten >= count
        }
    }

    @Test func aNonCoordinatorCreatesDiskFilesThroughTheCoordinator() async throws {
        await n1.coordinate(assignment)
        // n2 serves nothing it was not assigned, and says whom to ask.
        await #expect(throws: VolumeError.self) { try await self.n2.perform(.deleteDiskFile(file: "x"), on: "csv1") }

        let metadata = try await client2.metadata(
            .createDiskFile(file: "finance.vhdx", vm: 1, size: 1 << 30), volume: "csv1", coordinator: 1)
        #expect(metadata.diskFiles == [DiskFileEntry(name: "finance.vhdx", vm: 1, size: 1 << 30)])
        #expect(FileManager.default.fileExists(atPath: disk))
        let onDisk = try VolumeDirectory(volume: "csv1", sharedRoot: root.path, volumePath: "volumes/csv1")
            .loadValidated()
        #expect(onDisk == metadata, "the coordinator wrote its metadata file")
        // Creating it again for the same VM is a no-op; for another VM a conflict.
        #expect(
            try await client2.metadata(
                .createDiskFile(file: "finance.vhdx", vm: 1, size: 1 << 30), volume: "csv1", coordinator: 1)
                == metadata)
        do {
            _ = try await client2.metadata(
                .createDiskFile(file: "finance.vhdx", vm: 2, size: 1 << 30), volume: "csv1", coordinator: 1)
            Issue.record("a second VM got the same disk file")
        } catch {
            #expect(error.kind == .conflict)
            #expect(error.detail.contains("belongs to vm1"))
        }
        let resized = try await client2.metadata(
            .resizeDiskFile(file: "finance.vhdx", size: 2 << 30), volume: "csv1", coordinator: 1)
        #expect(resized.entry(named: "finance.vhdx")?.size == 2 << 30)
        let deleted = try await client2.metadata(.deleteDiskFile(file: "finance.vhdx"), volume: "csv1", coordinator: 1)
        #expect(deleted.diskFiles.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: disk))
    }

    @Test func aBrokenDirectPathRedirectsJournalAppendsThroughTheCoordinator() async throws {
        await n1.coordinate(assignment)
        _ = try await client2.metadata(
            .createDiskFile(file: "finance.vhdx", vm: 1, size: 1 << 30), volume: "csv1", coordinator: 1)
        let current = CurrentCoordinator()
        let redirect = VolumeJournalRedirect(
            volume: "csv1", file: "finance.vhdx", diskPath: disk, client: client2,
            currentCoordinator: { current.node.withLock { $0 } })
        let acknowledged = Mutex<[JournalRecordID]>([])
        let guest = Guest(
            configuration: GuestConfiguration(
                vm: 1, diskPath: disk, memoryBytes: 64 << 20,
                workload: Workload(demand: .constant(1 << 20), dirtyPagesPerSecond: 1000),
                journalInterval: .milliseconds(10), seed: 1, redirect: redirect, clock: NodeClock(clock)),
            onAcknowledged: { id in acknowledged.withLock { $0.append(id) } })

        // Broken from the start: even the open (replay) goes through n1.
        client2.directIO.set("csv1", broken: true)
        try await guest.start(epoch: 1)
        try await waitForRecords(guest, atLeast: 5)
        #expect(link.appends.withLock { $0 } >= 5, "the records went through the coordinator")

        // The path heals: appends go direct again and the sequence goes on.
        client2.directIO.set("csv1", broken: false)
        let carried = link.appends.withLock { $0 }
        try await waitForRecords(guest, atLeast: await guest.status.recordsWritten + 5)
        #expect(link.appends.withLock { $0 } <= carried + 1)

        // Broken again, and the coordinator moves meanwhile: the new one validates and serves.
        client2.directIO.set("csv1", broken: true)
        await n1.coordinate([:])
        await n2.coordinate(assignment)
        current.node.withLock { $0 = 2 }
        try await waitForRecords(guest, atLeast: await guest.status.recordsWritten + 5)
        await guest.stop()
        let failure = await guest.status.failure
        #expect(failure == nil, "\(failure ?? "")")

        let journal = try DiskJournal.read(path: disk)
        #expect(JournalChecker.check(journal, acknowledged: acknowledged.withLock { $0 }).isEmpty)
        #expect(journal.records.count == acknowledged.withLock { $0.count })
    }

    @Test func aStaleOwnersRedirectedAppendIsRefused() async throws {
        await n1.coordinate(assignment)
        _ = try await n1.perform(.createDiskFile(file: "finance.vhdx", vm: 1, size: 1 << 30), on: "csv1")
        let newOwner = try DiskJournal.open(path: disk, vm: 1, epoch: 3)
        try newOwner.append(epoch: 3, payload: [1])
        newOwner.close()
        do {
            _ = try await n1.journal(
                .append(file: "finance.vhdx", vm: 1, epoch: 2, sequence: 2, payload: [2]), on: "csv1")
            Issue.record("an append of an older epoch was accepted")
        } catch {
            #expect(error.kind == .conflict)
            #expect(error.detail.contains("newer than this owner's epoch 2"))
        }
        #expect(try DiskJournal.read(path: disk).records.map(\.epoch) == [3])
    }

    @Test func aNewCoordinatorRefusesDamagedMetadataAndServesOnceItIsFixed() async throws {
        await n1.coordinate(assignment)
        _ = try await n1.perform(.createDiskFile(file: "finance.vhdx", vm: 1, size: 1 << 30), on: "csv1")
        let metadataPath = root.path + "/volumes/csv1/" + VolumeMetadata.fileName
        let good = try Data(contentsOf: URL(fileURLWithPath: metadataPath))
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: metadataPath))

        await n1.coordinate([:])
        await n2.coordinate(assignment)
        #expect(await n2.served.isEmpty)
        let refusal = await n2.refusals["csv1"]
        #expect(refusal?.contains("does not parse as volume metadata") == true)
        do {
            _ = try await client2.metadata(
                .createDiskFile(file: "sales.vhdx", vm: 2, size: 1 << 30), volume: "csv1", coordinator: 2)
            Issue.record("a coordinator served a volume whose metadata is damaged")
        } catch {
            #expect(error.kind == .notServing)
            #expect(error.detail == refusal)
        }
        // Restored: the next pass validates it again and serves.
        try good.write(to: URL(fileURLWithPath: metadataPath))
        await n2.coordinate(assignment)
        #expect(await n2.served == ["csv1"])
        #expect(try await n2.metadata(of: "csv1").entry(named: "finance.vhdx")?.vm == 1)

        // A fenced coordinator serves nothing.
        await n2.fence(reason: "lease ran out")
        await #expect(throws: VolumeError.self) { try await self.n2.metadata(of: "csv1") }
    }
}
