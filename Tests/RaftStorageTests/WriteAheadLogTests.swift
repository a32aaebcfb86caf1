// The write-ahead log's promises: what was synced comes back, a torn tail is cut, corruption stops it.
import FlotillaTestKit
import Foundation
import RaftStorage
import Testing

private func payload(_ number: Int) -> [UInt8] {
    Array("record \(number) ".utf8) + [UInt8](repeating: UInt8(truncatingIfNeeded: number), count: number % 37)
}

/// Writes `count` records into a new log in `directory`, synced in batches of three.
private func writeRecords(_ count: Int, in directory: String, segmentBytes: Int = 64 << 20) throws {
    let (log, records, torn) = try WriteAheadLog.open(.init(directory: directory, segmentBytes: segmentBytes))
    #expect(records.isEmpty && torn == nil)
    for number in 0..<count {
        try log.append(type: UInt8(number % 4), payload: payload(number))
        if number % 3 == 2 { try log.sync() }
        if log.needsRotation { try log.rotate() }
    }
    try log.sync()
}

private func segmentFiles(_ directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".wal") }.sorted()
        .map { directory + "/" + $0 }
}

@Test func syncedRecordsComeBackInOrder() throws {
    let directory = try TemporaryDirectory()
    try writeRecords(100, in: directory.path)
    let (_, records, torn) = try WriteAheadLog.open(.init(directory: directory.path))
    #expect(torn == nil)
    #expect(records.map(\.payload) == (0..<100).map(payload))
    #expect(records.map(\.type) == (0..<100).map { UInt8($0 % 4) })
}

@Test func unsyncedRecordsAreNotOnDisk() throws {
    let directory = try TemporaryDirectory()
    do {
        let (log, _, _) = try WriteAheadLog.open(.init(directory: directory.path))
        try log.append(type: 1, payload: payload(1))
        try log.sync()
        try log.append(type: 1, payload: payload(2))
        #expect(log.pendingBytes > 0)
    }
    let (_, records, _) = try WriteAheadLog.open(.init(directory: directory.path))
    #expect(records.map(\.payload) == [payload(1)])
}

