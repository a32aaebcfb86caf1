// The request methods and field names the server recognises as constants instead of decoding them.
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

    @Test func commonFieldNamesAreConstantsAndOthersAreNot() {
        for name in ["accept", "user-agent", "content-type", "content-length", "accept-encoding"] {
            #expect(decoded(name, knownFieldName) == name)
        }
        for other in ["accepts", "user-agenT", "content-typf", "x-request-id", "content-lengthy", ""] {
            #expect(decoded(other, knownFieldName) == nil)
        }
    }
}
