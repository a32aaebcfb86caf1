// The disk journal: acknowledged records survive reopening, torn tails are cut, damage is refused.
import ClusterModel
import FlotillaTestKit
import Foundation
import Guests
import Testing

@Suite struct DiskJournalTests {
    /// Writes `count` acknowledged records for vm 3 and returns their ids and the file's bytes.
    func writeJournal(_ path: String, count: Int, epoch: Epoch = 1) throws -> [JournalRecordID] {
        let journal = try DiskJournal.open(path: path, vm: 3, epoch: epoch)
        defer { journal.close() }
        return try (0..<count).map { index in
            try journal.append(epoch: epoch, payload: Array("record \(index)".utf8))
        }
    }

    @Test func reopeningContinuesTheSequenceAcrossEpochs() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/vm3.vhdx"
        var acknowledged = try writeJournal(path, count: 3)
        #expect(acknowledged.map(\.sequence) == [1, 2, 3])

        let journal = try DiskJournal.open(path: path, vm: 3, epoch: 2)
        #expect(journal.recovered.records.map(\.sequence) == [1, 2, 3])
        #expect(journal.recovered.records.map { String(decoding: $0.payload, as: UTF8.self) }.last == "record 2")
        #expect(journal.nextSequence == 4)
        #expect(journal.lastEpoch == 1)
        acknowledged.append(try journal.append(epoch: 2, payload: []))
        journal.close()

        let contents = try DiskJournal.read(path: path)
        #expect(contents.vm == 3)
        #expect(contents.records.map(\.sequence) == [1, 2, 3, 4])
        #expect(contents.records.map(\.epoch) == [1, 1, 1, 2])
        #expect(JournalChecker.check(contents, acknowledged: acknowledged).isEmpty)
    }

    @Test func anOwnerWithAnOlderEpochMayNotOpenTheJournal() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/vm3.vhdx"
        _ = try writeJournal(path, count: 2, epoch: 5)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let error = #expect(throws: JournalError.self) { try DiskJournal.open(path: path, vm: 3, epoch: 4) }
        #expect(error?.isNewerEpoch == true)
        #expect(error?.description.contains("epoch 5, newer than this owner's epoch 4") == true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before, "a refused owner changes nothing")
    }

    @Test func anotherVMsJournalIsRefused() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/disk.vhdx"
        _ = try writeJournal(path, count: 1)
        let error = #expect(throws: JournalError.self) { try DiskJournal.open(path: path, vm: 4) }
        #expect(error?.description.contains("the journal of vm3, not vm4") == true)
    }

    @Test func aFileThatIsNotAJournalIsRefused() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/notes.txt"
        try Data("these are not journal records at all".utf8).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: JournalError.self) { try DiskJournal.open(path: path, vm: 3) }
        #expect(error?.description.contains("\(path) is not a Flotilla disk journal") == true)
    }

    /// A crash during the last append may leave any prefix of its record: every one is a torn
    /// tail, cut off, and every record acknowledged before it is kept.
    @Test func aTornLastRecordIsCutAtEveryByteOffset() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/vm3.vhdx"
        let acknowledged = try writeJournal(path, count: 4)
        let intact = try Data(contentsOf: URL(fileURLWithPath: path))
        let inFlight = JournalFormat.record(epoch: 1, sequence: 5, payload: Array("never acknowledged".utf8))
        for cut in 0..<inFlight.count {
            try (intact + inFlight[0..<cut]).write(to: URL(fileURLWithPath: path))
            let journal = try DiskJournal.open(path: path, vm: 3, epoch: 1)
            #expect(journal.recovered.records.count == 4, "cut at \(cut)")
            #expect(journal.recovered.tornBytes == cut)
            #expect(journal.nextSequence == 5)
            journal.close()
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == intact, "the torn tail is truncated")
            #expect(JournalChecker.check(try DiskJournal.read(path: path), acknowledged: acknowledged).isEmpty)
        }
        // The whole record made it: it is kept, acknowledged or not.
        try (intact + inFlight).write(to: URL(fileURLWithPath: path))
        #expect(try DiskJournal.read(path: path).records.count == 5)
    }

    @Test func aZeroFilledTailIsCut() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/vm3.vhdx"
        _ = try writeJournal(path, count: 2)
        let intact = try Data(contentsOf: URL(fileURLWithPath: path))
        try (intact + Data(count: 4096)).write(to: URL(fileURLWithPath: path))
        let journal = try DiskJournal.open(path: path, vm: 3)
        #expect(journal.recovered.records.count == 2)
        #expect(journal.recovered.tornBytes == 4096)
        try journal.append(epoch: 1, payload: [1])
        journal.close()
        #expect(try DiskJournal.read(path: path).records.map(\.sequence) == [1, 2, 3])
    }

    @Test func aHeaderCutOffDuringCreationStartsAnEmptyJournal() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/vm3.vhdx"
        try Data(JournalFormat.header(vm: 3)[0..<5]).write(to: URL(fileURLWithPath: path))
        let journal = try DiskJournal.open(path: path, vm: 3)
        #expect(journal.nextSequence == 1)
        try journal.append(epoch: 1, payload: [])
        journal.close()
        #expect(try DiskJournal.read(path: path).records.count == 1)
    }

    /// A disk of zeros (a QEMU guest's, before its guest wrote the header) is an empty journal of
    /// the VM expected; without one expected, it is no journal, and says so. Records written into
    /// such a disk are followed by zeros, which read as the unwritten rest.
    @Test func aDiskOfZerosIsAnEmptyJournalAndRecordsInItReadBack() throws {
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        let empty = try JournalFormat.parse(zeros, file: "disk", expectedVM: 3)
        #expect(empty.vm == 3 && empty.records.isEmpty && empty.tornBytes == zeros.count)
        #expect(throws: JournalError.self) { try JournalFormat.parse(zeros, file: "disk") }
        var disk = JournalFormat.header(vm: 3) + JournalFormat.record(epoch: 2, sequence: 1, payload: Array("a".utf8))
        disk += [UInt8](repeating: 0, count: zeros.count - disk.count)
        let written = try JournalFormat.parse(disk, file: "disk", expectedVM: 3)
        #expect(written.records.map(\.sequence) == [1] && written.records.first?.epoch == 2)
    }

    /// A bit flipped in any record — even the last, which a crash cannot leave complete but wrong —
    /// is refused with the file and the record's offset, and the file is left as it is.
    @Test func aFlippedBitIsRefusedWithTheFileAndOffset() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/vm3.vhdx"
        _ = try writeJournal(path, count: 4)
        let intact = try DiskJournal.read(path: path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        for position in JournalFormat.headerSize..<bytes.count {
            var damaged = bytes
            damaged[position] ^= 1 << UInt8(position % 8)
            try damaged.write(to: URL(fileURLWithPath: path))
            let record = intact.records.last { $0.offset <= position }!
            let error = #expect(throws: JournalError.self, "flip at byte \(position)") {
                try DiskJournal.open(path: path, vm: 3)
            }
            #expect(error?.damagedOffset == record.offset, "flip at byte \(position)")
            #expect(error?.description.contains("\(path) is damaged at byte \(record.offset)") == true)
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == damaged, "nothing is truncated")
        }
    }
}

