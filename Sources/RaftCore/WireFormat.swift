// How Raft values are written as bytes: for the write-ahead log and for peer RPC.
import ClusterModel

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

    public init(_ description: String) { self.description = description }
}

/// A Raft value with a binary form.
public protocol WireCodable {
    func encode(into writer: inout ByteWriter)
    init(from reader: inout ByteReader) throws(WireFormatError)
}

extension WireCodable {
    /// The value's bytes.
    public var wireBytes: [UInt8] {
        var writer = ByteWriter()
        encode(into: &writer)
        return writer.bytes
    }

    /// Decodes a value that must fill `bytes` exactly.
    public init(wireBytes bytes: [UInt8]) throws(WireFormatError) {
        var reader = ByteReader(bytes)
        self = try Self(from: &reader)
        guard reader.isAtEnd else {
            throw WireFormatError("\(reader.remaining) unexpected bytes after a \(Self.self) at byte \(reader.offset)")
        }
    }
}

extension NodeID {
    fileprivate init(from reader: inout ByteReader) throws(WireFormatError) {
        let start = reader.offset
        let raw = try reader.readVarint()
        guard raw != 0 else { throw WireFormatError("node id at byte \(start) is 0") }
        self.init(raw)
    }
}

extension Set<NodeID> {
    fileprivate func encode(into writer: inout ByteWriter) {
        writer.writeVarint(count)
        for node in sorted() { writer.writeVarint(node.rawValue) }
    }

    fileprivate init(from reader: inout ByteReader) throws(WireFormatError) {
        let count = try reader.readCount()
        self.init(minimumCapacity: count)
        for _ in 0..<count { insert(try NodeID(from: &reader)) }
    }
}

extension Membership: WireCodable {
    public func encode(into writer: inout ByteWriter) {
        voters.encode(into: &writer)
        learners.encode(into: &writer)
    }

    public init(from reader: inout ByteReader) throws(WireFormatError) {
        self.init(voters: try Set(from: &reader), learners: try Set(from: &reader))
        guard voters.isDisjoint(with: learners) else {
            throw WireFormatError(
                "a membership lists \(voters.intersection(learners).sorted()) as both voter and learner")
        }
    }
}

extension Entry: WireCodable {
    public func encode(into writer: inout ByteWriter) {
        writer.writeVarint(term.rawValue)
        writer.writeVarint(index.rawValue)
        if let requestID {
            writer.write(true)
            writer.writeVarint(requestID.client)
            writer.writeVarint(requestID.sequence)
        } else {
            writer.write(false)
        }
        switch payload {
        case .noop:
            writer.write(0 as UInt8)
        case .command(let bytes):
            writer.write(1 as UInt8)
            writer.write(bytes)
        case .membership(let membership):
            writer.write(2 as UInt8)
            membership.encode(into: &writer)
        }
    }

    public init(from reader: inout ByteReader) throws(WireFormatError) {
        let term = Term(try reader.readVarint())
        let index = LogIndex(try reader.readVarint())
        let requestID =
            try reader.readBool() ? RequestID(client: try reader.readVarint(), sequence: try reader.readVarint()) : nil
        let payload: EntryPayload
        switch try reader.readByte() {
        case 0: payload = .noop
        case 1: payload = .command(try reader.readBytes())
        case 2: payload = .membership(try Membership(from: &reader))
        case let other: throw WireFormatError("entry \(index) has unknown payload kind \(other)")
        }
        self.init(term: term, index: index, requestID: requestID, payload: payload)
    }
}

extension HardState: WireCodable {
    public func encode(into writer: inout ByteWriter) {
        writer.writeVarint(term.rawValue)
        writer.writeVarint(vote?.rawValue ?? 0)
        writer.writeVarint(commit.rawValue)
    }

    public init(from reader: inout ByteReader) throws(WireFormatError) {
        let term = Term(try reader.readVarint())
        let vote = try reader.readVarint()
        self.init(term: term, vote: vote == 0 ? nil : NodeID(vote), commit: LogIndex(try reader.readVarint()))
    }
}

extension SnapshotMetadata: WireCodable {
    public func encode(into writer: inout ByteWriter) {
        writer.writeVarint(index.rawValue)
        writer.writeVarint(term.rawValue)
        membership.encode(into: &writer)
        writer.writeVarint(appliedRequests.count)
        for (client, sequence) in appliedRequests.sorted(by: { $0.key < $1.key }) {
            writer.writeVarint(client)
            writer.writeVarint(sequence)
        }
    }

    public init(from reader: inout ByteReader) throws(WireFormatError) {
        let index = LogIndex(try reader.readVarint())
        let term = Term(try reader.readVarint())
        let membership = try Membership(from: &reader)
        let count = try reader.readCount(elementBytes: 2)
        var applied: [UInt64: UInt64] = [:]
        applied.reserveCapacity(count)
        for _ in 0..<count { applied[try reader.readVarint()] = try reader.readVarint() }
        self.init(index: index, term: term, membership: membership, appliedRequests: applied)
    }
}

extension Snapshot: WireCodable {
    public func encode(into writer: inout ByteWriter) {
        metadata.encode(into: &writer)
        writer.write(data)
    }

    public init(from reader: inout ByteReader) throws(WireFormatError) {
        self.init(metadata: try SnapshotMetadata(from: &reader), data: try reader.readBytes())
    }
}

