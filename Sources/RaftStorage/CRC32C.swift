// CRC32C (Castagnoli), the checksum on every write-ahead log record (DESIGN.md §5).
import CCRC32C

/// The CRC-32C checksum (polynomial 0x1EDC6F41, reflected), as used by iSCSI, ext4 and etcd's WAL.
///
/// The log checksums every byte it writes and reads, so this sits on the write path of every Raft
/// entry: on x86-64 CPUs with SSE4.2 it uses the `crc32` instruction (eight bytes per instruction,
/// CCRC32C), elsewhere slicing-by-8 tables, eight bytes per step.
public enum CRC32C {
    /// The checksum of `bytes`, continuing from `crc` (pass the previous result to checksum in pieces).
    public static func checksum(_ bytes: some Sequence<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        if let result = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0), continuing: crc) }
        ) {
            return result
        }
        return checksum(Array(bytes), continuing: crc)
    }

    /// The checksum of the bytes in `buffer`, continuing from `crc`.
    public static func checksum(_ buffer: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard hardwareAvailable, let base = buffer.baseAddress else {
            return tableChecksum(buffer, continuing: crc)
        }
        return ~flotilla_crc32c_hardware(~crc, base, buffer.count)
    }

    /// Whether the CPU computes CRC-32C itself (checked once per process).
    package static let hardwareAvailable = flotilla_crc32c_hardware_available() != 0

    /// The checksum computed with the tables, whatever the CPU: the fallback, and the reference the
    /// instruction's results are tested against.
    package static func tableChecksum(_ buffer: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var crc = ~crc
        var offset = 0
        let count = buffer.count
        let tables = Self.tables
        tables.withUnsafeBufferPointer { table in
            while count - offset >= 8 {
                let low = crc ^ buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
                let high = buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian
                crc =
                    table[7 * 256 + Int(low & 0xFF)] ^ table[6 * 256 + Int((low >> 8) & 0xFF)]
                    ^ table[5 * 256 + Int((low >> 16) & 0xFF)] ^ table[4 * 256 + Int(low >> 24)]
                    ^ table[3 * 256 + Int(high & 0xFF)] ^ table[2 * 256 + Int((high >> 8) & 0xFF)]
                    ^ table[1 * 256 + Int((high >> 16) & 0xFF)] ^ table[Int(high >> 24)]
                offset += 8
            }
            while offset < count {
                crc = table[Int((crc ^ UInt32(buffer[offset])) & 0xFF)] ^ (crc >> 8)
                offset += 1
            }
        }
        return ~crc
    }

    /// Eight 256-entry tables, one after another: table k advances the CRC past k further zero bytes.
    private static let tables: [UInt32] = {
        let polynomial: UInt32 = 0x82F6_3B78  // 0x1EDC6F41 reflected
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ polynomial : crc >> 1
            }
            tables[byte] = crc
        }
        for byte in 0..<256 {
            for slice in 1..<8 {
                let previous = tables[(slice - 1) * 256 + byte]
                tables[slice * 256 + byte] = tables[Int(previous & 0xFF)] ^ (previous >> 8)
            }
        }
        return tables
    }()
}
