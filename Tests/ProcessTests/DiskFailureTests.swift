// A node whose disk fails stops with a reason instead of acknowledging what it cannot keep.
import FlotillaClient
import Foundation
import Node
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)), .enabled(if: getuid() == 0, "mounting a small tmpfs needs root"))
struct DiskFailureTests {
    @Test func aNodeWhoseDiskFillsUpExitsWithAnErrorAndAcknowledgesNothingAfter() async throws {
        let cluster = try ProcessCluster(size: 1)
        let dataDirectory = cluster.directory + "/n1"
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        try run("/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dataDirectory)
        defer { try? run("/bin/umount", "-l", dataDirectory) }

        try cluster.startAll()
        _ = try await cluster.awaitLeader()
        let value = String(repeating: "x", count: 60_000)
        var acknowledged = 0
        var refused = false
        for number in 0..<40 {
            do {
                try await cluster.client(1).setSetting("big-\(number)", to: value)
                acknowledged += 1
            } catch {
                refused = true
                break
            }
        }
        #expect(refused, "the node kept acknowledging writes on a full disk")
        #expect(acknowledged > 0)
        let status = cluster.waitForExit(1)
        #expect(status != 0, "a node whose disk failed must exit with an error")
        let log = try String(contentsOfFile: cluster.directory + "/n1.log", encoding: .utf8)
        #expect(log.contains("cannot go on"), "\(log.suffix(2000))")
        await cluster.close()
    }
}

private func run(_ executable: String, _ arguments: String...) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ProcessClusterError(description: "\(executable) \(arguments.joined(separator: " ")) failed")
    }
}
