// Tests of the shared identifiers: how node ids are written and read back.
import ClusterModel
import Testing

@Test(arguments: ["n1", "1", "n42", "18446744073709551615"])
func nodeIDParsesWhatItPrints(text: String) throws {
    let id = try #require(NodeID(parsing: text))
    #expect(NodeID(parsing: id.description) == id)
}

@Test(arguments: ["", "n", "n0", "0", "x1", "n-1", "n1.5", "n１", "18446744073709551616"])
func nodeIDRejectsMalformedText(text: String) {
    #expect(NodeID(parsing: text) == nil)
}

@Test func logIndexArithmeticNeverUnderflows() {
    let five: LogIndex = 5
    #expect(five + 2 == 7)
    #expect(five - 5 == LogIndex(0))
    #expect((five - LogIndex(3)) == 2)
    #expect((LogIndex(3) - five) == 0)
    #expect(Term(4).next == 5)
}
