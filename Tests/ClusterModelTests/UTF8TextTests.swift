// Strings from bytes: the ASCII fast path agrees with the standard library's validation.
import ClusterModel
import Testing

private func decoded(_ bytes: [UInt8]) -> String? {
    bytes.withUnsafeBufferPointer { validatedUTF8String($0) }
}

/// Every length around the eight-byte steps, with one byte placed at every position: valid
/// multi-byte characters decode as the standard library decodes them, and a byte that makes the
/// text invalid (a lone continuation byte, 0xFF, a truncated sequence) gives nil wherever it is —
/// so a word of the fast path that missed a high bit would show.
@Test(arguments: 0..<20)
func decodesAsTheStandardLibraryWherever(length: Int) {
    let plain = Array(repeating: UInt8(ascii: "a"), count: length)
    #expect(decoded(plain) == String(repeating: "a", count: length))
    for position in 0...length {
        for insert: [UInt8] in [[0xC3, 0xA9], [0xF0, 0x9F, 0x9A, 0xA2], [0x80], [0xFF], [0xE2, 0x82], [0xC0, 0xAF]] {
            var bytes = plain
            bytes.insert(contentsOf: insert, at: position)
            let expected = String(validating: bytes, as: UTF8.self)
            #expect(decoded(bytes) == expected, "\(insert) at \(position) of \(length)")
        }
    }
}

@Test func emptyAndControlCharactersAreText() {
    #expect(decoded([]) == "")
    #expect(decoded([0x00, 0x09, 0x0A, 0x7F]) == "\u{0}\t\n\u{7F}")
}
