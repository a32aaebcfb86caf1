// The request bodies the server reads and every client writes: sizes as numbers or as text.
import FlotillaAPI
import Foundation
import Testing

private let mib: UInt64 = 1 << 20
private let gib: UInt64 = 1 << 30

@Test func aVMCreationReadsSizesAsBytesOrAsText() throws {
    let body = #"{"name": "Finance", "startup": "1G", "minimum": 536870912, "maximum": "4GiB", "volume": "csv1"}"#
    let creation = try JSONDecoder().decode(VMCreation.self, from: Data(body.utf8))
    #expect(creation == VMCreation(name: "Finance", startup: gib, minimum: 512 * mib, maximum: 4 * gib, volume: "csv1"))
}

@Test func aVMCreationIsWrittenWithSizesInBytesAndReadBackTheSame() throws {
    let creation = VMCreation(
        name: "Sales", startup: 2 * gib, buffer: 25, priority: 80, restartPriority: "low", preferredOwners: ["n2"],
        antiAffinityClass: "web", volume: "csv2", diskFile: "sales.vhdx")
    let written = try JSONEncoder().encode(creation)
    #expect(String(decoding: written, as: UTF8.self).contains("\"startup\":\(2 * gib)"))
    #expect(try JSONDecoder().decode(VMCreation.self, from: written) == creation)
}

@Test func aSizeThatIsNotOneNamesItsFieldAndTheForm() {
    let body = #"{"name": "X", "startup": "1X", "volume": "csv1"}"#
    #expect {
        try JSONDecoder().decode(VMCreation.self, from: Data(body.utf8))
    } throws: { error in
        guard case DecodingError.dataCorrupted(let context) = error else { return false }
        return context.codingPath.map(\.stringValue) == ["startup"]
            && context.debugDescription
                == #"size "1X" is not a size; write it like 512M, 1G, 1.5G or a number of bytes"#
    }
}

@Test func aMemoryChangeCarriesOnlyWhatChanges() throws {
    let change = try JSONDecoder().decode(MemoryChange.self, from: Data(#"{"maximum": "8G", "buffer": 30}"#.utf8))
    #expect(change == MemoryChange(maximum: 8 * gib, buffer: 30))
    #expect(try JSONDecoder().decode(MemoryChange.self, from: Data("{}".utf8)) == MemoryChange())
}

@Test func anErrorBodyHasItsNameAndDetail() throws {
    let problem = try JSONDecoder().decode(
        APIProblem.self, from: Data(#"{"error": "no_leader", "detail": "retry in a moment"}"#.utf8))
    #expect(problem == APIProblem(error: APIProblem.noLeader, detail: "retry in a moment"))
}