/// Cutting the file anywhere inside the last records loses only those records: recovery keeps
/// every whole record before the cut, reports the torn one, and the log accepts appends again.
/// Both as a file that ends at the cut and as one whose allocated space (zeros) follows it.
@Test(arguments: [0, 4096])
func truncationAtEveryByteOfTheLastRecordsRecoversThePrefix(zerosAfter: Int) throws {
    let directory = try TemporaryDirectory()
    try writeRecords(12, in: directory.path)
    let segment = try #require(try segmentFiles(directory.path).last)
    let file = try Data(contentsOf: URL(fileURLWithPath: segment))
    #expect(file.count == 4 << 20, "the segment is allocated ahead of its records")
    let original = file.prefix(try WriteAheadLog.recordsLength(ofSegment: segment))
    // Offsets where each record ends, from a clean read.
    var ends: [Int] = [8]
    for number in 0..<12 { ends.append(ends.last! + 13 + payload(number).count) }
    #expect(ends.last == original.count)
    #expect(file.dropFirst(original.count).allSatisfy { $0 == 0 })

    for cut in ends[9]...original.count {
        try (original.prefix(cut) + Data(count: zerosAfter)).write(to: URL(fileURLWithPath: segment))
        let (log, records, torn) = try WriteAheadLog.open(.init(directory: directory.path))
        let whole = ends.lastIndex { $0 <= cut }!
        #expect(records.map(\.payload) == (0..<whole).map(payload), "cut at \(cut)")
        #expect((torn == nil) == ends.contains(cut), "cut at \(cut)")
        // What was torn off: the written bytes of the torn record, up to its last one not zero.
        let written = (original.prefix(cut).lastIndex { $0 != 0 } ?? 0) + 1
        if let torn { #expect(torn.offset == ends[whole] && torn.droppedBytes == written - ends[whole]) }

        try log.append(type: 9, payload: [1, 2, 3])
        try log.sync()
        let (_, again, tornAgain) = try WriteAheadLog.open(.init(directory: directory.path))
        #expect(tornAgain == nil)
        #expect(again.map(\.payload) == (0..<whole).map(payload) + [[1, 2, 3]], "cut at \(cut)")
    }
}

/// Syncs write inside the space allocated ahead, so the file's size changes once per step, not
/// once per sync; reopened, the log writes after its last record, not at the end of the file; a
/// closed segment is cut to its records.
@Test func syncsWriteInsideTheAllocatedSpaceAndClosedSegmentsEndWithTheirRecords() throws {
    let directory = try TemporaryDirectory()
    let configuration = WriteAheadLog.Configuration(
        directory: directory.path, segmentBytes: 8 << 10, preallocationBytes: 4 << 10)
    let size = { (path: String) in try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int }
    do {
        let (log, _, _) = try WriteAheadLog.open(configuration)
        let first = try #require(try segmentFiles(directory.path).first)
        #expect(try size(first) == 4 << 10)
        for number in 0..<3 {
            try log.append(type: 1, payload: payload(number))
            try log.sync()
        }
        #expect(try size(first) == 4 << 10)
    }
    let (log, records, torn) = try WriteAheadLog.open(configuration)
    #expect(torn == nil && records.map(\.payload) == (0..<3).map(payload))
    var number = 3
    while log.segments.count == 1 {
        try log.append(type: 1, payload: payload(number))
        try log.sync()
        number += 1
        // Past the first 4 KiB, the file grew by whole steps, not to the records' length.
        let first = try #require(try segmentFiles(directory.path).first)
        #expect(try size(first)! % (4 << 10) == 0)
        if log.needsRotation { try log.rotate() }
    }
    let files = try segmentFiles(directory.path)
    #expect(files.count == 2)
    #expect(try size(files[0]) == (try WriteAheadLog.recordsLength(ofSegment: files[0])))
    #expect(try size(files[0])! >= 8 << 10)
    #expect(try size(files[1]) == 4 << 10)
    let (_, all, _) = try WriteAheadLog.open(configuration)
    #expect(all.map(\.payload) == (0..<number).map(payload))
}

/// Without allocation ahead, the file is exactly its records, as before allocation existed.
@Test func withoutAllocationAheadTheFileIsItsRecords() throws {
    let directory = try TemporaryDirectory()
    let (log, _, _) = try WriteAheadLog.open(.init(directory: directory.path, preallocationBytes: 0))
    for number in 0..<5 {
        try log.append(type: 1, payload: payload(number))
        try log.sync()
    }
    let segment = try #require(try segmentFiles(directory.path).first)
    let length = try Data(contentsOf: URL(fileURLWithPath: segment)).count
    #expect(length == 8 + (0..<5).map { 13 + payload($0).count }.reduce(0, +))
    #expect(try WriteAheadLog.recordsLength(ofSegment: segment) == length)
}

/// Zeros after the records of a closed segment are not allocated space (closed segments are cut
/// to their records) but lost records: corruption, with the offset where the records stop.
@Test func zerosAfterTheRecordsOfAnOlderSegmentAreCorruption() throws {
    let directory = try TemporaryDirectory()
    try writeRecords(200, in: directory.path, segmentBytes: 1024)
    let middle = try segmentFiles(directory.path)[1]
    let bytes = try Data(contentsOf: URL(fileURLWithPath: middle))
    try (bytes + Data(count: 100)).write(to: URL(fileURLWithPath: middle))
    let error = #expect(throws: StorageError.self) {
        try WriteAheadLog.open(.init(directory: directory.path, segmentBytes: 1024))
    }
    #expect(error?.path == middle && error?.offset == bytes.count)
}

/// A crash while a new segment's magic was written, with its space already allocated: the magic is
/// written again and the segment takes records.
@Test func aTornMagicFollowedByAllocatedZerosIsWrittenAgain() throws {
    let directory = try TemporaryDirectory()
    try writeRecords(3, in: directory.path)
    let segment = try #require(try segmentFiles(directory.path).last)
    try (Data("FLOT".utf8) + Data(count: 4096)).write(to: URL(fileURLWithPath: segment))
    do {
        let (log, records, torn) = try WriteAheadLog.open(.init(directory: directory.path))
        #expect(records.isEmpty && torn?.offset == 0 && torn?.droppedBytes == 4)
        try log.append(type: 1, payload: [7])
        try log.sync()
    }
    let (_, records, torn) = try WriteAheadLog.open(.init(directory: directory.path))
    #expect(torn == nil && records.map(\.payload) == [[7]])
}

