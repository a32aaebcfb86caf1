// The simulated replicated state machine: a map of registers, with snapshots as compact bytes.

/// The state every node applies committed `put` commands to.
public struct KeyValueStore: Hashable, Sendable {
    /// A command or snapshot in the log that is not one this store wrote.
    public struct DecodingError: Error, CustomStringConvertible {
        public var description: String
    }

    public private(set) var values: [UInt32: UInt64] = [:]

    public init() {}

    /// Rebuilds the store from `snapshotData()` bytes.
    public init(snapshot bytes: [UInt8]) throws(DecodingError) {
        guard bytes.count % 12 == 0 else {
            throw DecodingError(
                description: "a key-value snapshot is a sequence of 12-byte pairs, got \(bytes.count) bytes")
        }
        var offset = 0
        while offset < bytes.count {
            var key: UInt32 = 0
            for shift in 0..<4 { key |= UInt32(bytes[offset + shift]) << (8 * shift) }
            var value: UInt64 = 0
            for shift in 0..<8 { value |= UInt64(bytes[offset + 4 + shift]) << (8 * shift) }
            values[key] = value
            offset += 12
        }
    }

    public subscript(key: UInt32) -> UInt64? { values[key] }

    /// Applies one committed command.
    public mutating func apply(_ command: [UInt8]) throws(DecodingError) {
        guard let decoded = KeyValueCommand(decoding: command) else {
            throw DecodingError(
                description:
                    "a committed command must be a 13-byte put, got \(command.count) bytes: \(command.prefix(16))")
        }
        switch decoded {
        case .put(let key, let value): values[key] = value
        }
    }

    /// The store as bytes, keys in ascending order so equal stores give equal snapshots.
    public func snapshotData() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 12)
        for key in values.keys.sorted() {
            let value = values[key]!
            for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: key >> shift)) }
            for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
        }
        return bytes
    }
}
