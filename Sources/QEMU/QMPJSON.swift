// QMP's JSON, read and written by hand: a node polls its guests' QMP many times a second (migration
// progress every few milliseconds, memory statistics every second per guest), and Foundation's
// decoder through `Decodable` spent ~200 µs on one `query-migrate` answer.

/// Why a QMP line is not JSON, and where.
public struct QMPJSONError: Error, CustomStringConvertible, Equatable {
    public var reason: String
    /// The byte offset in the line.
    public var offset: Int

    public var description: String { "not JSON at byte \(offset): \(reason)" }
}

extension QMPValue {
    /// Parses one JSON text (RFC 8259): a value with only whitespace around it. Numbers are
    /// doubles (QMP's byte counts fit them exactly up to 2^53); a key given twice keeps its last
    /// value; nesting deeper than 64 is refused.
    public init(json bytes: UnsafeRawBufferPointer) throws(QMPJSONError) {
        var reader = JSONReader(bytes: bytes)
        reader.skipWhitespace()
        let value = try reader.value(depth: 0)
        reader.skipWhitespace()
        guard reader.position == bytes.count else { throw reader.error("more after the value") }
        self = value
    }

    public init(json text: String) throws(QMPJSONError) {
        var result: Result<QMPValue, QMPJSONError> = .failure(QMPJSONError(reason: "unread", offset: 0))
        var text = text
        text.withUTF8 { utf8 in
            result = Result { () throws(QMPJSONError) in try QMPValue(json: UnsafeRawBufferPointer(utf8)) }
        }
        self = try result.get()
    }

    /// The value as compact JSON text. Whole numbers up to 2^53 are written without a fraction (as
    /// QMP's integer arguments must be); NaN and the infinities, which JSON lacks, are written null.
    public var json: String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        self.write(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the value as compact JSON text to `out`.
    public func write(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let value): Self.write(number: value, to: &out)
        case .string(let value): Self.write(string: value, to: &out)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                value.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            // Sorted keys: the same value is always the same text.
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                Self.write(string: key, to: &out)
                out.append(UInt8(ascii: ":"))
                members[key]!.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func write(number: Double, to out: inout [UInt8]) {
        guard number.isFinite else {
            out.append(contentsOf: "null".utf8)
            return
        }
        if number.rounded() == number, abs(number) <= 0x1p53 {
            out.append(contentsOf: String(Int64(number)).utf8)
        } else {
            // Swift's description is the shortest text that reads back as the same double.
            out.append(contentsOf: number.description.utf8)
        }
    }

    private static func write(string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: "\\\"".utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: "\\\\".utf8)
            case 0x0A: out.append(contentsOf: "\\n".utf8)
            case 0x0D: out.append(contentsOf: "\\r".utf8)
            case 0x09: out.append(contentsOf: "\\t".utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: "\\u00".utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// A cursor over one JSON text.
private struct JSONReader {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    static let maxDepth = 64

    func error(_ reason: String) -> QMPJSONError { QMPJSONError(reason: reason, offset: position) }

    var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func skipWhitespace() {
        while let byte = peek, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { position += 1 }
    }

    mutating func expect(_ word: String) throws(QMPJSONError) {
        for byte in word.utf8 {
            guard peek == byte else { throw error("expected \(word)") }
            position += 1
        }
    }

    mutating func value(depth: Int) throws(QMPJSONError) -> QMPValue {
        guard depth < Self.maxDepth else { throw error("nested deeper than \(Self.maxDepth)") }
        guard let byte = peek else { throw error("a value was expected, the text ended") }
        switch byte {
        case UInt8(ascii: "{"): return .object(try object(depth: depth))
        case UInt8(ascii: "["): return .array(try array(depth: depth))
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"):
            try expect("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expect("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expect("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw error("a value cannot start with byte \(byte)")
        }
    }

    mutating func object(depth: Int) throws(QMPJSONError) -> [String: QMPValue] {
        position += 1  // {
        var members: [String: QMPValue] = [:]
        skipWhitespace()
        if peek == UInt8(ascii: "}") {
            position += 1
            return members
        }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else { throw error("an object's key must be a string") }
            let key = try string()
            skipWhitespace()
            guard peek == UInt8(ascii: ":") else { throw error("expected : after an object's key") }
            position += 1
            skipWhitespace()
            members[key] = try value(depth: depth + 1)
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"):
                position += 1
                return members
            default: throw error("expected , or } in an object")
            }
        }
    }

    mutating func array(depth: Int) throws(QMPJSONError) -> [QMPValue] {
        position += 1  // [
        var values: [QMPValue] = []
        skipWhitespace()
        if peek == UInt8(ascii: "]") {
            position += 1
            return values
        }
        while true {
            skipWhitespace()
            values.append(try value(depth: depth + 1))
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"):
                position += 1
                return values
            default: throw error("expected , or ] in an array")
            }
        }
    }

    mutating func string() throws(QMPJSONError) -> String {
        position += 1  // "
        let start = position
        // The common case: no escape, read as it stands.
        while let byte = peek, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\"), byte >= 0x20 { position += 1 }
        if peek == UInt8(ascii: "\"") {
            let text = try utf8(start..<position)
            position += 1
            return text
        }
        var scalars = Array(bytes[start..<position])
        while true {
            guard let byte = peek else { throw error("a string did not end") }
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                return try utf8(scalars, at: start)
            case UInt8(ascii: "\\"):
                guard let escaped = peek else { throw error("a string did not end") }
                position += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(escaped)
                case UInt8(ascii: "b"): scalars.append(0x08)
                case UInt8(ascii: "f"): scalars.append(0x0C)
                case UInt8(ascii: "n"): scalars.append(0x0A)
                case UInt8(ascii: "r"): scalars.append(0x0D)
                case UInt8(ascii: "t"): scalars.append(0x09)
                case UInt8(ascii: "u"): scalars.append(contentsOf: try unicodeEscape())
                default: throw error("unknown escape \\\(Character(Unicode.Scalar(escaped)))")
                }
            case 0..<0x20: throw error("a control character in a string")
            default: scalars.append(byte)
            }
        }
    }

