import ClusterModel
import Foundation
import QEMU
import Testing

/// The hand-written QMP JSON reader and writer, checked against Foundation's JSONSerialization.
@Suite struct QMPJSONTests {
    /// Foundation's reading of `text`, as a QMPValue (numbers as doubles, like ours).
    static func foundation(_ text: String) throws -> QMPValue {
        func convert(_ any: Any) -> QMPValue {
            switch any {
            case is NSNull: return .null
            case let bool as Bool where type(of: any) == Bool.self: return .bool(bool)
            case let number as NSNumber:
                // Swift's Foundation on Linux gives a JSON boolean as an NSNumber of type "c".
                if String(cString: number.objCType) == "c" { return .bool(number.boolValue) }
                return .number(number.doubleValue)
            case let string as String: return .string(string)
            case let array as [Any]: return .array(array.map(convert))
            case let object as [String: Any]: return .object(object.mapValues(convert))
            default: return .null
            }
        }
        return convert(try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]))
    }

    static func nearlyEqual(_ a: QMPValue, _ b: QMPValue) -> Bool {
        switch (a, b) {
        case (.number(let x), .number(let y)): return x == y || abs(x - y) <= 1e-12 * max(abs(x), abs(y))
        case (.array(let xs), .array(let ys)): return xs.count == ys.count && zip(xs, ys).allSatisfy(nearlyEqual)
        case (.object(let xs), .object(let ys)):
            return xs.count == ys.count && xs.allSatisfy { key, x in ys[key].map { nearlyEqual(x, $0) } ?? false }
        default: return a == b
        }
    }

    @Test func readsAQueryMigrateAnswer() throws {
        let line = #"""
            {"return": {"expected-downtime": 300, "status": "completed", "setup-time": 3, "total-time": 412, \#
            "ram": {"total": 268599296, "postcopy-requests": 0, "dirty-sync-count": 3, "multifd-bytes": 0, \#
            "pages-per-second": 118536, "downtime-bytes": 1179648, "page-size": 4096, "remaining": 0, \#
            "postcopy-bytes": 0, "mbps": 1000.5521, "transferred": 202871123, "dirty-sync-missed-zero-copy": 0, \#
            "precopy-bytes": 201691475, "duplicate": 17512, "dirty-pages-rate": 0, "skipped": 0, \#
            "normal-bytes": 201183232, "normal": 49117}, "downtime": 9}, "id": 17}
            """#
        let value = try QMPValue(json: line)
        #expect(value == (try Self.foundation(line)))
        #expect(value["id"]?.count == 17)
        #expect(value["return"]?["status"]?.string == "completed")
        #expect(value["return"]?["downtime"]?.count == 9)
        #expect(value["return"]?["ram"]?["transferred"]?.count == 202_871_123)
        #expect(value["return"]?["ram"]?["mbps"]?.number == 1000.5521)
    }

    @Test(arguments: [
        #"{"a": "tab\there", "b": "quote \" backslash \\ slash \/"}"#,
        #"["\u00e9\u4e2d", "\ud83d\ude00", "plain é 中 😀", "\b\f\n\r\t", ""]"#,
        #"[0, -0, 1, -1, 12.5, -3.25e-3, 1E10, 2e+2, 123456789012345678, 9007199254740993, 1.7976931348623157e308]"#,
        #"{"nested": {"deeper": [[], {}, [null, true, false]]}, "dup": 1, "dup": 2}"#,
        " \n\t{ \"spaced\" : [ 1 , 2 ] } \r\n",
        #""a lone string""#, "42", "null",
    ])
    func agreesWithFoundation(text: String) throws {
        #expect(try QMPValue(json: text) == (try Self.foundation(text)))
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "[1 2]", #"{"a" 1}"#, #"{"a":}"#, #"{1: 2}"#, #"{"a": 1,}"#,
        "tru", "nul", "01", "-", "1.", "1e", ".5", "+1", "0x10", #""unterminated"#, #""bad \x escape""#,
        #""\u12""#, #""\ud800""#, #""\udc00 alone""#, "\"control \u{01} char\"", "[1] [2]", "NaN", "Infinity",
        "\"\u{7F}\"x",
    ])
    func refusesWhatIsNotJSON(text: String) {
        #expect(throws: QMPJSONError.self) { try QMPValue(json: text) }
    }

    @Test func refusesInvalidUTF8AndDeepNesting() {
        let invalid: [UInt8] = [0x22, 0xFF, 0xFE, 0x22]
        #expect(throws: QMPJSONError.self) {
            try invalid.withUnsafeBytes { bytes in _ = try QMPValue(json: bytes) }
        }
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        let error = #expect(throws: QMPJSONError.self) { try QMPValue(json: deep) }
        #expect(error?.offset == 64)
        #expect(error?.description == "not JSON at byte 64: nested deeper than 64")
        let allowed = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(throws: Never.self) { try QMPValue(json: allowed) }
    }

    @Test func writesCompactTextFoundationReadsBack() throws {
        let value: QMPValue = [
            "execute": "migrate-set-parameters", "id": 7,
            "arguments": [
                "downtime-limit": 50, "max-bandwidth": .number(10_737_418_240), "ratio": .number(0.1),
                "text": .string("line\nbreak \"quoted\" \\ \u{01}\u{1F} é 😀"), "none": .null, "yes": true,
                "list": .array([.number(-1), .number(1e300), .array([])]),
            ],
        ]
        let text = value.json
        #expect(!text.contains("\n"))
        #expect(text.contains(#""id":7"#))
        #expect(text.contains(#""max-bandwidth":10737418240"#))
        #expect(try Self.foundation(text) == value)
        #expect(try QMPValue(json: text) == value)
        #expect(QMPValue.number(.nan).json == "null")
        #expect(QMPValue.number(-.infinity).json == "null")
    }

    /// Random values (seeded: a failure names its seed) written and read back are the same value.
    @Test(arguments: 0..<20)
    func randomValuesRoundTrip(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        func string() -> String {
            let pool: [Unicode.Scalar] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\u{01}", "\u{1F}", "é", "中", "😀"]
            return String(
                String.UnicodeScalarView(
                    (0..<Int.random(in: 0...8, using: &random)).map { _ in
                        pool.randomElement(using: &random)!
                    }))
        }
        func value(_ depth: Int) -> QMPValue {
            switch Int.random(in: 0..<(depth > 3 ? 4 : 6), using: &random) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &random))
            case 2:
                return Bool.random(using: &random)
                    ? .number(Double(Int64.random(in: -(1 << 53)...(1 << 53), using: &random)))
                    : .number(Double.random(in: -1e12...1e12, using: &random))
            case 3: return .string(string())
            case 4: return .array((0..<Int.random(in: 0...4, using: &random)).map { _ in value(depth + 1) })
            default:
                return .object(
                    Dictionary(
                        (0..<Int.random(in: 0...4, using: &random)).map { _ in (string(), value(depth + 1)) },
                        uniquingKeysWith: { _, last in last }))
            }
        }
        for _ in 0..<50 {
            let original = value(0)
            let text = original.json
            #expect(try QMPValue(json: text) == original, "seed \(seed): \(text)")
            // Foundation reads some fractions a last digit off (ours are Swift's correctly rounded
            // Double(String)): its reading must agree, numbers to within 1e-12.
            #expect(Self.nearlyEqual(try Self.foundation(text), original), "seed \(seed): \(text)")
        }
    }
}
