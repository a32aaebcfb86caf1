// Guest memory and activity: pages as words, hot-add and balloon, dirty tracking, checksums, seeded activity.
import ClusterModel
import Guests
import Testing

private let mib: UInt64 = 1 << 20

@Suite struct GuestMemoryTests {
    @Test func untouchedPagesReadAsZerosAndCostNothing() {
        let memory = GuestMemory(bytes: 1 << 30)
        #expect(memory.pageCount == 262_144)
        #expect(memory.residentPages == 0)
        #expect(memory.page(262_143) == [UInt8](repeating: 0, count: GuestMemory.pageSize))
        #expect(GuestMemory(bytes: 4097).pageCount == 2)
    }

    @Test func writesAreReadBackAndMarkPagesDirty() {
        var memory = GuestMemory(bytes: 64 * mib)
        memory.write(page: 7, word: 0xABCD)
        memory.write(page: 3, word: 1)
        #expect(memory.word(7) == 0xABCD)
        #expect(memory.residentPages == 2)
        #expect(memory.dirtyPageCount == 2)
        #expect(memory.collectDirtyPages() == [3, 7])
        #expect(memory.collectDirtyPages() == [])
        memory.write(page: 3, word: 9)
        #expect(memory.collectDirtyPages() == [3])
    }

    @Test func aPageWrittenBackToZerosHoldsNothingButIsStillDirty() {
        var memory = GuestMemory(bytes: mib)
        memory.write(page: 5, word: 1)
        _ = memory.collectDirtyPages()
        memory.write(page: 5, word: 0)
        #expect(memory.residentPages == 0)
        #expect(memory.collectDirtyPages() == [5])
    }

    @Test func aPagesBytesStandForItsWordAndDamageIsSeen() {
        let page = GuestMemory.expand(0x1234_5678_9ABC_DEF1)
        #expect(page.count == GuestMemory.pageSize)
        #expect(page.prefix(8) == [0xF1, 0xDE, 0xBC, 0x9A, 0x78, 0x56, 0x34, 0x12])
        #expect(Set(page.dropFirst(8)).count > 200, "the rest is a stream, not a fill")
        #expect(page.withUnsafeBytes { GuestMemory.word(ofPage: $0) } == 0x1234_5678_9ABC_DEF1)
        let zeros = GuestMemory.expand(0)
        #expect(zeros == [UInt8](repeating: 0, count: GuestMemory.pageSize))
        #expect(zeros.withUnsafeBytes { GuestMemory.word(ofPage: $0) } == 0)
        var damaged = page
        damaged[4000] ^= 1
        #expect(damaged.withUnsafeBytes { GuestMemory.word(ofPage: $0) } == nil)
        #expect(Array(page.prefix(100)).withUnsafeBytes { GuestMemory.word(ofPage: $0) } == nil)
    }

    /// Pages are made and checked eight words at a time where the CPU has AVX-512: the very bytes of
    /// the one-word-at-a-time reference, and a flipped bit anywhere in a page is seen, in the
    /// full vectors and in the last, partial one (words 505–511). Without AVX-512 both are the reference.
    @Test func theVectorPageIsTheScalarPageByteForByte() {
        var generator = SeededGenerator(seed: 14)
        let words: [UInt64] =
            [1, 2, 0x8000_0000_0000_0000, .max, 0x1234_5678_9ABC_DEF1] + (0..<500).map { _ in generator.next() | 1 }
        var vector = [UInt8](repeating: 0xEE, count: GuestMemory.pageSize)
        var scalar = [UInt8](repeating: 0, count: GuestMemory.pageSize)
        for word in words {
            vector.withUnsafeMutableBytes { GuestMemory.expand(word, into: $0) }
            scalar.withUnsafeMutableBytes { GuestMemory.scalarExpand(word, into: $0) }
            #expect(vector == scalar, "word \(word)")
            #expect(vector.withUnsafeBytes { GuestMemory.word(ofPage: $0) } == word)
            for byte in [8, 15, 520, 4031, 4032, 4039, 4040, 4088, 4095] {
                var damaged = vector
                damaged[byte] ^= 0x10
                #expect(damaged.withUnsafeBytes { GuestMemory.word(ofPage: $0) } == nil, "byte \(byte) of \(word)")
            }
        }
        var zeros = [UInt8](repeating: 0, count: GuestMemory.pageSize)
        zeros[4095] = 1
        #expect(zeros.withUnsafeBytes { GuestMemory.word(ofPage: $0) } == nil)
    }

    @Test func hotAddGrowsTheImageAndTheBalloonCutsItWithWhatItHeld() {
        var memory = GuestMemory(bytes: 8 * mib)
        for page in 0..<memory.pageCount { memory.write(page: page, word: UInt64(page) + 1) }
        _ = memory.collectDirtyPages()
        memory.write(page: 2047, word: 5)
        #expect(memory.resize(bytes: 16 * mib) == 0)
        #expect(memory.pageCount == 4096 && memory.residentPages == 2048)
        #expect(memory.word(4095) == 0)
        // The balloon takes the top 6 MiB: 1536 pages that held data, one of them dirty.
        #expect(memory.resize(bytes: 2 * mib) == 1536)
        #expect(memory.pageCount == 512 && memory.residentPages == 512 && memory.bytes == 2 * mib)
        #expect(memory.dirtyPageCount == 0)
        #expect(memory.collectDirtyPages() == [])
        // Grown again, the pages come back empty.
        memory.resize(bytes: 4 * mib)
        #expect(memory.word(600) == 0 && memory.residentPages == 512)
    }

