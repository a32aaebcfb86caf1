// HTTPFields stores names lower-cased whatever the caller wrote, and looks them up case-blind.
import HTTP2
import Testing

@Test func fieldNamesAreStoredLowercased() {
    var fields: HTTPFields = ["Content-Type": "application/json", "x-already-lower": "1", "ÉTAG-X": "2"]
    fields.append(name: "X-Request-ID", value: "c1/7")
    #expect(fields.map(\.name) == ["content-type", "x-already-lower", "étag-x", "x-request-id"])
    #expect(fields["CONTENT-TYPE"] == "application/json")
    #expect(fields["content-type"] == "application/json")
    #expect(fields["x-request-id"] == "c1/7")
    #expect(fields["Étag-X"] == "2")
    #expect(fields.values(for: "X-Already-Lower") == ["1"])
    fields["Content-Type"] = "text/plain"
    #expect(fields.map(\.name) == ["x-already-lower", "étag-x", "x-request-id", "content-type"])
    #expect(fields["content-type"] == "text/plain")
    fields["CONTENT-type"] = nil
    #expect(fields["content-type"] == nil)
    #expect(fields.count == 3)
}
