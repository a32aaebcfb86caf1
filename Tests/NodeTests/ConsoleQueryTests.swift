// `GET /v1/vms/{name}/console`'s parameters: the tail by default, an offset to follow, and refusals.
import HTTP2
import Testing

@testable import Node

@Suite struct ConsoleQueryTests {
    @Test func theTailByDefaultAndAnOffsetAndLimitWhenGiven() throws {
        #expect(try ConsoleQuery(query: nil) == ConsoleQuery(offset: nil, limit: 16 << 10))
        #expect(try ConsoleQuery(query: "offset=120&limit=4096") == ConsoleQuery(offset: 120, limit: 4096))
        #expect(try ConsoleQuery(query: "limit=1048576&stale=true") == ConsoleQuery(offset: nil, limit: 1 << 20))
    }

    @Test func badValuesAreRefusedWithWhatWasWrong() {
        let cases: [(String, String)] = [
            ("offset=-1", "bad_offset"), ("offset=", "bad_offset"), ("limit=0", "bad_limit"),
            ("limit=1048577", "bad_limit"), ("limit=lots", "bad_limit"), ("lines=10", "bad_query"),
        ]
        for (query, name) in cases {
            do {
                _ = try ConsoleQuery(query: query)
                Issue.record("\(query) was taken")
            } catch {
                #expect(error.status == 400 && error.error == name, "\(query): \(error)")
            }
        }
        #expect(throws: HTTPError.self) { try ConsoleQuery(query: "lines=10") }
        do {
            _ = try ConsoleQuery(query: "lines=10")
        } catch {
            #expect(error.detail == "unknown parameter lines; the console takes offset=BYTES and limit=BYTES")
        }
    }
}
