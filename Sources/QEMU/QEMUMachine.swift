// What a QEMU guest is made of, checked before any process starts, and the command line that runs it.
// Pure: no files are looked at here (the shell checks that the paths exist).

/// The accelerator a guest runs on: the host's KVM, or QEMU's software emulation (TCG).
public enum QEMUAccelerator: String, Sendable, Hashable, Codable, CaseIterable {
    case kvm
    case tcg
}

/// A disk image the guest opens (on a Cluster Shared Volume in a cluster).
public struct QEMUDisk: Sendable, Hashable, Codable {
    public enum Format: String, Sendable, Hashable, Codable, CaseIterable {
        case raw
        case qcow2
    }

    public var path: String
    public var format: Format
    public var readOnly: Bool

    public init(path: String, format: Format, readOnly: Bool = false) {
        self.path = path
        self.format = format
        self.readOnly = readOnly
    }
}

/// A device a guest may have besides its balloon and disks: the allow-list. Each is a fixed set of
/// QEMU arguments that reads nothing of the host beyond what is named here.
public enum QEMUExtraDevice: String, Sendable, Hashable, Codable, CaseIterable {
    /// A virtio entropy source fed from the host's /dev/urandom.
    case virtioRNG = "virtio-rng"
    /// An i6300esb watchdog: a guest that arms it and stops feeding it is reset by QEMU.
    case watchdog

    var arguments: [String] {
        switch self {
        case .virtioRNG:
            ["-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0"]
        case .watchdog:
            ["-device", "i6300esb,id=watchdog0", "-action", "watchdog=reset"]
        }
    }
}

/// A guest as QEMU runs it: processors, memory, what it boots, its disks.
public struct QEMUMachine: Sendable, Hashable, Codable {
    /// The smallest memory a guest is given: below it the Linux kernel does not boot.
    public static let minimumMemory: UInt64 = 32 << 20
    /// The largest: far beyond any host here; a bound against typos such as a size in KiB read as MiB.
    public static let maximumMemory: UInt64 = 1 << 40
    public static let maximumVCPUs = 64
    public static let maximumDisks = 8

    public var vcpus: Int
    /// The memory the guest boots with (whole MiB). Dynamic memory balloons it down from here.
    public var memoryBytes: UInt64
    /// A Linux kernel to boot directly (with `initrd` and `kernelArguments`); nil boots the first disk.
    public var kernel: String?
    public var initrd: String?
    public var kernelArguments: String
    public var disks: [QEMUDisk]
    /// Devices from the allow-list, each at most once.
    public var devices: [QEMUExtraDevice]

    public init(
        vcpus: Int = 1, memoryBytes: UInt64, kernel: String? = nil, initrd: String? = nil,
        kernelArguments: String = "", disks: [QEMUDisk] = [], devices: [QEMUExtraDevice] = []
    ) {
        self.devices = devices
        self.vcpus = vcpus
        self.memoryBytes = memoryBytes
        self.kernel = kernel
        self.initrd = initrd
        self.kernelArguments = kernelArguments
        self.disks = disks
    }

    /// Every reason this machine cannot run, in words an operator can act on; empty when it can.
    public var problems: [String] {
        var problems: [String] = []
        if !(1...Self.maximumVCPUs).contains(vcpus) {
            problems.append("vcpus must be 1 to \(Self.maximumVCPUs), not \(vcpus)")
        }
        let mib: UInt64 = 1 << 20
        if memoryBytes % mib != 0 {
            problems.append("memory must be a whole number of MiB, not \(memoryBytes) bytes")
        } else if memoryBytes < Self.minimumMemory || memoryBytes > Self.maximumMemory {
            problems.append("memory must be 32 MiB to 1 TiB, not \(memoryBytes / mib) MiB")
        }
        if Set(devices).count != devices.count { problems.append("a device is named twice") }
        if kernel == nil && disks.isEmpty {
            problems.append("nothing to boot: give a kernel (and initrd) or a disk image")
        }
        if kernel == nil && initrd != nil { problems.append("an initrd needs a kernel") }
        if kernel == nil && !kernelArguments.isEmpty { problems.append("kernel arguments need a kernel") }
        if disks.count > Self.maximumDisks {
            problems.append("at most \(Self.maximumDisks) disks, not \(disks.count)")
        }
        for (label, path) in [("kernel", kernel), ("initrd", initrd)] {
            if let path, let problem = Self.pathProblem(path) { problems.append("\(label): \(problem)") }
        }
        for (index, disk) in disks.enumerated() {
            if let problem = Self.pathProblem(disk.path) { problems.append("disk \(index + 1): \(problem)") }
        }
        if kernelArguments.unicodeScalars.contains(where: { $0.value < 0x20 }) {
            problems.append("kernel arguments must be one line without control characters")
        }
        return problems
    }

    static func pathProblem(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return "the path must be absolute, not \"\(path)\"" }
        if path.unicodeScalars.contains(where: { $0.value < 0x20 }) {
            return "the path must not contain control characters"
        }
        return nil
    }
}

/// Where a running guest's process keeps its control socket and console, decided by its node.
public struct QEMURuntimeFiles: Sendable, Hashable {
    /// QMP, QEMU's JSON control protocol, on a UNIX socket.
    public var controlSocket: String
    /// Everything the guest writes to its serial console.
    public var consoleLog: String

