import FlotillaCLI
import FlotillaTestKit
// `flotilla local up --detach`, the CLI against it, a second `up` on the same directory, `local down`.
import Foundation
import Guests
import TestSupport
import Testing

/// Runs `flotilla` in `directory`; returns its exit status, standard output and standard error.
func flotilla(_ arguments: [String], in directory: String) throws -> (status: Int32, out: String, err: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: ProcessCluster.executable)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read before waiting, so a full pipe never blocks the child.
    let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let error = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output, error)
}

/// A port base for `local up` whose API and peer ports (base + 1…3, base + 101…103) are free: a
/// base whose ports another process holds makes a node exit at start-up.
private func localPortBase() throws -> String {
    String(
        try freeLoopbackPortBase(
            offsets: [1, 2, 3, 101, 102, 103], among: (0..<400).map { 20_000 + $0 * 100 }))
}

/// The nodes' logs of a local cluster in `directory`, for a failure's message.
private func nodeLogs(_ directory: String) -> String {
    (1...3).map { node in
        let log = (try? String(contentsOfFile: "\(directory)/.flotilla/n\(node).log", encoding: .utf8)) ?? ""
        return "--- n\(node).log\n" + log.split(separator: "\n").suffix(15).joined(separator: "\n")
    }.joined(separator: "\n")
}

/// Waits (up to 30 s) until journal `i` of `disks` holds at least `minimum(i)` records.
private func waitForJournals(_ disks: [String], _ what: String, minimum: (Int) -> Int) throws {
    let deadline = Date() + 30
    while true {
        let counts = disks.map { (try? DiskJournal.read(path: $0).records.count) ?? 0 }
        if counts.indices.allSatisfy({ counts[$0] >= minimum($0) }) { return }
        guard Date() < deadline else {
            Issue.record("not within 30 s: \(what); records: \(counts)")
            return
        }
        Thread.sleep(forTimeInterval: 0.1)
    }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct LocalClusterTests {
    @Test func localUpDetachedServesTheDemoToTheCLIAndComesUpAgainOnTheSameDirectory() throws {
        let directory = NSTemporaryDirectory() + "flotilla-local-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer {
            _ = try? flotilla(["local", "down"], in: directory)
            try? FileManager.default.removeItem(atPath: directory)
        }
        // A base unlikely to collide with other clusters on this machine (ports base+1… and base+101…).
        let base = try localPortBase()

        // A pids file left from before a reboot, whose pids other programs now have (here a
        // `sleep`): `local down` signals none of them, and `local up` is not refused for them.
        let stranger = Process()
        stranger.executableURL = URL(fileURLWithPath: "/bin/sleep")
        stranger.arguments = ["120"]
        try stranger.run()
        defer { stranger.terminate() }
        try FileManager.default.createDirectory(atPath: directory + "/.flotilla", withIntermediateDirectories: true)
        try "\(stranger.processIdentifier)\n\(getpid())\n".write(
            toFile: directory + "/.flotilla/pids", atomically: true, encoding: .utf8)
        #expect(try flotilla(["local", "down"], in: directory).out == "no local cluster is running from .flotilla\n")
        #expect(stranger.isRunning)

        let up = try flotilla(["local", "up", "--detach", "--port-base", base], in: directory)
        #expect(up.status == 0, "\(up.out)\(up.err)")
        #expect(up.out.contains("created volume csv1") && up.out.contains("created VM Sales"))

        // The CLI finds the cluster from .flotilla/cluster.json in the working directory.
        let status = try flotilla(["status"], in: directory)
        #expect(status.status == 0, "\(status.err)")
        #expect(status.out.contains("leader n"))
        for name in ["Finance", "Engineering", "Sales"] {
            let line = status.out.split(separator: "\n").first { $0.hasPrefix(name + " ") }
            #expect(line?.contains("running") == true && line?.contains("1G       512M  4G") == true, "\(status.out)")
        }
        let vms = try flotilla(["vms", "--json"], in: directory)
        let decoded = try JSONSerialization.jsonObject(with: Data(vms.out.utf8)) as? [[String: Any]]
        #expect(decoded?.compactMap { $0["name"] as? String } == ["Engineering", "Finance", "Sales"])

        // An error is one line on standard error and a non-zero exit.
        let taken = try flotilla(["vm", "create", "Sales", "--startup", "1G", "--volume", "csv1"], in: directory)
        #expect(taken.status != 0)
        #expect(taken.err == "flotilla: conflict: the name Sales is taken by vm3; pick another name\n")
        // So is a usage mistake: what was wrong, and where the usage is.
        let missing = try flotilla(["vm", "create", "Web", "--volume", "csv1"], in: directory)
        #expect(missing.status != 0)
        #expect(
            missing.err
                == "flotilla: Missing expected argument '--startup <startup>' (`flotilla help <command>` shows the usage)\n"
        )
        #expect(try flotilla(["vm", "create", "--help"], in: directory).out.contains("USAGE: flotilla vm create"))

        // The demo VMs really run: each owner appends to its VM's journal on the shared root.
        let disks = ["finance", "engineering", "sales"].map { "\(directory)/.flotilla/shared/volumes/csv1/\($0).vhdx" }
        try waitForJournals(disks, "the demo VMs write their journals") { _ in 3 }

        // Down, then up again on the same directory: the demo exists and is left as it is.
        #expect(try flotilla(["local", "down"], in: directory).out == "stopped 3 nodes\n")
        let atDown = try disks.map { try DiskJournal.read(path: $0).records.count }
        let again = try flotilla(["local", "up", "--detach", "--port-base", base], in: directory)
        #expect(again.status == 0, "\(again.out)\(again.err)")
        #expect(!again.out.contains("created"))
        // The owners replay the journals and continue them; nothing was lost, nobody wrote twice.
        try waitForJournals(disks, "the demo VMs continue their journals") { atDown[$0] + 3 }
        for disk in disks { #expect(JournalChecker.check(try DiskJournal.read(path: disk)).isEmpty, "\(disk)") }
        let nodes = try flotilla(["nodes"], in: directory)
        #expect(nodes.out.split(separator: "\n").count == 4, "\(nodes.out)")
        #expect(try flotilla(["local", "down"], in: directory).status == 0)
        #expect(stranger.isRunning)
    }
}

