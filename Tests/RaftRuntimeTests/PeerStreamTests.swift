// The peer stream's framing: batches with the sender's leader-contact age, reassembled from any pieces.
import ClusterModel
import HTTP2
import NIOCore
import RaftCore
import RaftRuntime
import Testing

@Suite struct PeerStreamTests {
    private static func batch(_ count: Int, to: NodeID = 2, payload: Int = 10) -> [Message] {
        (0..<count).map { index in
            Message(
                from: 1, to: to, term: 3,
                kind: .append(
                    AppendEntries(
                        previousIndex: LogIndex(UInt64(index)), previousTerm: 3,
                        entries: [
                            Entry(
                                term: 3, index: LogIndex(UInt64(index) + 1),
                                payload: .command(Array(repeating: 7, count: payload)))
                        ],
                        commit: 0)))
        }
    }

    @Test func aFrameCarriesTheAgeAndTheBatch() throws {
        let messages = Self.batch(3)
        let frame = PeerStreamFrame.encode(messages, contactAgeMicroseconds: 123_456)
        var reassembler = PeerStreamReassembler()
        let contents = try Array(frame.readableBytesView).withUnsafeBytes { try reassembler.take($0) }
        #expect(contents.count == 1)
        let decoded = try PeerStreamFrame.decode(contents[0])
        #expect(decoded.ageMicroseconds == 123_456)
        #expect(decoded.messages == messages)
        #expect(reassembler.bufferedBytes == 0)
    }

    @Test func framesSplitAtEveryByteComeOutWholeAndInOrder() throws {
        // Three frames, one of them large enough for a multi-byte length prefix.
        let batches = [Self.batch(1), Self.batch(40, payload: 100), Self.batch(2)]
        var stream: [UInt8] = []
        for (index, batch) in batches.enumerated() {
            stream += Array(PeerStreamFrame.encode(batch, contactAgeMicroseconds: UInt64(index)).readableBytesView)
        }
        for cut in 0...stream.count {
            var reassembler = PeerStreamReassembler()
            var contents: [[UInt8]] = []
            contents += try Array(stream[..<cut]).withUnsafeBytes { try reassembler.take($0) }
            contents += try Array(stream[cut...]).withUnsafeBytes { try reassembler.take($0) }
            #expect(contents.count == 3, "cut at \(cut)")
            for (index, content) in contents.enumerated() {
                let decoded = try PeerStreamFrame.decode(content)
                #expect(decoded.ageMicroseconds == UInt64(index) && decoded.messages == batches[index], "cut at \(cut)")
            }
            #expect(reassembler.bufferedBytes == 0)
        }
        // And fed one byte at a time.
        var reassembler = PeerStreamReassembler()
        var count = 0
        for byte in stream { count += try [byte].withUnsafeBytes { try reassembler.take($0) }.count }
        #expect(count == 3)
    }

    @Test func aLargeBatchIsSplitIntoFramesUnderTheLimit() throws {
        // 20 messages of 1 MiB: more than `splitBytes`, so more than one frame, none over the limit.
        let messages = Self.batch(20, payload: 1 << 20)
        let encoded = PeerStreamFrame.encode(messages, contactAgeMicroseconds: 9)
        var reassembler = PeerStreamReassembler()
        let contents = try Array(encoded.readableBytesView).withUnsafeBytes { try reassembler.take($0) }
        #expect(contents.count == 3)
        #expect(contents.allSatisfy { $0.count <= PeerStreamFrame.maxLength })
        var decoded: [Message] = []
        for content in contents {
            let frame = try PeerStreamFrame.decode(content)
            #expect(frame.ageMicroseconds == 9)
            decoded += frame.messages
        }
        #expect(decoded == messages)
    }

    @Test func badFramingIsAnErrorNotACrash() throws {
        // A length beyond the limit.
        var huge = ByteWriter()
        huge.writeVarint(UInt64(PeerStreamFrame.maxLength) + 1)
        var reassembler = PeerStreamReassembler()
        #expect(throws: WireFormatError.self) { _ = try huge.bytes.withUnsafeBytes { try reassembler.take($0) } }
        // A length prefix that never ends.
        var endless = PeerStreamReassembler()
        #expect(throws: WireFormatError.self) {
            _ = try [UInt8](repeating: 0xFF, count: 11).withUnsafeBytes { try endless.take($0) }
        }
        // A whole frame whose content is not a batch, or has bytes after it.
        #expect(throws: WireFormatError.self) { _ = try PeerStreamFrame.decode([0x05, 0xFF]) }
        var trailing = Array(PeerStreamFrame.encode(Self.batch(1), contactAgeMicroseconds: 0).readableBytesView)
        var lengthReader = ByteReader(trailing)
        _ = try lengthReader.readVarint()
        trailing = Array(trailing[lengthReader.offset...]) + [0]
        #expect(throws: WireFormatError.self) { _ = try PeerStreamFrame.decode(trailing) }
    }
}
