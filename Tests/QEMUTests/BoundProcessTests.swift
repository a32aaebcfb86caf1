import Foundation
import QEMU
import Testing

@Suite struct BoundProcessTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bound-\(UUID().uuidString)").path

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    @Test func aChildsOutputAndExitStatusAreKept() async throws {
        let output = directory + "/out.log"
        let process = try await BoundProcess.start(
            executable: "/bin/sh", arguments: ["-c", "echo to-out; echo to-err >&2; exit 3"], outputPath: output)
        #expect(await process.waitForExit() == .exited(3))
        #expect(process.hasExited)
        #expect(try String(contentsOfFile: output, encoding: .utf8) == "to-out\nto-err\n")
    }

    @Test func aSignalEndsTheChildAndIsReportedAndAfterItsEndSignalsGoNowhere() async throws {
        let process = try await BoundProcess.start(
            executable: "/bin/sleep", arguments: ["600"], outputPath: directory + "/out.log")
        process.signal(SIGKILL)
        #expect(await process.waitForExit() == .signalled(SIGKILL))
        process.signal(SIGKILL)  // reaped: its pid is no longer ours, nothing is sent
    }

    @Test func aChildRunsInAProcessGroupOfItsOwnWithNothingInheritedButStdio() async throws {
        let output = directory + "/out.log"
        // The child's open descriptors and its process group, as it sees them.
        let process = try await BoundProcess.start(
            executable: "/bin/sh",
            arguments: ["-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; cut -d' ' -f5 /proc/$$/stat"],
            outputPath: output)
        #expect(await process.waitForExit() == .exited(0))
        let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
        // 0-2 are stdio; 3 is the directory `ls` itself opens.
        #expect(lines.first == "0 1 2 3 ")
        #expect(Int32(lines.last!.trimmingCharacters(in: .whitespaces)) == process.pid)
    }

    @Test func aProgramThatCannotBeRunEndsWithStatus127AndSaysWhy() async throws {
        let output = directory + "/out.log"
        let process = try await BoundProcess.start(
            executable: directory + "/no-such-qemu", arguments: [], outputPath: output)
        #expect(await process.waitForExit() == .exited(127))
        let reason = try String(contentsOfFile: output, encoding: .utf8)
        #expect(reason == "flotilla: \(directory)/no-such-qemu failed, errno 2\n")
    }
}