/// A bit flipped in any record but the last is corruption, reported with the file and the offset
/// of the damaged record, never skipped.
@Test func aFlippedBitBeforeTheTailStopsRecoveryWithFileAndOffset() throws {
    let directory = try TemporaryDirectory()
    try writeRecords(40, in: directory.path)
    let segment = try #require(try segmentFiles(directory.path).last)
    let original = try Data(contentsOf: URL(fileURLWithPath: segment))
        .prefix(try WriteAheadLog.recordsLength(ofSegment: segment))
    var ends: [Int] = [8]
    for number in 0..<40 { ends.append(ends.last! + 13 + payload(number).count) }

    var generator = SystemRandomNumberGenerator()
    var seed = UInt64.random(in: 0...UInt64.max, using: &generator)
    for _ in 0..<64 {
        seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let offset = 8 + Int(seed >> 33) % (ends[39] - 8)  // anywhere before the last record
        let bit = UInt8(1) << UInt8((seed >> 20) % 8)
        var damaged = original
        damaged[offset] ^= bit
        try damaged.write(to: URL(fileURLWithPath: segment))
        let recordStart = ends.last { $0 <= offset }!
        let error = #expect(throws: StorageError.self, "flip at \(offset)") {
            try WriteAheadLog.open(.init(directory: directory.path))
        }
        #expect(error?.isCorruption == true)
        #expect(error?.path == segment)
        #expect(error?.offset == recordStart, "flip at \(offset), seed \(seed)")
        #expect(error?.description.contains("byte offset \(recordStart)") == true)
    }
}

@Test func aDamagedMagicIsReported() throws {
    let directory = try TemporaryDirectory()
    try writeRecords(3, in: directory.path)
    let segment = try #require(try segmentFiles(directory.path).last)
    var bytes = try Data(contentsOf: URL(fileURLWithPath: segment))
    bytes[2] ^= 0x40
    try bytes.write(to: URL(fileURLWithPath: segment))
    let error = #expect(throws: StorageError.self) { try WriteAheadLog.open(.init(directory: directory.path)) }
    #expect(error?.isCorruption == true)
}

/// Segments roll over; damage in an older segment is never mistaken for a torn tail.
@Test func rotationKeepsOrderAndOlderSegmentsMustBeWhole() throws {
    let directory = try TemporaryDirectory()
    try writeRecords(200, in: directory.path, segmentBytes: 1024)
    let files = try segmentFiles(directory.path)
    #expect(files.count > 3)
    let (log, records, _) = try WriteAheadLog.open(.init(directory: directory.path, segmentBytes: 1024))
    #expect(records.map(\.payload) == (0..<200).map(payload))
    #expect(Set(records.map(\.segment)).count == files.count)

    // Removing segments keeps the newest and everything from the named one on.
    let keepFrom = log.segments[2]
    try log.removeSegments(before: keepFrom)
    #expect(log.segments.first == keepFrom)
    #expect(try segmentFiles(directory.path).count == files.count - 2)

    // Cut the end off a middle segment: that is corruption, not a torn tail.
    let middle = try segmentFiles(directory.path)[1]
    let bytes = try Data(contentsOf: URL(fileURLWithPath: middle))
    try bytes.dropLast(3).write(to: URL(fileURLWithPath: middle))
    let error = #expect(throws: StorageError.self) {
        try WriteAheadLog.open(.init(directory: directory.path, segmentBytes: 1024))
    }
    #expect(error?.path == middle)
}

@Test func oversizedRecordsAreRefusedBeforeWriting() throws {
    let directory = try TemporaryDirectory()
    let (log, _, _) = try WriteAheadLog.open(.init(directory: directory.path))
    let error = #expect(throws: StorageError.self) {
        try log.append(type: 1, payload: [UInt8](repeating: 0, count: WriteAheadLog.maxPayloadBytes + 1))
    }
    #expect(error?.description.contains("exceeds the limit") == true)
    #expect(log.pendingBytes == 0)
}

@Test func atomicWritesReplaceWholeFiles() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path + "/snapshot"
    #expect(try DurableFiles.read(path) == nil)
    try DurableFiles.writeAtomically([1, 2, 3], to: path)
    try DurableFiles.writeAtomically([4, 5], to: path)
    #expect(try DurableFiles.read(path) == [4, 5])
    #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
}
