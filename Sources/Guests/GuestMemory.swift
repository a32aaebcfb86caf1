// A simulated guest's memory: 4 KiB pages, sparse, with the dirty tracking live migration needs.

/// A guest's memory image as pages of `GuestMemory.pageSize` bytes.
///
/// Pages the guest never wrote read as zeros and cost nothing: only pages holding a non-zero byte
/// are stored. A page written back to all zeros is dropped again, so an image's cost is what it
/// holds, not what it once touched. Pure: no clock, no I/O.
///
/// Every write marks its page dirty; `collectDirtyPages()` hands the dirty set over and starts a
/// new one — the round structure of pre-copy migration (DESIGN.md §9).
public struct GuestMemory: Hashable, Sendable {
    public static let pageSize = 4096

    /// How many pages the image has; valid page indexes are `0..<pageCount`.
    public let pageCount: Int
    /// The pages holding at least one non-zero byte; every stored page is `pageSize` bytes and not all zero.
    private var pages: [Int: [UInt8]] = [:]
    /// Pages written since the last `collectDirtyPages()`, stored or not (a page zeroed again is dirty too).
    private var dirty: Set<Int> = []

    /// An image of `bytes` bytes, rounded up to whole pages, all zero.
    public init(bytes: UInt64) {
        precondition(bytes > 0, "a guest's memory must be at least one byte")
        let pageSize = UInt64(Self.pageSize)
        self.pageCount = Int((bytes + pageSize - 1) / pageSize)
    }

    /// The pages that hold data and so occupy host memory.
    public var residentPages: Int { pages.count }
    /// Host memory the image occupies for page contents.
    public var residentBytes: Int { pages.count * Self.pageSize }
    /// How many pages were written since the dirty set was last collected.
    public var dirtyPageCount: Int { dirty.count }

    /// The page's bytes (zeros for a page never written).
    public func page(_ index: Int) -> [UInt8] {
        checkIndex(index)
        return pages[index] ?? [UInt8](repeating: 0, count: Self.pageSize)
    }

    /// Replaces a whole page.
    public mutating func writePage(_ index: Int, _ bytes: [UInt8]) {
        checkIndex(index)
        precondition(bytes.count == Self.pageSize, "a page is \(Self.pageSize) bytes, got \(bytes.count)")
        dirty.insert(index)
        pages[index] = bytes.allSatisfy { $0 == 0 } ? nil : bytes
    }

    /// Writes `bytes` into page `index` at `offset`; the write must stay inside the page.
    public mutating func write(page index: Int, offset: Int, bytes: some Collection<UInt8>) {
        checkIndex(index)
        precondition(
            offset >= 0 && offset + bytes.count <= Self.pageSize,
            "a write of \(bytes.count) bytes at offset \(offset) does not fit a \(Self.pageSize)-byte page")
        dirty.insert(index)
        let writesZeros = bytes.allSatisfy { $0 == 0 }
        guard var page = pages.removeValue(forKey: index) else {
            // Zeros onto a page that is all zeros change nothing and need no storage.
            if writesZeros { return }
            var page = [UInt8](repeating: 0, count: Self.pageSize)
            page.replaceSubrange(offset..<offset + bytes.count, with: bytes)
            pages[index] = page
            return
        }
        page.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        if writesZeros && page.allSatisfy({ $0 == 0 }) { return }
        pages[index] = page
    }

    /// The pages written since the last call, in ascending order; the dirty set starts empty again.
    public mutating func collectDirtyPages() -> [Int] {
        defer { dirty.removeAll(keepingCapacity: true) }
        return dirty.sorted()
    }

    /// A 64-bit checksum of the whole image (its size and every page's contents).
    ///
    /// Equal images have equal checksums however they came about: a page never written and a page
    /// written back to zeros are the same. The target of a migration compares it with the source's.
    public var checksum: UInt64 {
        var hash = Self.mix(0x666C_6F74_696C_6C61 ^ UInt64(pageCount))
        for index in pages.keys.sorted() {
            hash = Self.mix(hash ^ UInt64(index))
            pages[index]!.withUnsafeBytes { raw in
                for word in 0..<(Self.pageSize / 8) {
                    hash = Self.mix(hash ^ raw.loadUnaligned(fromByteOffset: word * 8, as: UInt64.self).littleEndian)
                }
            }
        }
        return hash
    }

    /// One round of a 64-bit mixer (the MurmurHash3 finalizer), so every input bit moves every output bit.
    private static func mix(_ value: UInt64) -> UInt64 {
        var mixed = value &* 0x9E37_79B9_7F4A_7C15
        mixed = (mixed ^ (mixed >> 33)) &* 0xFF51_AFD7_ED55_8CCD
        mixed = (mixed ^ (mixed >> 33)) &* 0xC4CE_B9FE_1A85_EC53
        return mixed ^ (mixed >> 33)
    }

    private func checkIndex(_ index: Int) {
        precondition(index >= 0 && index < pageCount, "page \(index) is outside the image's \(pageCount) pages")
    }
}
