// A compact binary coder: varints and length-prefixed bytes, for the log, snapshots and peer RPC.

/// Appends values to a byte buffer: integers as LEB128 varints, byte strings length-prefixed.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func write(_ value: UInt8) { bytes.append(value) }

    public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }

    public mutating func writeVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    public mutating func writeVarint(_ value: Int) {
        precondition(value >= 0, "negative value \(value) has no varint encoding")
        writeVarint(UInt64(value))
    }

    public mutating func write(_ bytes: [UInt8]) {
        writeVarint(bytes.count)
        self.bytes.append(contentsOf: bytes)
    }

    /// A string as its length-prefixed UTF-8 bytes (no copy of them on the way).
    public mutating func write(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            writeVarint(utf8.count)
            bytes.append(contentsOf: utf8)
        }
    }
}

/// Reads what a `ByteWriter` wrote. Every read checks bounds and throws on malformed input: the
/// bytes may come from a damaged disk or a hostile peer, and must never crash the node.
public struct ByteReader: Sendable {
    private let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.offset = 0
    }

    public var isAtEnd: Bool { offset == bytes.count }
    public var remaining: Int { bytes.count - offset }

    public mutating func readByte() throws(WireFormatError) -> UInt8 {
        guard offset < bytes.count else { throw WireFormatError("unexpected end of data at byte \(offset)") }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readBool() throws(WireFormatError) -> Bool {
        switch try readByte() {
        case 0: return false
        case 1: return true
        case let other: throw WireFormatError("byte \(offset - 1) is \(other), not a boolean")
        }
    }

    public mutating func readVarint() throws(WireFormatError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try readByte()
            guard shift < 64, !(shift == 63 && byte > 1) else {
                throw WireFormatError("varint ending at byte \(offset - 1) overflows 64 bits")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// A count or length that must fit in what is left (so a damaged length cannot allocate wildly).
    public mutating func readCount(elementBytes: Int = 1) throws(WireFormatError) -> Int {
        let start = offset
        let value = try readVarint()
        guard value <= UInt64(remaining / max(elementBytes, 1)) else {
            throw WireFormatError("count \(value) at byte \(start) exceeds the \(remaining) bytes left")
        }
        return Int(value)
    }

    public mutating func readInt() throws(WireFormatError) -> Int {
        let start = offset
        let value = try readVarint()
        guard value <= UInt64(Int.max) else { throw WireFormatError("integer at byte \(start) is out of range") }
        return Int(value)
    }

    public mutating func readBytes() throws(WireFormatError) -> [UInt8] {
        let count = try readCount()
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }
}

/// Bytes that do not decode to a Raft value, with where and why.
public struct WireFormatError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
    /// Set when the bytes are in a format newer than this build reads: not damage, so a caller
    /// must not treat them as a bad input to refuse, but stop (docs/operations.md, Upgrades).
    public var newerFormat: NewerFormatVersion?

    public init(_ description: String) { self.description = description }

    public init(_ newer: NewerFormatVersion) {
        self.description = newer.description
        self.newerFormat = newer
    }
}

extension ByteReader {
    /// A node id: a varint that must not be 0 (0 means "no node" in Raft).
    public mutating func readNodeID() throws(WireFormatError) -> NodeID {
        let start = offset
        let raw = try readVarint()
        guard raw != 0 else { throw WireFormatError("node id at byte \(start) is 0") }
        return NodeID(raw)
    }

    /// A length-prefixed string that must be valid UTF-8.
    public mutating func readString() throws(WireFormatError) -> String {
        let start = offset
        let count = try readCount()
        // Decoded from the bytes in place: no array of them made first.
        let text = bytes.withUnsafeBufferPointer { all in
            validatedUTF8String(UnsafeBufferPointer(rebasing: all[offset..<offset + count]))
        }
        guard let text else { throw WireFormatError("the string at byte \(start) is not valid UTF-8") }
        offset += count
        return text
    }
}
