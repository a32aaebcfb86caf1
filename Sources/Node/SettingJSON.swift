// Hand-written JSON for the settings write path, the API's hottest request.
import ClusterModel
import FlotillaAPI
import Foundation

/// JSON for one setting write without Foundation's coders.
///
/// Under a sustained write load, `JSONEncoder` for the answer and `JSONDecoder` for the body took
/// about 15% of a leader's CPU (perf, docs/benchmarks.md). The shapes here are fixed and small, so
/// they are written and read by hand; anything the fast reader does not recognise goes to
/// `JSONDecoder`, which also produces the errors.
enum SettingJSON {
    /// The setting as `SettingView` encodes it (keys sorted, absent values left out).
    static func encode(_ view: SettingView) -> String {
        var out = "{\"key\":"
        out.reserveCapacity(32 + view.key.utf8.count + (view.value?.utf8.count ?? 0) + (view.previous?.utf8.count ?? 0))
        appendQuoted(view.key, to: &out)
        if let previous = view.previous {
            out += ",\"previous\":"
            appendQuoted(previous, to: &out)
        }
        if let value = view.value {
            out += ",\"value\":"
            appendQuoted(value, to: &out)
        }
        out += "}"
        return out
    }

    /// `text` as a JSON string literal (RFC 8259 §7): quotes, backslashes and control characters escaped.
    static func appendQuoted(_ text: String, to out: inout String) {
        out += "\""
        var text = text
        let needsEscapes = text.withUTF8 { firstEscaped(in: $0) != nil }
        if !needsEscapes {
            out += text
            out += "\""
            return
        }
        var plainStart = text.utf8.startIndex
        var index = plainStart
        let utf8 = text.utf8
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 {
                out += String(text[plainStart..<index])
                switch byte {
                case UInt8(ascii: "\""): out += "\\\""
                case UInt8(ascii: "\\"): out += "\\\\"
                case 0x0A: out += "\\n"
                case 0x0D: out += "\\r"
                case 0x09: out += "\\t"
                default:
                    let hex = String(byte, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                }
                index = utf8.index(after: index)
                plainStart = index
            } else {
                index = utf8.index(after: index)
            }
        }
        out += String(text[plainStart..<utf8.endIndex])
        out += "\""
    }

    /// The offset of the first byte a JSON string cannot hold as it is — a quote, a backslash or a
    /// control character — or nil. Eight bytes at a time: values are often long, and every write's
    /// body and answer are scanned.
    static func firstEscaped(in bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        let raw = UnsafeRawPointer(base)
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var offset = 0
        while offset + 8 <= bytes.count {
            let word = raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            // A byte below 0x20, or equal to '"' or '\\' (a zero byte after the xor): the classic
            // "has a byte less than n" tests, exact for every byte below 0x80; bytes of 0x80 and
            // above never set them, and are not special. (Swift's SIMD16 compares, tried instead,
            // cost several times the instructions.)
            let control = (word &- ones &* 0x20) & ~word & highs
            let quote = ((word ^ (ones &* 0x22)) &- ones) & ~(word ^ (ones &* 0x22)) & highs
            let backslash = ((word ^ (ones &* 0x5C)) &- ones) & ~(word ^ (ones &* 0x5C)) & highs
            if control | quote | backslash != 0 { break }
            offset += 8
        }
        while offset < bytes.count {
            let byte = bytes[offset]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { return offset }
            offset += 1
        }
        return nil
    }

    /// The value of a body that is exactly `{"value": "…"}` with no escapes in the string (spaces
    /// allowed around the tokens), or nil: then the caller decodes the body fully.
    static func simpleValue(in body: some Collection<UInt8>) -> String? {
        if let answer = body.withContiguousStorageIfAvailable({ simpleValue(inBytes: $0[...]) }) { return answer }
        return Array(body).withUnsafeBufferPointer { simpleValue(inBytes: $0[...]) }
    }

    private static func simpleValue(inBytes body: Slice<UnsafeBufferPointer<UInt8>>) -> String? {
        var bytes = body
        func skipSpace() {
            while let byte = bytes.first, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
                bytes = bytes.dropFirst()
            }
        }
        func expect(_ text: StaticString) -> Bool {
            let count = text.utf8CodeUnitCount
            guard bytes.count >= count,
                zip(bytes.prefix(count), UnsafeBufferPointer(start: text.utf8Start, count: count)).allSatisfy(==)
            else { return false }
            bytes = bytes.dropFirst(count)
            return true
        }
        skipSpace()
        guard expect("{") else { return nil }
        skipSpace()
        guard expect("\"value\"") else { return nil }
        skipSpace()
        guard expect(":") else { return nil }
        skipSpace()
        guard expect("\"") else { return nil }
        guard let found = firstEscaped(in: UnsafeBufferPointer(rebasing: bytes)),
            case let end = bytes.startIndex + found, bytes[end] == UInt8(ascii: "\"")
        else { return nil }
        // Invalid UTF-8 is left to JSONDecoder, which refuses it.
        guard let value = validatedUTF8String(UnsafeBufferPointer(rebasing: bytes[..<end])) else { return nil }
        bytes = bytes[bytes.index(after: end)...]
        skipSpace()
        guard expect("}") else { return nil }
        skipSpace()
        return bytes.isEmpty ? value : nil
    }
}
