// The small real Linux guest the QEMU tests boot, and QEMU to boot it.
import Foundation

/// scripts/build-test-guest.sh makes it; scripts/run-tests.sh builds it into .build/test-guest
/// (FLOTILLA_TEST_GUEST names another directory).
public enum TestGuest {
    public static let directory: String = {
        if let named = ProcessInfo.processInfo.environment["FLOTILLA_TEST_GUEST"] { return named }
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return package.appendingPathComponent(".build/test-guest").path
    }()
    public static let kernel = directory + "/vmlinuz"
    public static let initrd = directory + "/initramfs.cpio.gz"
    public static let qemu = "/usr/bin/qemu-system-x86_64"

    /// Whether a real guest can boot here. Suites that need one skip with a reason that says "needs
    /// QEMU", and scripts/run-tests.sh fails a run that must run everything when one does.
    public static var available: Bool {
        [qemu, kernel, initrd].allSatisfy { FileManager.default.fileExists(atPath: $0) }
    }

    public static let missing =
        "needs QEMU (qemu-system-x86_64) and the test guest: FLOTILLA_QEMU_DEPS=1 scripts/install-deps.sh, then scripts/build-test-guest.sh .build/test-guest"

    /// Whether process `pid` is gone (ended; a zombie waiting for whoever reaps it counts as gone).
    public static func isGone(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        // The state follows the command name's closing parenthesis.
        guard let close = stat.lastIndex(of: ")") else { return false }
        return stat[close...].dropFirst(2).first == "Z"
    }

    /// A short directory for a guest's files (a UNIX socket's path has at most 107 bytes).
    public static func scratch() throws -> String {
        let path = "/tmp/fl-qemu-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
