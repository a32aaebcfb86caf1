// Each storage format read at its current version, and refused, naming both versions, at the next.
import ClusterModel
import FlotillaTestKit
import Foundation
import RaftStorage
import Testing

/// Rewrites byte `offset` of the file at `path`.
private func stamp(_ path: String, at offset: Int, with byte: UInt8) throws {
    var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    bytes[offset] = byte
    try bytes.write(to: URL(fileURLWithPath: path))
}

private func files(in directory: String, ending suffix: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(suffix) }.sorted()
        .map { directory + "/" + $0 }
}

private func writeSegment(in directory: String) throws {
    let (log, _, _) = try WriteAheadLog.open(.init(directory: directory))
    try log.append(type: 1, payload: Array("an entry".utf8))
    try log.sync()
}

@Test func aSegmentOfTheCurrentFormatIsRead() throws {
    let directory = try TemporaryDirectory()
    try writeSegment(in: directory.path)
    let segment = try #require(try files(in: directory.path, ending: ".wal").first)
    let magic = try Data(contentsOf: URL(fileURLWithPath: segment)).prefix(8)
    #expect(Array(magic) == Array("FLOTWAL".utf8) + [UInt8(ascii: "0") + WriteAheadLog.formatVersion])
    let (_, records, _) = try WriteAheadLog.open(.init(directory: directory.path))
    #expect(records.map(\.payload) == [Array("an entry".utf8)])
}

@Test func aSegmentOfANewerFormatStopsRecoveryNamingBothVersions() throws {
    let directory = try TemporaryDirectory()
    try writeSegment(in: directory.path)
    let segment = try #require(try files(in: directory.path, ending: ".wal").first)
    try stamp(segment, at: 7, with: UInt8(ascii: "0") + WriteAheadLog.formatVersion + 1)
    let error = #expect(throws: StorageError.self) { try WriteAheadLog.open(.init(directory: directory.path)) }
    #expect(error?.isCorruption == false)
    #expect(error?.newerFormat?.found == UInt64(WriteAheadLog.formatVersion) + 1)
    #expect(
        error?.description
            == "write-ahead log segment \(segment) is write-ahead log format 2; this build reads up to 1: "
            + "upgrade this node (docs/operations.md, Upgrades)")
    // Refused, not repaired: the segment is as it was.
    #expect(try Data(contentsOf: URL(fileURLWithPath: segment)).count > 8)
}

/// A magic damaged in its version byte (not a digit) is damage, not a newer format.
@Test func aSegmentWhoseVersionByteIsNotADigitIsDamage() throws {
    let directory = try TemporaryDirectory()
    try writeSegment(in: directory.path)
    let segment = try #require(try files(in: directory.path, ending: ".wal").first)
    try stamp(segment, at: 7, with: 0xC1)
    let error = #expect(throws: StorageError.self) { try WriteAheadLog.open(.init(directory: directory.path)) }
    #expect(error?.isCorruption == true)
    #expect(error?.newerFormat == nil)
}

@Test func aSnapshotOfTheCurrentFormatIsReadAndANewerOneIsRefused() throws {
    let directory = try TemporaryDirectory()
    let store = try SnapshotStore(directory: directory.path)
    let snapshot = StoredSnapshot(index: 12, term: 3, metadata: [1, 2], data: [3, 4, 5])
    try store.save(snapshot)
    #expect(try store.loadLatest() == snapshot)

    let file = try #require(try files(in: directory.path, ending: ".snap").first)
    try stamp(file, at: 7, with: UInt8(ascii: "0") + SnapshotStore.formatVersion + 1)
    let error = #expect(throws: StorageError.self) { try store.loadLatest() }
    #expect(error?.isCorruption == false)
    #expect(
        error?.description
            == "snapshot \(file) is Raft snapshot file format 2; this build reads up to 1: "
            + "upgrade this node (docs/operations.md, Upgrades)")
}

/// The storage a node opens at start passes the refusal on unchanged.
@Test func raftDiskStorageRefusesANewerSegment() throws {
    let directory = try TemporaryDirectory()
    do { _ = try RaftDiskStorage.open(directory: directory.path) }
    let segment = try #require(try files(in: directory.path + "/wal", ending: ".wal").first)
    try stamp(segment, at: 7, with: UInt8(ascii: "0") + WriteAheadLog.formatVersion + 1)
    let error = #expect(throws: StorageError.self) { try RaftDiskStorage.open(directory: directory.path) }
    #expect(error?.newerFormat?.newest == UInt64(WriteAheadLog.formatVersion))
}

@Test func aDataDirectoryOfTheCurrentFormatOpensAndANewerOneIsRefused() throws {
    let root = try TemporaryDirectory()
    let path = root.path + "/n1"
    _ = try DataDirectory.open(path, clusterID: "alpha", nodeID: "n1")
    let identity = try String(contentsOfFile: path + "/identity", encoding: .utf8)
    #expect(identity == "flotilla-data-dir v\(DataDirectory.formatVersion) cluster=alpha node=n1\n")
    #expect(try DataDirectory.open(path, clusterID: "alpha", nodeID: "n1").isNew == false)

    try Data("flotilla-data-dir v\(DataDirectory.formatVersion + 1) cluster=alpha node=n1\n".utf8)
        .write(to: URL(fileURLWithPath: path + "/identity"))
    let error = #expect(throws: DataDirectoryError.self) {
        try DataDirectory.open(path, clusterID: "alpha", nodeID: "n1")
    }
    #expect(error?.newerFormat?.found == UInt64(DataDirectory.formatVersion + 1))
    #expect(
        error?.description
            == "data directory \(path): its identity file is data directory format 2; this build reads up to 1: "
            + "upgrade this node (docs/operations.md, Upgrades)")
}
