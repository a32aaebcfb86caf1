// The hand-written JSON of the settings write path agrees with Foundation's coders.
import FlotillaAPI
import Foundation
import Testing

@testable import Node

private let awkwardTexts = [
    "", "plain", "with \"quotes\" and \\backslashes\\", "line\nbreak\r\ttab", "\u{0}\u{1}\u{1F}\u{7F}",
    "slash/and ünïcödé and 🚢", String(repeating: "v", count: 4096),
]

@Test(arguments: awkwardTexts)
func anEncodedSettingDecodesToTheSameView(text: String) throws {
    for view in [
        SettingView(key: "k", value: text, previous: nil), SettingView(key: "k", value: nil, previous: text),
        SettingView(key: "k/\(text.prefix(8))", value: text, previous: text + "x"),
    ] {
        let encoded = SettingJSON.encode(view)
        #expect(try JSONDecoder().decode(SettingView.self, from: Data(encoded.utf8)) == view, "\(encoded)")
        #expect(!encoded.utf8.contains { $0 < 0x20 }, "raw control character in \(encoded)")
    }
}

@Test func theFastReaderTakesSimpleBodiesAndLeavesTheRestToJSONDecoder() {
    #expect(SettingJSON.simpleValue(in: Array(#"{"value":"v1"}"#.utf8)) == "v1")
    #expect(SettingJSON.simpleValue(in: Array(" {\n \"value\" :\t\"ünï 🚢\" } \n".utf8)) == "ünï 🚢")
    #expect(SettingJSON.simpleValue(in: Array(#"{"value":""}"#.utf8)) == "")
    // Escapes, other shapes, trailing bytes and invalid UTF-8: not for the fast path.
    for body in [
        #"{"value":"a\"b"}"#, #"{"value":"a\nb"}"#, #"{"value":1}"#, #"{"value":"v","other":1}"#,
        #"{"other":"v"}"#, #"{"value":"v"} x"#, #"{"value":"v""#, "", "[]",
    ] {
        #expect(SettingJSON.simpleValue(in: Array(body.utf8)) == nil, "\(body)")
    }
    #expect(SettingJSON.simpleValue(in: Array(#"{"value":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8)) == nil)
}

/// The word-at-a-time scan finds the first quote, backslash or control character exactly where a
/// byte-by-byte scan does: every special byte and a neighbour of each class, at every position of
/// texts around the eight-byte steps, after plain ASCII or bytes of 0x80 and above.
@Test func theScanForEscapesFindsTheFirstSpecialByteWhereverItIs() {
    let special: [UInt8] = [0x00, 0x01, 0x1F, 0x22, 0x5C]
    let ordinary: [UInt8] = [0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F, 0x80, 0xC3, 0xFF]
    func naive(_ bytes: [UInt8]) -> Int? { bytes.firstIndex { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 } }
    func scanned(_ bytes: [UInt8]) -> Int? { bytes.withUnsafeBufferPointer { SettingJSON.firstEscaped(in: $0) } }
    for length in 0..<36 {
        for filler in ordinary {
            let plain = Array(repeating: filler, count: length)
            #expect(scanned(plain) == nil, "\(length) bytes of \(filler)")
            for position in 0..<length {
                for byte in special + ordinary {
                    var bytes = plain
                    bytes[position] = byte
                    #expect(scanned(bytes) == naive(bytes), "\(byte) at \(position) of \(length) bytes of \(filler)")
                }
            }
        }
    }
}
