import QEMU
import Testing

@Suite struct QEMUMachineTests {
    let files = QEMURuntimeFiles(controlSocket: "/run/g/qmp.sock", consoleLog: "/run/g/console.log")

    @Test func aKernelBootHasItsControlSocketConsoleBalloonAndArguments() {
        let machine = QEMUMachine(
            vcpus: 2, memoryBytes: 256 << 20, kernel: "/boot/vmlinuz", initrd: "/boot/initrd",
            kernelArguments: "quiet flotilla.epoch=3")
        let arguments = machine.arguments(files: files, launch: QEMULaunch(name: "web", accelerator: .tcg))
        #expect(
            arguments == [
                "-name", "guest=web,debug-threads=on", "-nodefaults", "-no-user-config", "-display", "none",
                "-accel", "tcg", "-smp", "2", "-m", "size=262152K",
                "-chardev", "socket,id=qmp,path=/run/g/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
                "-chardev", "file,id=console,path=/run/g/console.log", "-serial", "chardev:console",
                "-device", "virtio-balloon-pci,id=balloon0",
                "-kernel", "/boot/vmlinuz", "-initrd", "/boot/initrd", "-append",
                "console=ttyS0 quiet flotilla.epoch=3",
            ])
    }

    @Test func aDiskBootOpensEachDiskOnVirtioAndBootsTheFirst() {
        let machine = QEMUMachine(
            memoryBytes: 1 << 30,
            disks: [
                QEMUDisk(path: "/csv/csv1/web.qcow2", format: .qcow2),
                QEMUDisk(path: "/csv/iso", format: .raw, readOnly: true),
            ], devices: [.virtioRNG, .watchdog])
        let arguments = machine.arguments(files: files, launch: QEMULaunch(name: "web", accelerator: .kvm))
        #expect(arguments.contains("-cpu") && arguments[arguments.firstIndex(of: "-cpu")! + 1] == "host")
        // KVM tracks dirty pages itself: the guest's memory exactly (TCG's is 8 KiB more, below).
        #expect(arguments[arguments.firstIndex(of: "-m")! + 1] == "size=1024M")
        #expect(!arguments.contains("-kernel"))
        let blockdevs = arguments.indices.filter { arguments[$0] == "-blockdev" }.map { arguments[$0 + 1] }
        #expect(
            blockdevs == [
                "driver=file,filename=/csv/csv1/web.qcow2,node-name=file0",
                #"{"driver":"qcow2","file":"file0","node-name":"disk0","backing":null}"#,
                "driver=file,filename=/csv/iso,node-name=file1,read-only=on",
                "driver=raw,file=file1,node-name=disk1,read-only=on",
            ])
        let devices = arguments.indices.filter { arguments[$0] == "-device" }.map { arguments[$0 + 1] }
        #expect(
            devices == [
                "virtio-balloon-pci,id=balloon0", "virtio-blk-pci,drive=disk0,bootindex=0",
                "virtio-blk-pci,drive=disk1", "virtio-rng-pci,rng=rng0", "i6300esb,id=watchdog0",
            ])
        #expect(arguments.contains("rng-random,id=rng0,filename=/dev/urandom"))
        #expect(arguments.contains("watchdog=reset"))
        #expect(
            QEMUMachine(memoryBytes: 1 << 30, kernel: "/k", devices: [.watchdog, .watchdog]).problems == [
                "a device is named twice"
            ])
    }

    @Test func commasInPathsAreDoubledSoTheyCannotAddOptions() {
        let machine = QEMUMachine(
            memoryBytes: 64 << 20, disks: [QEMUDisk(path: "/csv/a,file.locking=off", format: .raw)])
        let hostile = QEMURuntimeFiles(controlSocket: "/run/x,server=off/qmp.sock", consoleLog: "/run/c.log")
        let arguments = machine.arguments(files: hostile, launch: QEMULaunch(name: "a,b", accelerator: .tcg))
        #expect(arguments.contains("driver=file,filename=/csv/a,,file.locking=off,node-name=file0"))
        #expect(arguments.contains("socket,id=qmp,path=/run/x,,server=off/qmp.sock,server=on,wait=off"))
        #expect(arguments.contains("guest=a,,b,debug-threads=on"))
    }

    @Test func aMigrationTargetStartsPausedWaitingForItsStream() {
        let machine = QEMUMachine(memoryBytes: 64 << 20, kernel: "/k")
        let arguments = machine.arguments(
            files: files, launch: QEMULaunch(name: "v", accelerator: .tcg, startPaused: true, incomingMigration: true))
        #expect(Array(arguments.suffix(3)) == ["-S", "-incoming", "defer"])
        #expect(arguments.contains("console=ttyS0"))
    }

    @Test func everyProblemOfABadMachineIsNamed() {
        #expect(QEMUMachine(memoryBytes: 256 << 20, kernel: "/k").problems.isEmpty)
        let bad = QEMUMachine(
            vcpus: 0, memoryBytes: (16 << 20) + 1, kernel: nil, initrd: "boot/initrd", kernelArguments: "a\nb",
            disks: [])
        #expect(
            bad.problems == [
                "vcpus must be 1 to 64, not 0",
                "memory must be a whole number of MiB, not 16777217 bytes",
                "nothing to boot: give a kernel (and initrd) or a disk image",
                "an initrd needs a kernel",
                "kernel arguments need a kernel",
                "initrd: the path must be absolute, not \"boot/initrd\"",
                "kernel arguments must be one line without control characters",
            ])
        #expect(
            QEMUMachine(memoryBytes: 16 << 20, kernel: "/k").problems == ["memory must be 32 MiB to 1 TiB, not 16 MiB"])
        let disks = (0...8).map { QEMUDisk(path: "/d\($0)", format: .raw) }
        #expect(QEMUMachine(memoryBytes: 64 << 20, disks: disks).problems == ["at most 8 disks, not 9"])
        #expect(
            QEMUMachine(vcpus: 65, memoryBytes: 64 << 20, kernel: "/k").problems == ["vcpus must be 1 to 64, not 65"])
    }

    @Test func memoryStatisticsCountOnlyWhatTheGuestReported() {
        let balloon: QMPValue = ["actual": .number(268_435_456)]
        let before: QMPValue = [
            "stats": ["stat-total-memory": -1, "stat-free-memory": -1, "stat-available-memory": -1],
            "last-update": 0,
        ]
        let early = QEMUMemoryStatistics.parse(balloon: balloon, guestStats: before)
        #expect(early == QEMUMemoryStatistics(actualBytes: 268_435_456))
        #expect(early?.demandBytes == nil)
        let after: QMPValue = [
            "stats": [
                "stat-total-memory": .number(215_810_048), "stat-free-memory": .number(100_000_000),
                "stat-available-memory": .number(130_000_000),
            ],
            "last-update": 1_765_000_000,
        ]
        let reported = QEMUMemoryStatistics.parse(balloon: balloon, guestStats: after)
        #expect(reported?.demandBytes == 85_810_048)
        #expect(QEMUMemoryStatistics.parse(balloon: ["actual": "x"], guestStats: nil) == nil)
    }
}