/// `flotilla local up --driver qemu`: the demo VMs are real guests in QEMU.
@Suite(.serialized, .timeLimit(.minutes(3)), .enabled(if: TestGuest.available, Comment(rawValue: TestGuest.missing)))
struct LocalClusterQEMUTests {
    @Test func localUpWithTheQEMUDriverBootsTheDemoVMsAsRealGuestsAndDownEndsThem() async throws {
        let directory = NSTemporaryDirectory() + "flotilla-local-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer {
            _ = try? flotilla(["local", "down"], in: directory)
            for name in LocalCluster.demoVMs {
                for process in QEMUClusterTests.qemuProcesses(of: name) { kill(process.pid, SIGKILL) }
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
        let base = try localPortBase()

        // Asked wrongly, it says what is missing and starts nothing.
        let bare = try flotilla(["local", "up", "--detach", "--port-base", base, "--driver", "qemu"], in: directory)
        #expect(bare.status != 0)
        #expect(bare.err.contains("--driver qemu needs --guest DIR"), "\(bare.err)")
        let empty = try flotilla(
            ["local", "up", "--detach", "--port-base", base, "--driver", "qemu", "--guest", directory], in: directory)
        #expect(empty.status != 0)
        #expect(empty.err.contains("vmlinuz is missing"), "\(empty.err)")

        let up = try flotilla(
            ["local", "up", "--detach", "--port-base", base, "--driver", "qemu", "--guest", TestGuest.directory],
            in: directory)
        try #require(up.status == 0, "\(up.out)\(up.err)\n\(nodeLogs(directory))")
        #expect(up.out.contains("created VM Finance (QEMU)"), "\(up.out)")
        var pids: [Int32] = []
        try await eventually("the three demo VMs boot in QEMU", within: .seconds(120), poll: .milliseconds(250)) {
            let running = LocalCluster.demoVMs.compactMap { QEMUClusterTests.qemuProcesses(of: $0).first }
            pids = running.map(\.pid)
            return running.count == 3
                && running.allSatisfy { QEMUClusterTests.console(of: $0.commandLine).contains("flotilla-guest: up") }
        }
        #expect(try flotilla(["local", "down"], in: directory).out == "stopped 3 nodes\n")
        // The nodes stop their guests as they shut down.
        for pid in pids { #expect(TestGuest.isGone(pid)) }
    }
}
