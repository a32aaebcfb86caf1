// How Raft values are written as bytes: for the write-ahead log and for peer RPC.
public import ClusterModel

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

extension Set<NodeID> {
    fileprivate func encode(into writer: inout ByteWriter) {
        writer.writeVarint(count)
        for node in sorted() { writer.writeVarint(node.rawValue) }
    }

    fileprivate init(from reader: inout ByteReader) throws(WireFormatError) {
        let count = try reader.readCount()
        self.init(minimumCapacity: count)
        for _ in 0..<count { insert(try reader.readNodeID()) }
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
    /// The entry's bytes, written with room for its payload from the start (a command is often
    /// longer than `ByteWriter`'s default capacity, and the log writes every entry this way).
    public var wireBytes: [UInt8] {
        var writer = ByteWriter(capacity: byteSize + 16)
        encode(into: &writer)
        return writer.bytes
    }

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
            // A lease round's heartbeat and a promise's answer have kinds of their own (peer stream
            // format 2), so a stream that never carries one stays readable by builds before lease reads.
            writer.write(heartbeat.lease == nil ? 6 as UInt8 : 13 as UInt8)
            writer.writeVarint(heartbeat.commit.rawValue)
            writer.writeVarint(heartbeat.readRound)
            if let lease = heartbeat.lease { writer.writeVarint(Self.microseconds(lease)) }
        case .heartbeatResponse(let readRound, let promised):
            writer.write(promised ? 14 as UInt8 : 7 as UInt8)
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

    /// A lease's length on the wire: whole microseconds, rounded up (a promise is never made
    /// shorter than the lease); 0 for a negative one.
    static func microseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        let partial: UInt64 = attoseconds % 1_000_000_000_000 == 0 ? 0 : 1
        return UInt64(seconds) * 1_000_000 + UInt64(attoseconds / 1_000_000_000_000) + partial
    }

    public init(from reader: inout ByteReader) throws(WireFormatError) {
        let from = try reader.readNodeID()
        let to = try reader.readNodeID()
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
        case 13:
            kind = .heartbeat(
                Heartbeat(
                    commit: LogIndex(try reader.readVarint()), readRound: try reader.readVarint(),
                    lease: .microseconds(try reader.readVarint())))
        case 7: kind = .heartbeatResponse(readRound: try reader.readVarint())
        case 14: kind = .heartbeatResponse(readRound: try reader.readVarint(), promised: true)
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