@Suite struct AcceleratorDecisionTests {
    @Test func kvmOnlyWhenItsDeviceOpensAndAKernelBootedUnderIt() {
        #expect(QEMUHost.decide(kvmDevice: nil, probe: .booted(.milliseconds(420))).accelerator == .kvm)
        let hung = QEMUHost.decide(kvmDevice: nil, probe: .hung(.seconds(15)))
        #expect(hung.accelerator == .tcg)
        #expect(hung.reason.contains("did not boot within 15.0 seconds"))
        let failed = QEMUHost.decide(kvmDevice: nil, probe: .failed("QEMU exited with status 1: Could not access KVM"))
        #expect(
            failed
                == QEMUHostFacts(
                    accelerator: .tcg,
                    reason:
                        "software emulation (TCG): KVM failed to boot a kernel: QEMU exited with status 1: Could not access KVM"
                ))
        #expect(
            QEMUHost.decide(kvmDevice: "this host has no /dev/kvm", probe: nil)
                == QEMUHostFacts(
                    accelerator: .tcg, reason: "software emulation (TCG): this host has no /dev/kvm"))
    }

    @Test func theProbeBootsAKernelThatPanicsAtOnceAndDoesNotReboot() {
        let arguments = QEMUHost.kvmProbeArguments(kernel: "/k", consoleLog: "/run/p,x.log")
        #expect(arguments.starts(with: ["-accel", "kvm"]))
        #expect(arguments.contains("-no-reboot"))
        #expect(arguments.contains("console=ttyS0 panic=-1"))
        #expect(arguments.contains("file,id=console,path=/run/p,,x.log"))
        #expect(!arguments.contains("-initrd"))
    }

    /// QEMU 7.2 loses a TCG guest's stores during a migration when its RAM is a multiple of 256 KiB
    /// (docs/qemu.md): a TCG guest's RAM is never one, whatever its memory, and both ends of a
    /// migration compute the same size.
    @Test func aTCGGuestsRAMIsNeverAMultipleOf256KiB() {
        for mebibytes: UInt64 in [64, 256, 1024, 4096, 1000] {
            let machine = QEMUMachine(memoryBytes: mebibytes << 20, kernel: "/boot/vmlinuz")
            let size = machine.ramSize(on: .tcg)
            #expect(size == "size=\((mebibytes << 10) + 8)K")
            let kibibytes = UInt64(size.dropFirst("size=".count).dropLast())!
            #expect(kibibytes % 256 != 0 && kibibytes % 8 == 0, "\(size)")
            #expect(machine.ramSize(on: .kvm) == "size=\(mebibytes)M")
        }
    }
}
