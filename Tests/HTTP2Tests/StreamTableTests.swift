// The connection's table of open streams: found by id, kept in id order, whatever order they come in.
import NIOCore
import Testing

@testable import HTTP2

@Suite struct StreamTableTests {
    private func stream(_ id: Int32) -> NGHTTP2Stream { NGHTTP2Stream(id: id, now: .now()) }

    @Test func streamsAreFoundByIdAndRemovedOnce() {
        var table = StreamTable()
        #expect(table.isEmpty && table[1] == nil && table.remove(1) == nil)
        for id in stride(from: Int32(1), through: 99, by: 2) { table.insert(self.stream(id)) }
        #expect(table.all.map(\.id) == Array(stride(from: Int32(1), through: 99, by: 2)))
        for id in stride(from: Int32(1), through: 99, by: 2) { #expect(table[id]?.id == id) }
        #expect(table[0] == nil && table[2] == nil && table[100] == nil && table[101] == nil)
        #expect(table.remove(51)?.id == 51)
        #expect(table.remove(51) == nil && table[51] == nil)
        #expect(table[49]?.id == 49 && table[53]?.id == 53)
        #expect(table.remove(1)?.id == 1 && table.remove(99)?.id == 99)
        #expect(table.all.count == 47 && table.all.first?.id == 3 && table.all.last?.id == 97)
        #expect(table.removeAll().count == 47 && table.isEmpty)
    }

    @Test func anOutOfOrderStreamIsInsertedInPlaceAndASecondWithItsIdReplacesIt() {
        var table = StreamTable()
        for id: Int32 in [5, 9, 1, 7, 3] { table.insert(self.stream(id)) }
        #expect(table.all.map(\.id) == [1, 3, 5, 7, 9])
        let replacement = self.stream(7)
        table.insert(replacement)
        #expect(table.all.count == 5 && table[7] === replacement)
        #expect(table.all.map(\.id) == [1, 3, 5, 7, 9])
    }
}
