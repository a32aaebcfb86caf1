// Guest memory and workloads: sparse pages, dirty tracking, checksums, seeded access patterns.
import ClusterModel
import Guests
import Testing

@Suite struct GuestMemoryTests {
    @Test func untouchedPagesReadAsZerosAndCostNothing() {
        let memory = GuestMemory(bytes: 1 << 30)
        #expect(memory.pageCount == 262_144)
        #expect(memory.residentPages == 0)
        #expect(memory.page(262_143) == [UInt8](repeating: 0, count: GuestMemory.pageSize))
        #expect(GuestMemory(bytes: 4097).pageCount == 2)
    }

    @Test func writesAreReadBackAndMarkPagesDirty() {
        var memory = GuestMemory(bytes: 64 << 20)
        memory.write(page: 7, offset: 100, bytes: [1, 2, 3])
        var full = [UInt8](repeating: 0xAB, count: GuestMemory.pageSize)
        full[0] = 0
        memory.writePage(3, full)
        #expect(memory.page(7)[100..<103] == [1, 2, 3])
        #expect(memory.page(7)[99] == 0)
        #expect(memory.page(3) == full)
        #expect(memory.residentPages == 2)
        #expect(memory.dirtyPageCount == 2)
        #expect(memory.collectDirtyPages() == [3, 7])
        #expect(memory.collectDirtyPages() == [])
        memory.write(page: 3, offset: 1, bytes: [9])
        #expect(memory.collectDirtyPages() == [3])
    }

    @Test func aPageWrittenBackToZerosIsDroppedButStillDirty() {
        var memory = GuestMemory(bytes: 1 << 20)
        memory.write(page: 5, offset: 8, bytes: [1])
        _ = memory.collectDirtyPages()
        memory.write(page: 5, offset: 8, bytes: [0])
        #expect(memory.residentPages == 0)
        #expect(memory.collectDirtyPages() == [5])
        memory.write(page: 6, offset: 0, bytes: [0, 0])
        #expect(memory.residentPages == 0)
        #expect(memory.collectDirtyPages() == [6])
    }

    @Test func theChecksumDependsOnContentsNotHistory() {
        var a = GuestMemory(bytes: 1 << 20)
        var b = GuestMemory(bytes: 1 << 20)
        #expect(a.checksum == b.checksum)
        a.write(page: 1, offset: 0, bytes: [42])
        #expect(a.checksum != b.checksum)
        // b reaches the same image another way: a page zeroed again is like one never written.
        b.write(page: 9, offset: 0, bytes: [7])
        b.write(page: 9, offset: 0, bytes: [0])
        b.write(page: 1, offset: 0, bytes: [42])
        #expect(a.checksum == b.checksum)
        // The same byte on another page, or in another place on the page, is another image.
        var c = GuestMemory(bytes: 1 << 20)
        c.write(page: 2, offset: 0, bytes: [42])
        var d = GuestMemory(bytes: 1 << 20)
        d.write(page: 1, offset: 1, bytes: [42])
        #expect(Set([a.checksum, c.checksum, d.checksum]).count == 3)
        #expect(GuestMemory(bytes: 1 << 20).checksum != GuestMemory(bytes: 2 << 20).checksum)
    }
}

@Suite struct WorkloadTests {
    let profile = WorkloadProfile(pagesPerSecond: 1000, workingSetPages: 256, writeFraction: 0.25)

    @Test func theRateIsKeptExactlyOverSmallSteps() {
        var workload = Workload(profile: profile)
        var generator = WorkloadGenerator(seed: 1)
        var total = 0
        // 3 ms steps make 3 accesses each; 1.7 ms steps leave fractions that must carry over.
        for step in 1...1000 { total += workload.advance(to: .microseconds(1700 * step), using: &generator).count }
        #expect(total == 1700)
        #expect(workload.advance(to: .microseconds(1000), using: &generator).isEmpty)
    }

    @Test func accessesStayInTheWorkingSetWithTheWriteFraction() {
        var workload = Workload(profile: profile)
        var generator = WorkloadGenerator(seed: 2)
        let accesses = workload.advance(to: .seconds(1), using: &generator)
        #expect(accesses.count == 1000)
        #expect(accesses.allSatisfy { (0..<256).contains($0.page) })
        let writes = accesses.filter { if case .write = $0.kind { true } else { false } }
        #expect((200...300).contains(writes.count), "about a quarter of 1000 accesses write, got \(writes.count)")
        for case .write(let offset, let value) in writes.map(\.kind) {
            #expect(offset % 8 == 0 && offset < GuestMemory.pageSize && value != 0)
        }
    }

    @Test func theSameSeedTouchesTheSamePages() {
        func run(seed: UInt64) -> UInt64 {
            var workload = Workload(profile: profile)
            var generator = WorkloadGenerator(seed: seed)
            var memory = GuestMemory(bytes: 4 << 20)
            for step in 1...20 { memory.apply(workload.advance(to: .milliseconds(50 * step), using: &generator)) }
            #expect(memory.residentPages > 100 && memory.residentPages <= 256)
            return memory.checksum
        }
        #expect(run(seed: 7) == run(seed: 7))
        #expect(run(seed: 7) != run(seed: 8))
    }

    @Test func aLongStallCatchesUpAtMostOneSecond() {
        var workload = Workload(profile: profile)
        var generator = WorkloadGenerator(seed: 3)
        #expect(workload.advance(to: .seconds(60), using: &generator).count == 1000)
    }

    @Test(arguments: [0.0, 1.0]) func readOnlyAndWriteOnlyWorkloads(fraction: Double) {
        var workload = Workload(
            profile: WorkloadProfile(pagesPerSecond: 500, workingSetPages: 16, writeFraction: fraction))
        var generator = WorkloadGenerator(seed: 4)
        let writes = workload.advance(to: .seconds(1), using: &generator)
            .filter { if case .write = $0.kind { true } else { false } }.count
        #expect(writes == Int(fraction * 500))
    }

    @Test func aProfileThatDoesNotFitSaysWhy() {
        #expect(profile.problem(pageCount: 256) == nil)
        #expect(profile.problem(pageCount: 100)?.contains("256 pages does not fit a memory of 100 pages") == true)
        #expect(
            WorkloadProfile(pagesPerSecond: 1, workingSetPages: 1, writeFraction: 1.5).problem(pageCount: 1)?
                .contains("1.5") == true)
    }
}
