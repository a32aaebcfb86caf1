// The request methods the server recognises as constants, and header fields kept as received until read.
import Testing

@testable import HTTP2

@Suite struct HeaderDecodingTests {
    private func decoded(_ text: String, _ decode: (UnsafeBufferPointer<UInt8>) -> String?) -> String? {
        Array(text.utf8).withUnsafeBufferPointer { decode($0) }
    }

    @Test func commonMethodsAreConstantsAndOthersAreNot() {
        for method in ["GET", "PUT", "POST", "HEAD", "DELETE"] {
            #expect(decoded(method, knownMethod) == method)
        }
        for other in ["get", "GETS", "GE", "PATCH", "OPTIONS", "POS", "DELETF", ""] {
            #expect(decoded(other, knownMethod) == nil)
        }
    }

    /// Fields as the decoder appends them: their bytes, decoded when read.
    private func received(_ pairs: [(String, String)]) -> HTTPFields {
        var fields = HTTPFields()
        for (name, value) in pairs {
            Array(name.utf8).withUnsafeBufferPointer { name in
                Array(value.utf8).withUnsafeBufferPointer { fields.appendReceived(name: name, value: $0) }
            }
        }
        return fields
    }

    /// Received fields read, compare and hash like the same fields made as Strings.
    @Test func receivedFieldsReadLikeFieldsMadeAsStrings() {
        let pairs = [
            ("user-agent", "h2load nghttp2/1.52.0"), ("x-empty", ""), ("accept", "*/*"), ("x-b", "2"),
            ("accept", "text/plain"), ("x-utf8", "grüße ✓"),
        ]
        let fields = received(pairs)
        var made = HTTPFields()
        for (name, value) in pairs { made.append(name: name, value: value) }
        #expect(fields.count == 6)
        #expect(fields.map(\.name) == pairs.map(\.0))
        #expect(fields.map(\.value) == pairs.map(\.1))
        #expect(fields.fields == made.fields)
        #expect(fields["Accept"] == "*/*")
        #expect(fields.first(lowercasedName: "x-empty") == "")
        #expect(fields.first(lowercasedName: "x-utf8") == "grüße ✓")
        #expect(fields["x-missing"] == nil)
        #expect(fields.first(lowercasedName: "x-") == nil)
        #expect(fields.values(for: "accept") == ["*/*", "text/plain"])
        #expect(fields == made)
        #expect(fields.hashValue == made.hashValue)
        #expect(fields != received(Array(pairs.dropLast())))
        #expect(received([]) == HTTPFields())
    }

    /// A change through the API keeps the received fields, in order; a copy does not see it.
    @Test func receivedFieldsChangeLikeFieldsMadeAsStrings() {
        let original = received([("accept", "*/*"), ("x-a", "1"), ("accept", "text/plain")])
        var changed = original
        changed["x-a"] = "2"
        changed.append(name: "X-New", value: "3")
        #expect(changed.map(\.name) == ["accept", "accept", "x-a", "x-new"])
        #expect(changed.map(\.value) == ["*/*", "text/plain", "2", "3"])
        #expect(original.map(\.value) == ["*/*", "1", "text/plain"])
        var removed = original
        removed["ACCEPT"] = nil
        #expect(removed.fields == [HTTPFields.Field(name: "x-a", value: "1")])
    }

    /// Appending to received fields grows their storage without disturbing a copy made before.
    @Test func receivedFieldsGrowAndCopyOnWrite() {
        var fields = received([("x-first", "1")])
        let early = fields
        let long = String(repeating: "v", count: 700)
        for index in 0..<40 {
            Array("x-\(index)".utf8).withUnsafeBufferPointer { name in
                Array((index % 7 == 0 ? long : "\(index)").utf8).withUnsafeBufferPointer {
                    fields.appendReceived(name: name, value: $0)
                }
            }
        }
        #expect(fields.count == 41)
        #expect(early.count == 1)
        #expect(early.fields == [HTTPFields.Field(name: "x-first", value: "1")])
        #expect(fields.first(lowercasedName: "x-39") == "39")
        #expect(fields.first(lowercasedName: "x-35") == long)
        #expect(fields.map(\.name) == ["x-first"] + (0..<40).map { "x-\($0)" })
    }

    /// Fields made through the API first stay Strings when more are received (not a decoder's case).
    @Test func fieldsReceivedAfterStringsKeepTheirOrder() {
        var fields: HTTPFields = ["x-made": "1"]
        Array("x-received".utf8).withUnsafeBufferPointer { name in
            Array("2".utf8).withUnsafeBufferPointer { fields.appendReceived(name: name, value: $0) }
        }
        #expect(fields.map(\.name) == ["x-made", "x-received"])
        #expect(fields["x-received"] == "2")
    }

    /// Numbers in the header block (`:status`, `content-length`) are written as decimal digits.
    @Test(arguments: [0, 7, 10, 99, 200, 1024, 99_999, -1, -200, Int.max, Int.min])
    func decimalsAreWrittenAsDescribed(value: Int) {
        var bytes = [UInt8](repeating: 0, count: maxDecimalCount + 1)
        let count = bytes.withUnsafeMutableBufferPointer { writeDecimal(value, to: $0.baseAddress!) }
        #expect(String(decoding: bytes[..<count], as: UTF8.self) == String(value))
        #expect(bytes[count...].allSatisfy { $0 == 0 })
    }
}
