// CRC32C against published check values, and piecewise equals whole.
import RaftStorage
import Testing

@Test func crc32cMatchesPublishedCheckValues() {
    #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
    #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
    #expect(CRC32C.checksum([UInt8]()) == 0)
}

@Test(arguments: [0, 1, 7, 8, 9, 63, 1000])
func crc32cContinuesAcrossPieces(split: Int) {
    let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    let whole = CRC32C.checksum(bytes)
    let first = CRC32C.checksum(bytes[0..<split])
    #expect(CRC32C.checksum(bytes[split...], continuing: first) == whole)
}