    public init(controlSocket: String, consoleLog: String) {
        self.controlSocket = controlSocket
        self.consoleLog = consoleLog
    }
}

/// How a process is to start: running, or paused until told to run (a migration's target).
public struct QEMULaunch: Sendable, Hashable {
    public var name: String
    public var accelerator: QEMUAccelerator
    /// Started stopped (`-S`): the guest runs only after `cont`.
    public var startPaused: Bool
    /// Waits for a migration stream (`-incoming defer`) instead of booting.
    public var incomingMigration: Bool

    public init(
        name: String, accelerator: QEMUAccelerator, startPaused: Bool = false, incomingMigration: Bool = false
    ) {
        self.name = name
        self.accelerator = accelerator
        self.startPaused = startPaused
        self.incomingMigration = incomingMigration
    }
}

extension QEMUMachine {
    /// What more RAM a guest under TCG is given than its memory: see `ramSize(on:)`.
    public static let tcgRAMPadding: UInt64 = 8 << 10

    /// QEMU's `-m` for the guest. Under TCG its RAM is 8 KiB more than its memory, so that the RAM
    /// is not a multiple of 256 KiB: QEMU 7.2's migration (Debian 12's) then syncs its dirty bitmap
    /// page by page, a path that also makes TCG track the next store to each page it clears. On a
    /// multiple of 256 KiB it takes a faster path that clears the bitmap without that, so stores the
    /// guest makes afterwards through its TLB are never sent again: the target runs on with stale
    /// pages (QEMU fixed it in 9.0, "physmem: Fix migration dirty bitmap coherency with TCG memory
    /// access"; measured here in docs/qemu.md). KVM tracks dirty pages itself: its guests get their
    /// memory exactly. Both ends of a migration run the same machine, so they agree on the size.
    public func ramSize(on accelerator: QEMUAccelerator) -> String {
        switch accelerator {
        case .kvm: "size=\(memoryBytes >> 20)M"
        case .tcg: "size=\((memoryBytes + Self.ramPadding(on: .tcg)) >> 10)K"
        }
    }

    /// The RAM a guest has beyond its memory on `accelerator` (`ramSize(on:)`).
    public static func ramPadding(on accelerator: QEMUAccelerator) -> UInt64 {
        accelerator == .tcg ? tcgRAMPadding : 0
    }

    /// The arguments after `qemu-system-x86_64`. Nothing from the machine reaches QEMU unescaped:
    /// paths go into `-chardev`/`-blockdev` options with their commas doubled (QEMU's escaping),
    /// devices come from this list only (a balloon, virtio disks), never from the user, and a disk
    /// image is read as the format given, with no backing file.
    public func arguments(files: QEMURuntimeFiles, launch: QEMULaunch) -> [String] {
        var arguments = [
            "-name", "guest=\(Self.escaped(launch.name)),debug-threads=on",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-accel", launch.accelerator.rawValue,
        ]
        if launch.accelerator == .kvm { arguments += ["-cpu", "host"] }
        arguments += [
            "-smp", String(vcpus),
            "-m", ramSize(on: launch.accelerator),
            "-chardev", "socket,id=qmp,path=\(Self.escaped(files.controlSocket)),server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-chardev", "file,id=console,path=\(Self.escaped(files.consoleLog))",
            "-serial", "chardev:console",
            "-device", "virtio-balloon-pci,id=\(QEMUMachine.balloonID)",
        ]
        if let kernel {
            arguments += ["-kernel", kernel]
            if let initrd { arguments += ["-initrd", initrd] }
            arguments += [
                "-append",
                (["console=ttyS0"] + (kernelArguments.isEmpty ? [] : [kernelArguments])).joined(separator: " "),
            ]
        }
        for (index, disk) in disks.enumerated() {
            // -blockdev, not -drive: the format is the one given (never probed from the file's
            // bytes), and a qcow2 image's header cannot name a backing file (backing=null) — a
            // user's image could otherwise make QEMU open any file on the host, or a network source.
            let readOnly = disk.readOnly ? ",read-only=on" : ""
            var format = "driver=\(disk.format.rawValue),file=file\(index),node-name=disk\(index)\(readOnly)"
            if disk.format == .qcow2 {
                // JSON: only there is `backing` null (no backing file); `backing=null` in the
                // key=value form names a node called "null". The names in it are this code's own.
                format =
                    #"{"driver":"qcow2","file":"file\#(index)","node-name":"disk\#(index)","backing":null"#
                    + (disk.readOnly ? #","read-only":true}"# : "}")
            }
            arguments += [
                "-blockdev", "driver=file,filename=\(Self.escaped(disk.path)),node-name=file\(index)\(readOnly)",
                "-blockdev", format, "-device", "virtio-blk-pci,drive=disk\(index)",
            ]
            if kernel == nil && index == 0 { arguments[arguments.count - 1] += ",bootindex=0" }
        }
        for device in devices { arguments += device.arguments }
        if launch.startPaused { arguments.append("-S") }
        if launch.incomingMigration { arguments += ["-incoming", "defer"] }
        return arguments
    }

    /// The balloon device's id: its QOM path is `/machine/peripheral/balloon0`.
    public static let balloonID = "balloon0"

    /// A value inside a QEMU option list: a comma ends the value unless doubled.
    static func escaped(_ value: String) -> String {
        value.split(separator: ",", omittingEmptySubsequences: false).joined(separator: ",,")
    }
}
