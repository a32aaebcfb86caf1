// A simulated guest's memory: 4 KiB pages within its assignment, with the dirty tracking live migration needs.
import CPageStream
import ClusterModel

/// A guest's memory image as pages of `GuestMemory.pageSize` bytes, as many as the VM is assigned.
///
/// Each page is held as one 64-bit word that stands for its 4 KiB: 0 is a page of zeros, any
/// other word a page whose first 8 bytes are the word (little-endian) and whose other 4088 are a
/// stream drawn from it (`page(_:)`). So a 4 GiB guest costs 8 MiB of host memory, yet a migration
/// moves real 4 KiB pages that the target can check (`word(ofPage:)`). Pure: no clock, no I/O.
///
/// The image is as large as the VM's assignment: `resize(bytes:)` hot-adds pages at the end or
/// balloons them away, and no page beyond the assignment can be written. Every write marks its
/// page dirty; `collectDirtyPages()` hands the dirty set over and starts a new one — the rounds of
/// pre-copy migration (DESIGN.md §9).
public struct GuestMemory: Hashable, Sendable {
    public static let pageSize = 4096

    /// The pages' words; `words.count` is the number of pages assigned.
    private var words: [UInt64]
    /// One bit per page written since the last `collectDirtyPages()`.
    private var dirty: [UInt64]
    /// Pages whose word is not 0. Invariant: equals `words.filter { $0 != 0 }.count`.
    public private(set) var residentPages = 0
    /// Pages marked in `dirty`. Invariant: equals the number of bits set in `dirty`.
    public private(set) var dirtyPageCount = 0

    /// An image of `bytes` bytes, rounded up to whole pages, all zero.
    public init(bytes: UInt64) {
        precondition(bytes > 0, "a guest's memory must be at least one byte")
        words = Array(repeating: 0, count: Self.pages(in: bytes))
        dirty = Array(repeating: 0, count: (words.count + 63) / 64)
    }

    /// How many pages the image has; valid page indexes are `0..<pageCount`.
    public var pageCount: Int { words.count }
    /// The bytes the guest is assigned: its pages.
    public var bytes: UInt64 { UInt64(words.count) * UInt64(Self.pageSize) }
    /// Guest memory holding data (a page of zeros holds none).
    public var residentBytes: UInt64 { UInt64(residentPages) * UInt64(Self.pageSize) }

    /// The whole pages `bytes` bytes need.
    public static func pages(in bytes: UInt64) -> Int {
        Int((bytes + UInt64(pageSize) - 1) / UInt64(pageSize))
    }

    /// The word standing for page `index` (0: all zeros).
    public func word(_ index: Int) -> UInt64 {
        checkIndex(index)
        return words[index]
    }

    /// Sets page `index` to the page `word` stands for (0 frees it to zeros) and marks it dirty.
    public mutating func write(page index: Int, word: UInt64) {
        checkIndex(index)
        let old = words[index]
        words[index] = word
        residentPages += (word != 0 ? 1 : 0) - (old != 0 ? 1 : 0)
        let (slot, bit) = (index / 64, UInt64(1) << UInt64(index % 64))
        if dirty[slot] & bit == 0 {
            dirty[slot] |= bit
            dirtyPageCount += 1
        }
    }

    /// Makes the image `bytes` bytes (whole pages): pages added at the end are zeros (hot-add);
    /// pages cut from the end are given up with what they held (balloon). Returns how many of the
    /// cut pages held data.
    @discardableResult
    public mutating func resize(bytes: UInt64) -> Int {
        precondition(bytes > 0, "a guest's memory must be at least one byte")
        let count = Self.pages(in: bytes)
        var dropped = 0
        if count < words.count {
            for index in count..<words.count where words[index] != 0 { dropped += 1 }
            for index in count..<words.count where isDirty(index) { dirtyPageCount -= 1 }
            words.removeSubrange(count...)
            residentPages -= dropped
        } else {
            words.append(contentsOf: repeatElement(0, count: count - words.count))
        }
        let slots = (count + 63) / 64
        if dirty.count > slots {
            dirty.removeSubrange(slots...)
        } else {
            dirty.append(contentsOf: repeatElement(0, count: slots - dirty.count))
        }
        // Bits past the last page belong to no page (they were counted out above).
        if count % 64 != 0 { dirty[slots - 1] &= (UInt64(1) << UInt64(count % 64)) - 1 }
        return dropped
    }

    /// The pages written since the last call, in ascending order; the dirty set starts empty again.
    public mutating func collectDirtyPages() -> [Int] {
        var pages: [Int] = []
        pages.reserveCapacity(dirtyPageCount)
        for (slot, var bits) in dirty.enumerated() where bits != 0 {
            while bits != 0 {
                pages.append(slot * 64 + bits.trailingZeroBitCount)
                bits &= bits - 1
            }
            dirty[slot] = 0
        }
        dirtyPageCount = 0
        return pages
    }

