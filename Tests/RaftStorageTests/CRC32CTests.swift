// CRC32C against published check values, and piecewise equals whole.
import Foundation
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

// Every length from 0 to 40 at every start offset 0–8 (the instruction path's 8-byte steps, its
// byte tail and unaligned starts), plus a long buffer: the instruction and the tables must agree.
@Test func crc32cInstructionAgreesWithTables() {
    let bytes = (0..<4200).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ ($0 >> 7)) }
    bytes.withUnsafeBytes { all in
        for start in 0...8 {
            for count in 0...40 {
                let piece = UnsafeRawBufferPointer(rebasing: all[start..<start + count])
                #expect(
                    CRC32C.checksum(piece, continuing: 0x1234_5678)
                        == CRC32C.tableChecksum(piece, continuing: 0x1234_5678))
            }
        }
        #expect(CRC32C.checksum(all) == CRC32C.tableChecksum(all))
    }
}

@Test func crc32cUsesTheInstructionWhereTheCPUHasIt() throws {
    #if arch(x86_64)
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        #expect(CRC32C.hardwareAvailable == cpuinfo.contains(" sse4_2"))
    #else
        #expect(!CRC32C.hardwareAvailable)
    #endif
}
