// Sizes as people write them ("512M", "1.5G") and the short form tables print.
import ClusterModel
import Testing

private let kib: UInt64 = 1 << 10
private let mib: UInt64 = 1 << 20
private let gib: UInt64 = 1 << 30

private let writtenSizes: [(String, UInt64)] = [
    ("4096", 4096), ("512M", 512 * mib), ("512m", 512 * mib), ("1G", gib), ("1GiB", gib), ("1 GB", gib),
    ("1.5G", 3 * gib / 2), ("0.25G", gib / 4), ("64K", 64 * kib), ("2T", 2048 * gib), ("10B", 10),
]

@Test(arguments: writtenSizes)
func sizesParseInBinaryUnits(_ text: String, _ bytes: UInt64) {
    #expect(ByteCount(parsing: text)?.bytes == bytes)
}

@Test(arguments: ["", "G", "1X", "1.5.5G", "-1G", "1.2345G", "99999999999T", ".5G", "1 G B"])
func whatIsNotASizeIsRefused(_ text: String) {
    #expect(ByteCount(parsing: text)?.bytes == nil)
}

@Test func theProblemNamesTheInputAndTheForm() {
    #expect(
        ByteCount.problem("1X", what: "--startup")
            == "--startup \"1X\" is not a size; write it like 512M, 1G, 1.5G or a number of bytes")
}

private let shortSizes: [(UInt64, String)] = [
    (4 * gib, "4G"), (3 * gib / 2, "1.5G"), (512 * mib, "512M"), (64 * kib, "64K"), (300, "300B"), (0, "0B"),
    (gib + 1, "1G"), (2048 * gib, "2T"),
]

@Test(arguments: shortSizes)
func tablesShowShortSizesRoundedDown(_ bytes: UInt64, _ text: String) {
    #expect(ByteCount(bytes).compact == text)
}