extension VoteRequest {
    fileprivate func encode(into writer: inout ByteWriter) {
        writer.writeVarint(lastIndex.rawValue)
        writer.writeVarint(lastTerm.rawValue)
        writer.write(isLeadershipTransfer)
    }

    fileprivate init(from reader: inout ByteReader) throws(WireFormatError) {
        self.init(
            lastIndex: LogIndex(try reader.readVarint()), lastTerm: Term(try reader.readVarint()),
            isLeadershipTransfer: try reader.readBool())
    }
}

extension Message: WireCodable {
    public func encode(into writer: inout ByteWriter) {
        writer.writeVarint(from.rawValue)
        writer.writeVarint(to.rawValue)
        writer.writeVarint(term.rawValue)
        switch kind {
        case .preVote(let request):
            writer.write(0 as UInt8)
            request.encode(into: &writer)
        case .preVoteResponse(let granted):
            writer.write(1 as UInt8)
            writer.write(granted)
        case .vote(let request):
            writer.write(2 as UInt8)
            request.encode(into: &writer)
        case .voteResponse(let granted):
            writer.write(3 as UInt8)
            writer.write(granted)
        case .append(let append):
            writer.write(4 as UInt8)
            writer.writeVarint(append.previousIndex.rawValue)
            writer.writeVarint(append.previousTerm.rawValue)
            writer.writeVarint(append.commit.rawValue)
            writer.writeVarint(append.entries.count)
            for entry in append.entries { entry.encode(into: &writer) }
        case .appendResponse(let response):
            writer.write(5 as UInt8)
            writer.writeVarint(response.index.rawValue)
            writer.write(response.rejected)
            writer.writeVarint(response.hintIndex.rawValue)
            writer.writeVarint(response.hintTerm.rawValue)
        case .heartbeat(let heartbeat):
            writer.write(6 as UInt8)
            writer.writeVarint(heartbeat.commit.rawValue)
            writer.writeVarint(heartbeat.readRound)
        case .heartbeatResponse(let readRound):
            writer.write(7 as UInt8)
            writer.writeVarint(readRound)
        case .installSnapshot(let chunk):
            writer.write(8 as UInt8)
            chunk.metadata.encode(into: &writer)
            writer.writeVarint(chunk.offset)
            writer.write(chunk.bytes)
            writer.writeVarint(chunk.totalBytes)
            writer.write(chunk.isLast)
        case .snapshotResponse(let response):
            writer.write(9 as UInt8)
            writer.writeVarint(response.index.rawValue)
            writer.writeVarint(response.nextOffset)
            writer.write(response.resend)
        case .timeoutNow:
            writer.write(10 as UInt8)
        case .readIndex(let context):
            writer.write(11 as UInt8)
            writer.write(context)
        case .readIndexResponse(let state):
            writer.write(12 as UInt8)
            writer.writeVarint(state.index.rawValue)
            writer.write(state.context)
        }
    }

    public init(from reader: inout ByteReader) throws(WireFormatError) {
        let from = try NodeID(from: &reader)
        let to = try NodeID(from: &reader)
        let term = Term(try reader.readVarint())
        let kind: MessageKind
        switch try reader.readByte() {
        case 0: kind = .preVote(try VoteRequest(from: &reader))
        case 1: kind = .preVoteResponse(granted: try reader.readBool())
        case 2: kind = .vote(try VoteRequest(from: &reader))
        case 3: kind = .voteResponse(granted: try reader.readBool())
        case 4:
            let previousIndex = LogIndex(try reader.readVarint())
            let previousTerm = Term(try reader.readVarint())
            let commit = LogIndex(try reader.readVarint())
            let count = try reader.readCount(elementBytes: 4)
            var entries: [Entry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count { entries.append(try Entry(from: &reader)) }
            kind = .append(
                AppendEntries(
                    previousIndex: previousIndex, previousTerm: previousTerm, entries: entries, commit: commit))
        case 5:
            kind = .appendResponse(
                AppendResponse(
                    index: LogIndex(try reader.readVarint()), rejected: try reader.readBool(),
                    hintIndex: LogIndex(try reader.readVarint()), hintTerm: Term(try reader.readVarint())))
        case 6:
            kind = .heartbeat(Heartbeat(commit: LogIndex(try reader.readVarint()), readRound: try reader.readVarint()))
        case 7: kind = .heartbeatResponse(readRound: try reader.readVarint())
        case 8:
            let metadata = try SnapshotMetadata(from: &reader)
            let offset = try reader.readInt()
            let bytes = try reader.readBytes()
            let total = try reader.readInt()
            let isLast = try reader.readBool()
            guard offset <= total, bytes.count <= total - offset else {
                throw WireFormatError(
                    "snapshot chunk at offset \(offset) with \(bytes.count) bytes overruns its total of \(total)")
            }
            kind = .installSnapshot(
                SnapshotChunk(metadata: metadata, offset: offset, bytes: bytes, totalBytes: total, isLast: isLast))
        case 9:
            kind = .snapshotResponse(
                SnapshotChunkResponse(
                    index: LogIndex(try reader.readVarint()), nextOffset: try reader.readInt(),
                    resend: try reader.readBool()))
        case 10: kind = .timeoutNow
        case 11: kind = .readIndex(context: try reader.readBytes())
        case 12:
            kind = .readIndexResponse(
                ReadState(index: LogIndex(try reader.readVarint()), context: try reader.readBytes()))
        case let other: throw WireFormatError("unknown message kind \(other) from \(from)")
        }
        self.init(from: from, to: to, term: term, kind: kind)
    }
}