    /// After `\u`: four hex digits, a surrogate pair's two escapes joined; the scalar as UTF-8.
    mutating func unicodeEscape() throws(QMPJSONError) -> [UInt8] {
        var code = try hex4()
        if (0xD800..<0xDC00).contains(code) {
            guard peek == UInt8(ascii: "\\") else { throw error("a lone high surrogate") }
            position += 1
            guard peek == UInt8(ascii: "u") else { throw error("a lone high surrogate") }
            position += 1
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw error("a high surrogate without its low half") }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00..<0xE000).contains(code) {
            throw error("a lone low surrogate")
        }
        guard let scalar = Unicode.Scalar(code) else { throw error("not a Unicode scalar") }
        return Array(String(Character(scalar)).utf8)
    }

    mutating func hex4() throws(QMPJSONError) -> UInt32 {
        var code: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = peek else { throw error("\\u needs four hex digits") }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("\\u needs four hex digits")
            }
            code = code << 4 | UInt32(digit)
            position += 1
        }
        return code
    }

    func utf8(_ range: Range<Int>) throws(QMPJSONError) -> String {
        guard let text = String(validating: bytes[range], as: UTF8.self) else {
            throw QMPJSONError(reason: "a string is not UTF-8", offset: range.lowerBound)
        }
        return text
    }

    func utf8(_ scalars: [UInt8], at start: Int) throws(QMPJSONError) -> String {
        guard let text = String(validating: scalars, as: UTF8.self) else {
            throw QMPJSONError(reason: "a string is not UTF-8", offset: start)
        }
        return text
    }

    /// A JSON number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
    mutating func number() throws(QMPJSONError) -> Double {
        let start = position
        var whole = true
        if peek == UInt8(ascii: "-") { position += 1 }
        guard let first = peek, isDigit(first) else { throw error("a number needs a digit") }
        position += 1
        if first != UInt8(ascii: "0") { digits() }
        if peek == UInt8(ascii: ".") {
            whole = false
            position += 1
            guard let byte = peek, isDigit(byte) else { throw error("a number's fraction needs a digit") }
            digits()
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            whole = false
            position += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { position += 1 }
            guard let byte = peek, isDigit(byte) else { throw error("a number's exponent needs a digit") }
            digits()
        }
        // Integers of up to 18 digits add up exactly; anything else goes through the parser of Double.
        let negative = bytes[start] == UInt8(ascii: "-")
        let digitsStart = negative ? start + 1 : start
        if whole, position - digitsStart <= 18 {
            var value: Int64 = 0
            for index in digitsStart..<position { value = value * 10 + Int64(bytes[index] - UInt8(ascii: "0")) }
            return Double(negative ? -value : value)
        }
        guard let text = String(validating: bytes[start..<position], as: UTF8.self), let value = Double(text) else {
            throw QMPJSONError(reason: "not a number", offset: start)
        }
        return value
    }

    mutating func digits() {
        while let byte = peek, isDigit(byte) { position += 1 }
    }

    func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}
