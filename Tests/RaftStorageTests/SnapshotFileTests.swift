// The backup file: it comes back as written, and damage, truncation and newer versions are refused with the reason.
import FlotillaTestKit
import Foundation
import RaftStorage
import Testing

private let sample = SnapshotFile(
    index: 4_242, term: 7, takenAtMilliseconds: 1_700_000_000_123, clusterID: "prod-east",
    metadata: Array("voters n1 n2 n3".utf8), data: (0..<3_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })

/// Rewrites the bytes at `offset` and fixes the header checksum, as a newer build's file would have it.
private func withHeaderResealed(_ bytes: [UInt8], _ change: (inout [UInt8]) -> Void) -> [UInt8] {
    var changed = bytes
    change(&changed)
    let headerCount = Int(changed[12]) | Int(changed[13]) << 8 | Int(changed[14]) << 16 | Int(changed[15]) << 24
    let crc = CRC32C.checksum(changed[20..<(20 + headerCount)], continuing: CRC32C.checksum(changed[0..<16]))
    withUnsafeBytes(of: crc.littleEndian) { changed.replaceSubrange(16..<20, with: $0) }
    return changed
}

@Test func aSnapshotFileComesBackAsWritten() throws {
    #expect(try SnapshotFile(decoding: sample.encoded) == sample)
    let empty = SnapshotFile(index: 0, term: 0, takenAtMilliseconds: 0, clusterID: "", metadata: [], data: [])
    #expect(try SnapshotFile(decoding: empty.encoded) == empty)
}

@Test func aSnapshotFileIsWrittenAtomicallyAndReadBack() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path + "/backup.snap"
    try sample.write(to: path)
    #expect(try SnapshotFile.read(path: path) == sample)
    // Overwriting replaces the file whole; no temporary file is left.
    var newer = sample
    newer.index += 10
    try newer.write(to: path)
    #expect(try SnapshotFile.read(path: path) == newer)
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["backup.snap"])
}

@Test func writingIntoAMissingDirectoryFailsAndLeavesNothing() throws {
    let directory = try TemporaryDirectory()
    #expect(throws: StorageError.self) { try sample.write(to: directory.path + "/missing/backup.snap") }
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
}

/// Every byte of the file is covered: a flipped bit anywhere is refused, never read as something else.
@Test func aCorruptedByteAnywhereIsRefused() throws {
    let bytes = sample.encoded
    for offset in stride(from: 0, to: bytes.count, by: 7) + [bytes.count - 1] {
        var damaged = bytes
        damaged[offset] ^= 0x10
        let error = #expect(throws: SnapshotFileError.self, "flipped byte \(offset)") {
            try SnapshotFile(decoding: damaged)
        }
        // The magic is the only place where damage reads as "not a snapshot file".
        let expected: SnapshotFileError.Problem = offset < 8 ? .notASnapshotFile : .damaged
        // A flipped bit in the header length can also make the header reach past the end.
        if !(12..<16).contains(offset) { #expect(error?.problem == expected, "flipped byte \(offset): \(error!)") }
    }
}

@Test func aDamagedBodyNamesTheChecksum() throws {
    var bytes = sample.encoded
    bytes[bytes.count - 100] ^= 0xFF
    let error = #expect(throws: SnapshotFileError.self) { try SnapshotFile(decoding: bytes) }
    #expect(error?.description.contains("fails its checksum") == true)
    #expect(error?.description.contains("do not restore from it") == true)
}

@Test func aTruncatedFileIsRefusedAsTruncated() throws {
    let bytes = sample.encoded
    for length in [1, 7, 8, 19, 20, 40, 77, 78, 200, bytes.count - 5, bytes.count - 1] {
        let error = #expect(throws: SnapshotFileError.self, "\(length) bytes") {
            try SnapshotFile(decoding: Array(bytes.prefix(length)))
        }
        #expect(error?.problem == .truncated, "\(length) bytes: \(error.map(\.description) ?? "")")
    }
    // An empty file, e.g. one a full disk left behind.
    #expect(throws: SnapshotFileError.self) { try SnapshotFile(decoding: []) }
}

@Test func extraBytesAfterTheEndAreRefused() throws {
    let error = #expect(throws: SnapshotFileError.self) { try SnapshotFile(decoding: sample.encoded + [0]) }
    #expect(error?.problem == .damaged)
}

@Test func aFileOfANewerFormatIsRefusedNamingBothVersions() throws {
    let future = withHeaderResealed(sample.encoded) { $0[8] = UInt8(SnapshotFile.formatVersion + 1) }
    let error = #expect(throws: SnapshotFileError.self) { try SnapshotFile(decoding: future) }
    #expect(error?.problem == .unknownVersion)
    #expect(error?.description.contains("format 2") == true)
    #expect(error?.description.contains("format 1 to 1") == true)
}

@Test func somethingElseIsNotASnapshotFile() throws {
    let error = #expect(throws: SnapshotFileError.self) {
        try SnapshotFile(decoding: Array("{\"settings\": {}}".utf8))
    }
    #expect(error?.problem == .notASnapshotFile)
}

@Test func aMissingFileSaysSo() throws {
    let directory = try TemporaryDirectory()
    let error = #expect(throws: SnapshotFileError.self) { try SnapshotFile.read(path: directory.path + "/none") }
    #expect(error?.problem == .unreadable)
    #expect(error?.description.contains(directory.path + "/none") == true)
}
