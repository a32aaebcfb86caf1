// Real processes: a node whose data directory holds a newer format refuses to start, and says why.
import FlotillaClient
import Foundation
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct UpgradeProcessTests {
    /// A write-ahead log segment stamped with the next format version (as a newer build would
    /// write it) stops the node at start, exit status non-zero, with both versions in its log; the
    /// data is left as it was, so the same directory starts again once the segment is readable.
    @Test func aNodeRefusesToStartOnAWriteAheadLogOfANewerFormat() async throws {
        let cluster = try ProcessCluster(size: 1)
        try cluster.startAll()
        _ = try await cluster.awaitLeader()
        try await cluster.client(1).setSetting("upgrade.kept", to: "yes")
        #expect(cluster.terminate(1) == 0)
        #expect(cluster.log(of: 1).contains("n1 formats: data-dir=1 wal=1 raft-snapshot=1 entry=9 state=6"))

        let wal = cluster.directory + "/n1/raft/wal"
        let segments = try FileManager.default.contentsOfDirectory(atPath: wal).filter { $0.hasSuffix(".wal") }.sorted()
        let segment = wal + "/" + (try #require(segments.first))
        var bytes = try Data(contentsOf: URL(fileURLWithPath: segment))
        #expect(bytes.prefix(8) == Data("FLOTWAL1".utf8))
        bytes[7] = UInt8(ascii: "2")
        try bytes.write(to: URL(fileURLWithPath: segment))

        try cluster.start(1)
        #expect(cluster.waitForExit(1) != 0, "a node must not start on a format newer than it reads")
        let expected =
            "write-ahead log segment \(segment) is write-ahead log format 2; this build reads up to 1: "
            + "upgrade this node (docs/operations.md, Upgrades)"
        let log = cluster.log(of: 1)
        #expect(log.contains("n1 stopped: \(expected)"), "\(log.suffix(2000))")
        #expect(try Data(contentsOf: URL(fileURLWithPath: segment)) == bytes, "the refused segment was changed")

        // Nothing was lost: with the segment as this build wrote it, the node starts with its data.
        bytes[7] = UInt8(ascii: "1")
        try bytes.write(to: URL(fileURLWithPath: segment))
        try cluster.start(1)
        _ = try await cluster.awaitLeader()
        #expect(try await cluster.client(1).settings()["upgrade.kept"] == "yes")
        await cluster.close()
    }
}