    @Test func theChecksumDependsOnContentsNotHistory() {
        var a = GuestMemory(bytes: mib)
        var b = GuestMemory(bytes: mib)
        #expect(a.checksum == b.checksum)
        a.write(page: 1, word: 42)
        #expect(a.checksum != b.checksum)
        // b reaches the same image another way: a page zeroed again is like one never written.
        b.write(page: 9, word: 7)
        b.write(page: 9, word: 0)
        b.write(page: 1, word: 42)
        #expect(a.checksum == b.checksum)
        // The same word on another page is another image.
        var c = GuestMemory(bytes: mib)
        c.write(page: 2, word: 42)
        #expect(a.checksum != c.checksum)
        #expect(GuestMemory(bytes: mib).checksum != GuestMemory(bytes: 2 * mib).checksum)
    }
}

@Suite struct GuestActivityTests {
    @Test func theGuestHoldsItsDemandAndFreesWhatItNoLongerDemands() {
        var memory = GuestMemory(bytes: 64 * mib)
        var activity = GuestActivity(
            workload: Workload(demand: .ramp(from: 8 * mib, to: 32 * mib, over: .seconds(10)), dirtyPagesPerSecond: 0))
        var generator = SeededGenerator(seed: 1)
        _ = activity.advance(to: .nanoseconds(1), memory: &memory, using: &generator)
        #expect(memory.residentPages == 2048)
        _ = activity.advance(to: .seconds(5), memory: &memory, using: &generator)
        #expect(memory.residentPages == 5120 && activity.heldPages == 5120)
        _ = activity.advance(to: .seconds(20), memory: &memory, using: &generator)
        #expect(memory.residentPages == 8192)
        activity.workload = Workload(demand: .constant(4 * mib), dirtyPagesPerSecond: 0)
        _ = activity.advance(to: .seconds(21), memory: &memory, using: &generator)
        #expect(memory.residentPages == 1024, "the guest gave back what it no longer demands")
    }

    @Test func theGuestNeverHoldsMoreThanItsAssignmentAndPagesTheRest() {
        var memory = GuestMemory(bytes: 16 * mib)
        var activity = GuestActivity(workload: Workload(demand: .constant(40 * mib), dirtyPagesPerSecond: 1000))
        var generator = SeededGenerator(seed: 2)
        _ = activity.advance(to: .seconds(1), memory: &memory, using: &generator)
        #expect(memory.residentPages == 4096 && activity.heldPages == 4096)
        #expect(activity.pagedBytes(assigned: memory.bytes) == 24 * mib)
        // A balloon cuts it to 8 MiB: it holds no page beyond, and writes only below.
        memory.resize(bytes: 8 * mib)
        activity.memoryResized(memory)
        #expect(activity.heldPages == 2048)
        _ = memory.collectDirtyPages()
        _ = activity.advance(to: .seconds(2), memory: &memory, using: &generator)
        #expect(memory.collectDirtyPages().allSatisfy { $0 < 2048 })
        #expect(activity.pagedBytes(assigned: memory.bytes) == 32 * mib)
    }

    @Test func theDirtyingRateIsKeptExactlyOverSmallSteps() {
        var memory = GuestMemory(bytes: 64 * mib)
        var activity = GuestActivity(workload: Workload(demand: .constant(64 * mib), dirtyPagesPerSecond: 1000))
        var generator = SeededGenerator(seed: 3)
        _ = activity.advance(to: .nanoseconds(1), memory: &memory, using: &generator)
        var writes = 0
        for step in 1...1000 {
            writes += activity.advance(to: .milliseconds(3 * step) / 10, memory: &memory, using: &generator)
        }
        #expect(writes == 300, "0.3 s at 1000 pages/s, in 1000 steps of 0.3 ms")
    }

    @Test func aSeedRepeatsExactlyAndAnotherSeedDoesNot() {
        func image(seed: UInt64) -> UInt64 {
            var memory = GuestMemory(bytes: 16 * mib)
            var activity = GuestActivity(workload: Workload(demand: .constant(8 * mib), dirtyPagesPerSecond: 5000))
            var generator = SeededGenerator(seed: seed)
            for step in 1...20 {
                _ = activity.advance(to: .milliseconds(50 * step), memory: &memory, using: &generator)
            }
            return memory.checksum
        }
        #expect(image(seed: 7) == image(seed: 7))
        #expect(image(seed: 7) != image(seed: 8))
    }

    @Test func aGuestThatWasNotScheduledCatchesUpAtMostOneSecond() {
        var memory = GuestMemory(bytes: 64 * mib)
        var activity = GuestActivity(workload: Workload(demand: .constant(64 * mib), dirtyPagesPerSecond: 100))
        var generator = SeededGenerator(seed: 4)
        _ = activity.advance(to: .nanoseconds(1), memory: &memory, using: &generator)
        #expect(activity.advance(to: .seconds(60), memory: &memory, using: &generator) == 100)
        #expect(activity.advance(to: .seconds(30), memory: &memory, using: &generator) == 0, "time does not go back")
    }
}
