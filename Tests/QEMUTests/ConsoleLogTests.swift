// A guest's console read by offset: the tail, a follower's next piece, and a missing log.
import Foundation
import QEMU
import Testing

@Suite struct ConsoleLogTests {
    static func log(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("console-\(UUID()).log").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func theTailIsTheLastBytesAndAFollowerGetsWhatCameAfterItsOffset() throws {
        let path = try Self.log("booting\nflotilla-guest: up\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let tail = try ConsoleLog.read(path, from: nil, limit: 19)
        #expect(String(decoding: tail.bytes, as: UTF8.self) == "flotilla-guest: up\n")
        #expect(tail.start == 8 && tail.next == 27 && tail.size == 27)
        // A limit past the start gives the whole log.
        #expect(try ConsoleLog.read(path, from: nil, limit: 1000).bytes.count == 27)

        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("vm=web epoch=3 uptime=2\n".utf8))
        try handle.close()
        let next = try ConsoleLog.read(path, from: tail.next, limit: 1000)
        #expect(String(decoding: next.bytes, as: UTF8.self) == "vm=web epoch=3 uptime=2\n")
        #expect(next.start == 27 && next.next == 51 && next.size == 51)
        // In pieces of at most `limit` bytes.
        let piece = try ConsoleLog.read(path, from: 27, limit: 6)
        #expect(String(decoding: piece.bytes, as: UTF8.self) == "vm=web" && piece.next == 33)
        // Nothing new yet, or an offset past the end (another guest's): nothing, at the end.
        let none = try ConsoleLog.read(path, from: 51, limit: 1000)
        #expect(none.bytes.isEmpty && none.start == 51 && none.next == 51)
        let past = try ConsoleLog.read(path, from: 9_999, limit: 1000)
        #expect(past.bytes.isEmpty && past.start == 51)
    }

    @Test func aMissingLogIsAnErrorThatNamesItAndTheTailIsEmpty() {
        #expect(throws: ConsoleLogError(description: "no console log at /nonexistent/console.log")) {
            try ConsoleLog.read("/nonexistent/console.log", from: nil, limit: 10)
        }
        #expect(ConsoleLog.tail(of: "/nonexistent/console.log", bytes: 10) == "")
    }
}
