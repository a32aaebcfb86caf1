// Which accelerator this host's guests run on: KVM only where it really runs a guest.
import Foundation
import NIOConcurrencyHelpers

/// What a host can run guests with, and why.
public struct QEMUHostFacts: Sendable, Hashable {
    public var accelerator: QEMUAccelerator
    /// Why this accelerator, in words for the node's log and its API.
    public var reason: String

    public init(accelerator: QEMUAccelerator, reason: String) {
        self.accelerator = accelerator
        self.reason = reason
    }
}

/// How the KVM probe went: a kernel booted under KVM to its end, or not.
public enum KVMProbeOutcome: Sendable, Hashable {
    /// The kernel ran to its deliberate panic and QEMU exited (`-no-reboot`), after this long.
    case booted(Duration)
    /// QEMU exited without the kernel reaching its end (the text says how).
    case failed(String)
    /// Still running at the probe's limit: KVM is there but does not run guests (seen under nested
    /// virtualization, where a guest hangs right after its boot loader).
    case hung(Duration)
}

public enum QEMUHost {
    /// The arguments of the KVM probe: the guest kernel without a root file system, so it boots,
    /// panics at once (`panic=-1` reboots, `-no-reboot` makes the reboot end QEMU) and QEMU exits
    /// 0. Under working KVM that takes well under a second; software emulation takes ~5 s here.
    public static func kvmProbeArguments(kernel: String, consoleLog: String) -> [String] {
        [
            "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-kernel", kernel, "-append", "console=ttyS0 panic=-1",
            "-chardev", "file,id=console,path=\(QEMUMachine.escaped(consoleLog))", "-serial", "chardev:console",
        ]
    }

    /// The accelerator from what was found: KVM only when its device opens and the probe's kernel
    /// booted under it; otherwise TCG, saying why.
    public static func decide(kvmDevice: String?, probe: KVMProbeOutcome?) -> QEMUHostFacts {
        guard kvmDevice == nil else {
            return QEMUHostFacts(accelerator: .tcg, reason: "software emulation (TCG): \(kvmDevice!)")
        }
        switch probe {
        case .booted(let time):
            return QEMUHostFacts(accelerator: .kvm, reason: "KVM: a probe kernel booted under it in \(time)")
        case .failed(let how):
            return QEMUHostFacts(
                accelerator: .tcg, reason: "software emulation (TCG): KVM failed to boot a kernel: \(how)")
        case .hung(let limit):
            return QEMUHostFacts(
                accelerator: .tcg,
                reason:
                    "software emulation (TCG): /dev/kvm opens but a kernel under KVM did not boot within \(limit) (nested virtualization without guest support?)"
            )
        case nil:
            return QEMUHostFacts(accelerator: .tcg, reason: "software emulation (TCG): KVM was not probed")
        }
    }

    /// Probes this host: opens /dev/kvm, then boots `kernel` under KVM for at most `limit`.
    /// `scratch` holds the probe's console log (kept for a look after a failure).
    public static func detect(
        executable: String, kernel: String, scratch: String, limit: Duration = .seconds(15)
    ) async -> QEMUHostFacts {
        let device = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        guard device >= 0 else {
            let reason =
                errno == ENOENT
                ? "this host has no /dev/kvm" : "/dev/kvm does not open: \(String(cString: strerror(errno)))"
            return decide(kvmDevice: reason, probe: nil)
        }
        close(device)
        return decide(
            kvmDevice: nil,
            probe: await probeKVM(executable: executable, kernel: kernel, scratch: scratch, limit: limit))
    }

    package static func probeKVM(executable: String, kernel: String, scratch: String, limit: Duration) async
        -> KVMProbeOutcome
    {
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            let console = scratch + "/kvm-probe-console.log"
            let output = scratch + "/kvm-probe-qemu.log"
            try? FileManager.default.removeItem(atPath: console)
            try? FileManager.default.removeItem(atPath: output)
            let started = ContinuousClock.now
            let process = try await BoundProcess.start(
                executable: executable, arguments: kvmProbeArguments(kernel: kernel, consoleLog: console),
                outputPath: output)
            // The timer kills the probe itself: a task group waits for every child, and waiting
            // for the process does not end on cancellation.
            let timedOut = NIOLockedValueBox(false)
            let exit = await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    try? await Task.sleep(for: limit)
                    guard !Task.isCancelled else { return }
                    timedOut.withLockedValue { $0 = true }
                    process.signal(SIGKILL)
                }
                let exit = await process.waitForExit()
                group.cancelAll()
                return exit
            }
            if timedOut.withLockedValue({ $0 }) { return .hung(limit) }
            let text = (try? String(contentsOfFile: console, encoding: .utf8)) ?? ""
            if exit == .exited(0) && text.contains("Kernel panic") { return .booted(ContinuousClock.now - started) }
            // QEMU's last words on one line, for a log line or an API field.
            let said = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
                .split(whereSeparator: \.isNewline).suffix(2).joined(separator: " / ")
            return .failed("QEMU \(exit)" + (said.isEmpty ? "" : ": \(said.suffix(300))"))
        } catch {
            return .failed("\(error)")
        }
    }
}
