// A real guest's QEMU process never outlives the flotilla process that started it.
import Foundation
import TestSupport
import Testing

@Suite(.serialized, .timeLimit(.minutes(3)), .enabled(if: TestGuest.available, Comment(rawValue: TestGuest.missing)))
struct QEMUProcessTests {
    /// Starts `flotilla guest try` on the test guest; its output goes to `directory`/out.log.
    func startTrial(in directory: String) throws -> (Process, String) {
        let log = directory + "/out.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ProcessCluster.executable)
        process.arguments = [
            "guest", "try", "--kernel", TestGuest.kernel, "--initrd", TestGuest.initrd, "--accel", "tcg",
            "--append", "quiet flotilla.vm=trial", "--memory", "128M", "--dir", directory + "/guest",
        ]
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = output
        process.standardError = output
        try process.run()
        return (process, log)
    }

    /// Ends a trial the test did not see end (it failed halfway), so no guest outlives the test.
    static func reap(_ trial: Process) {
        if trial.isRunning { kill(trial.processIdentifier, SIGKILL) }
    }

    /// The QEMU pid `flotilla guest try` printed, once its guest's console said it is up.
    func qemuPid(_ log: String) async throws -> Int32 {
        var pid: Int32?
        try await eventually(
            "the guest boots and its QEMU pid is printed", within: .seconds(90), poll: .milliseconds(100)
        ) {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: "QEMU pid ") {
                pid = Int32(text[range.upperBound...].prefix { $0.isNumber })
            }
            return pid != nil && text.contains("console: flotilla-guest: up")
        }
        return try #require(pid)
    }

    @Test func aSIGKILLedFlotillaTakesItsQEMUWithIt() async throws {
        let directory = try TestGuest.scratch()
        let (trial, log) = try startTrial(in: directory)
        defer { Self.reap(trial) }
        let qemu = try await qemuPid(log)
        defer { if !TestGuest.isGone(qemu) { kill(qemu, SIGKILL) } }
        #expect(!TestGuest.isGone(qemu))
        kill(trial.processIdentifier, SIGKILL)
        try await eventually("flotilla ends") { !trial.isRunning }
        try await eventually("QEMU (pid \(qemu)) ends with the process that started it") { TestGuest.isGone(qemu) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    @Test func ctrlCStopsTheGuestAndThenFlotilla() async throws {
        let directory = try TestGuest.scratch()
        let (trial, log) = try startTrial(in: directory)
        defer { Self.reap(trial) }
        let qemu = try await qemuPid(log)
        defer { if !TestGuest.isGone(qemu) { kill(qemu, SIGKILL) } }
        kill(trial.processIdentifier, SIGINT)
        try await eventually("flotilla stops its guest and exits") { !trial.isRunning }
        #expect(trial.terminationStatus == 0)
        #expect(TestGuest.isGone(qemu))
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text.hasSuffix("stopped\n"))
        try? FileManager.default.removeItem(atPath: directory)
    }
}
