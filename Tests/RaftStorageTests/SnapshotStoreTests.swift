// Snapshots come back whole; a crash mid-write leaves the previous one; damage is reported.
import FlotillaTestKit
import Foundation
import RaftStorage
import Testing

private func snapshot(_ index: UInt64) -> StoredSnapshot {
    StoredSnapshot(
        index: index, term: index / 10 + 1, metadata: Array("members n1 n2 n3".utf8),
        data: (0..<Int(index * 3)).map { UInt8(truncatingIfNeeded: $0) })
}

@Test func theNewestSnapshotComesBackAndOnlyTwoAreKept() throws {
    let directory = try TemporaryDirectory()
    let store = try SnapshotStore(directory: directory.path)
    #expect(try store.loadLatest() == nil)
    for index: UInt64 in [5, 17, 120, 300] { try store.save(snapshot(index)) }
    #expect(try store.loadLatest() == snapshot(300))
    let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".snap") }
    #expect(files.count == 2)
}

/// A crash during a write leaves a partial temporary file: the previous snapshot is still the
/// newest, and the leftover is removed.
@Test func aCrashDuringSaveLeavesThePreviousSnapshot() throws {
    let directory = try TemporaryDirectory()
    let store = try SnapshotStore(directory: directory.path)
    try store.save(snapshot(40))
    let partial = directory.path + "/" + "0000000000000050-0000000000000006.snap.tmp"
    try Data([0x46, 0x4C, 0x4F]).write(to: URL(fileURLWithPath: partial))
    #expect(try store.loadLatest() == snapshot(40))
    #expect(!FileManager.default.fileExists(atPath: partial))
}

@Test(arguments: [0, 9, 30, 44, 60, 200])
func aDamagedSnapshotIsReportedNotSkipped(offset: Int) throws {
    let directory = try TemporaryDirectory()
    let store = try SnapshotStore(directory: directory.path)
    try store.save(snapshot(100))
    let name = try #require(
        try FileManager.default.contentsOfDirectory(atPath: directory.path).first { $0.hasSuffix(".snap") })
    let url = URL(fileURLWithPath: directory.path + "/" + name)
    var bytes = try Data(contentsOf: url)
    bytes[offset] ^= 0x01
    try bytes.write(to: url)
    let error = #expect(throws: StorageError.self) { try store.loadLatest() }
    #expect(error?.isCorruption == true)
    #expect(error?.path == url.path)
}
