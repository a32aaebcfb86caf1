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
        [qemu, qemuImg, kernel, initrd].allSatisfy { FileManager.default.fileExists(atPath: $0) }
    }

    public static let qemuImg = "/usr/bin/qemu-img"

    public static let missing =
        "needs QEMU (qemu-system-x86_64, qemu-img) and the test guest: FLOTILLA_QEMU_DEPS=1 scripts/install-deps.sh, then scripts/build-test-guest.sh .build/test-guest"

    /// The last uptime the test guest printed on `console` (`flotilla-guest: … uptime=N …`).
    public static func lastUptime(_ console: String) -> Int? {
        console.components(separatedBy: "uptime=").dropFirst().last.flatMap { Int($0.prefix { $0.isNumber }) }
    }

    /// What the boot sector of `bootableImage` prints on the first serial port.
    public static let bootSectorGreeting = "flotilla-image: booted"

    /// Writes a 1 MiB disk image whose boot sector prints `bootSectorGreeting` on the first serial
    /// port (COM1, 0x3F8) and halts: a guest that boots its disk, for the tests. Raw, or qcow2
    /// (converted with qemu-img) when `qcow2` is set.
    public static func bootableImage(at path: String, qcow2: Bool = false) throws {
        // cld; xor ax,ax; mov ds,ax; mov dx,0x3F8; mov si,0x7C17; next: lodsb; test al,al; jz done;
        // out dx,al; jmp next; done: cli; hlt; jmp done — then the text at 0x7C17.
        var sector: [UInt8] = [
            0xFC, 0x31, 0xC0, 0x8E, 0xD8, 0xBA, 0xF8, 0x03, 0xBE, 0x17, 0x7C, 0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE,
            0xEB, 0xF8, 0xFA, 0xF4, 0xEB, 0xFD,
        ]
        sector += Array((bootSectorGreeting + "\r\n").utf8) + [0]
        sector += [UInt8](repeating: 0, count: 510 - sector.count) + [0x55, 0xAA]
        let raw = qcow2 ? path + ".raw" : path
        try Data(sector + [UInt8](repeating: 0, count: (1 << 20) - 512)).write(to: URL(fileURLWithPath: raw))
        guard qcow2 else { return }
        let convert = Process()
        convert.executableURL = URL(fileURLWithPath: qemuImg)
        convert.arguments = ["convert", "-f", "raw", "-O", "qcow2", raw, path]
        try convert.run()
        convert.waitUntilExit()
        try? FileManager.default.removeItem(atPath: raw)
        guard convert.terminationStatus == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "qemu-img convert failed"])
        }
    }

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