    /// The 4 KiB the page holds: zeros for word 0; otherwise the word, then a stream drawn from it.
    public func page(_ index: Int) -> [UInt8] {
        Self.expand(word(index))
    }

    /// The 4 KiB that `word` stands for.
    public static func expand(_ word: UInt64) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: pageSize) { buffer, count in
            expand(word, into: UnsafeMutableRawBufferPointer(buffer))
            count = pageSize
        }
    }

    /// Writes the 4 KiB that `word` stands for into the first `pageSize` bytes of `raw` (a
    /// migration's page stream, without an array per page).
    ///
    /// A migration makes every page it sends with this and its target checks every one with
    /// `word(ofPage:)`, so both run at gigabytes a second: with AVX-512 eight words at a time
    /// (CPageStream, about ten times the scalar loop), the same bytes either way.
    public static func expand(_ word: UInt64, into raw: UnsafeMutableRawBufferPointer) {
        precondition(raw.count >= pageSize, "a page needs \(pageSize) bytes, got \(raw.count)")
        guard word != 0 else {
            raw.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize)
            return
        }
        guard vectorStreamAvailable else { return scalarExpand(word, into: raw) }
        raw.storeBytes(of: word.littleEndian, toByteOffset: 0, as: UInt64.self)
        flotilla_page_stream_fill(word, raw.baseAddress! + 8)
    }

    /// The word a page's 4 KiB stand for, or nil when they are not a page this model makes (the
    /// bytes were damaged on the way): what a migration's target checks every page with.
    public static func word(ofPage bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard bytes.count == pageSize else { return nil }
        let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard word != 0, vectorStreamAvailable else { return scalarWord(ofPage: bytes) }
        return flotilla_page_stream_matches(word, bytes.baseAddress! + 8) != 0 ? word : nil
    }

    /// Whether this CPU makes and checks pages with AVX-512 (checked once per process).
    package static let vectorStreamAvailable = flotilla_page_stream_vector_available() != 0

    /// `expand(_:into:)` one word at a time, whatever the CPU: the fallback, and the reference the
    /// vector's pages are tested against.
    package static func scalarExpand(_ word: UInt64, into raw: UnsafeMutableRawBufferPointer) {
        precondition(raw.count >= pageSize, "a page needs \(pageSize) bytes, got \(raw.count)")
        guard word != 0 else {
            raw.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize)
            return
        }
        var stream = SeededGenerator(seed: word)
        raw.storeBytes(of: word.littleEndian, toByteOffset: 0, as: UInt64.self)
        for offset in stride(from: 8, to: pageSize, by: 8) {
            raw.storeBytes(of: stream.next().littleEndian, toByteOffset: offset, as: UInt64.self)
        }
    }

    /// `word(ofPage:)` one word at a time, whatever the CPU (and for pages of zeros).
    package static func scalarWord(ofPage bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard bytes.count == pageSize else { return nil }
        let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        var stream = SeededGenerator(seed: word)
        for offset in stride(from: 8, to: pageSize, by: 8) {
            let expected = word == 0 ? 0 : stream.next()
            guard UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) == expected else {
                return nil
            }
        }
        return word
    }

    /// A 64-bit checksum of the whole image (its size and every page).
    ///
    /// Equal images have equal checksums however they came about: a page never written and a page
    /// written back to zeros are the same. The target of a migration compares it with the source's.
    public var checksum: UInt64 {
        var hash = Self.mix(0x666C_6F74_696C_6C61 ^ UInt64(words.count))
        for (index, word) in words.enumerated() where word != 0 {
            hash = Self.mix(hash ^ UInt64(index))
            hash = Self.mix(hash ^ word)
        }
        return hash
    }

    private func isDirty(_ index: Int) -> Bool { dirty[index / 64] & (UInt64(1) << UInt64(index % 64)) != 0 }

    /// One round of a 64-bit mixer (the MurmurHash3 finalizer), so every input bit moves every output bit.
    static func mix(_ value: UInt64) -> UInt64 {
        var mixed = value &* 0x9E37_79B9_7F4A_7C15
        mixed = (mixed ^ (mixed >> 33)) &* 0xFF51_AFD7_ED55_8CCD
        mixed = (mixed ^ (mixed >> 33)) &* 0xC4CE_B9FE_1A85_EC53
        return mixed ^ (mixed >> 33)
    }

    private func checkIndex(_ index: Int) {
        precondition(index >= 0 && index < words.count, "page \(index) is outside the image's \(words.count) pages")
    }
}