@Suite struct JournalCheckerTests {
    /// A journal of vm 1 with records of the given (epoch, sequence), in file order.
    func journal(_ records: [(epoch: Epoch, sequence: UInt64)]) -> JournalContents {
        JournalContents(
            vm: 1,
            records: records.enumerated().map { index, record in
                JournalRecord(epoch: record.epoch, sequence: record.sequence, payload: [], offset: 16 + 28 * index)
            }, validLength: 16 + 28 * records.count, tornBytes: 0)
    }

    func ids(_ records: [(epoch: Epoch, sequence: UInt64)]) -> [JournalRecordID] {
        records.map { JournalRecordID(vm: 1, epoch: $0.epoch, sequence: $0.sequence) }
    }

    @Test func aCleanHistoryOfThreeOwnersPasses() {
        let history: [(epoch: Epoch, sequence: UInt64)] = [(1, 1), (1, 2), (3, 3), (3, 4), (4, 5)]
        #expect(JournalChecker.check(journal(history), acknowledged: ids(history)).isEmpty)
        // An unacknowledged record on disk (its owner died before the fsync returned) is fine too.
        #expect(JournalChecker.check(journal(history), acknowledged: ids(Array(history.prefix(3)))).isEmpty)
        // Another VM's acknowledgements are not this journal's business.
        #expect(
            JournalChecker.check(journal(history), acknowledged: [JournalRecordID(vm: 2, epoch: 9, sequence: 9)])
                .isEmpty)
    }

    @Test func aMissingAcknowledgedRecordIsCaught() {
        let violations = JournalChecker.check(
            journal([(1, 1), (1, 2)]), acknowledged: ids([(1, 1), (1, 2), (1, 3)]))
        #expect(violations.map(\.rule) == [.missingAcknowledged])
        #expect(
            violations.first?.description
                == "vm1: acknowledged record seq 3 (epoch 1) is not on disk; the journal holds 2 records, the last seq 2"
        )
    }

    @Test func anAcknowledgedRecordOverwrittenByAnotherEpochIsCaught() {
        let violations = JournalChecker.check(journal([(1, 1), (2, 2)]), acknowledged: ids([(1, 2)]))
        #expect(violations.map(\.rule) == [.missingAcknowledged])
        #expect(violations.first?.description.contains("byte 44 holds seq 2 of epoch 2 instead") == true)
    }

    @Test func anOlderEpochAfterANewerOneIsCaught() {
        // The old owner (epoch 2) went on appending after the new owner (epoch 3) had started.
        let violations = JournalChecker.check(journal([(2, 1), (3, 2), (2, 3)]))
        #expect(violations.map(\.rule) == [.olderEpochAfterNewer])
        #expect(
            violations.first?.description
                == "vm1: record seq 3 at byte 72 has epoch 2, after seq 2 of epoch 3 at byte 44: an older owner wrote after a newer one (two owners at once)"
        )
    }

    @Test func aSequenceGapIsCaught() {
        let violations = JournalChecker.check(journal([(1, 1), (1, 2), (2, 4)]))
        #expect(violations.map(\.rule) == [.sequenceGap])
        #expect(
            violations.first?.description.contains("has seq 4 (epoch 2) after seq 2 (epoch 1); expected seq 3") == true)
        #expect(JournalChecker.check(journal([(1, 2)])).map(\.rule) == [.sequenceGap])
        // Two owners continuing from the same place write the same sequence twice: a gap backwards.
        #expect(JournalChecker.check(journal([(1, 1), (2, 2), (2, 2)])).map(\.rule) == [.sequenceGap])
    }
}
