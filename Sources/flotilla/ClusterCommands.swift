// `flotilla nodes|vms|volumes|events` and `flotilla vm|volume …`: the cluster state from the CLI.
import ArgumentParser
import ClusterModel
import FlotillaAPI
import FlotillaCLI
import FlotillaClient
import Foundation
import Node

struct NodesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodes", abstract: "List the nodes with their state and memory.")
    @OptionGroup var options: ReadOptions

    func run() async throws {
        let nodes = try await withAPI(options.api) { try await $0.nodes(stale: options.stale) }
        if options.json { return try printJSON(nodes) }
        print(ClusterText.nodes(nodes))
    }
}

struct VMsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vms", abstract: "List the VMs with owner, state and memory.")
    @OptionGroup var options: ReadOptions

    func run() async throws {
        let vms = try await withAPI(options.api) { try await $0.vms(stale: options.stale) }
        if options.json { return try printJSON(vms) }
        print(ClusterText.vms(vms))
    }
}

struct VolumesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "volumes", abstract: "List the Cluster Shared Volumes with their coordinators.")
    @OptionGroup var options: ReadOptions

    func run() async throws {
        let volumes = try await withAPI(options.api) { try await $0.volumes(stale: options.stale) }
        if options.json { return try printJSON(volumes) }
        print(ClusterText.volumes(volumes))
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Print the cluster's events; --follow keeps printing new ones.")
    @OptionGroup var options: ReadOptions
    @Option(help: "Only events after this sequence number.") var since: UInt64 = 0
    @Flag(help: "Keep printing events as they happen (Ctrl-C to stop).") var follow = false

    func run() async throws {
        let json = options.json
        let line: @Sendable (EventView) throws -> String = { event in
            guard json else { return ClusterText.event(event) }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return String(decoding: try encoder.encode(event), as: UTF8.self)
        }
        if follow {
            try await withAPI(options.api) { client in
                try await client.followEvents(since: since) { event in
                    // Unbuffered: a follower reads each event as it happens.
                    FileHandle.standardOutput.write(Data((try line(event) + "\n").utf8))
                }
            }
            return
        }
        let events = try await withAPI(options.api) { try await $0.events(since: since, stale: options.stale) }
        if json { return try printJSON(events) }
        for event in events { print(try line(event)) }
    }
}

/// A size option's value in bytes; otherwise one line naming the option and a non-zero exit.
func bytes(_ text: String, option: String) throws -> UInt64 {
    guard let bytes = ByteCount(parsing: text)?.bytes else {
        FileHandle.standardError.write(Data((ClusterText.errorLine(ByteCount.problem(text, what: option)) + "\n").utf8))
        throw ExitCode.failure
    }
    return bytes
}

/// One line saying where a VM is after a command.
func describe(_ vm: VMView) -> String {
    switch vm.state {
    case "running": "\(vm.name) (\(vm.id)) is running on \(vm.owner ?? "?") (epoch \(vm.epoch))"
    case "pending": "\(vm.name) (\(vm.id)) is pending: \(vm.pendingReason ?? "no reason given")"
    default: "\(vm.name) (\(vm.id)) is \(vm.state)"
    }
}

struct VMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm", abstract: "Create, start, stop, resize and delete VMs.",
        subcommands: [
            Create.self, Start.self, Stop.self, Memory.self, Workload.self, Migrate.self, AutoConverge.self,
            Delete.self, Show.self, Console.self,
        ])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a VM (stopped); start it with `vm start`.")
        @OptionGroup var options: APIOptions
        @Argument(help: "The VM's name, unique in the cluster.") var name: String
        @Option(help: "Memory to start with, e.g. 1G.") var startup: String
        @Option(help: "Least memory (default: --startup), e.g. 512M.") var min: String?
        @Option(help: "Most memory (default: --startup), e.g. 4G.") var max: String?
        @Option(help: "Memory kept above demand, percent (5–2000, default 20).") var buffer: Int?
        @Option(help: "Weight when memory is short (0–100, default 50).") var priority: Int?
        @Option(help: "The volume holding its disk, e.g. csv1 (or give --disk as VOLUME:FILE).") var volume: String?
        @Option(
            help:
                "Its disk file: FILE on --volume, or VOLUME:FILE, e.g. csv1:web.qcow2 (default: the lower-cased name + .vhdx); a qemu guest without --kernel boots it."
        )
        var disk: String?
        @Option(help: "Failover order: high, medium (default), low or none.") var restartPriority: String?
        @Option(help: "Nodes to try first, in order, e.g. n1,n2.") var preferred: String?
        @Option(help: "VMs of one class are kept on different nodes when possible.") var antiAffinity: String?
        @Flag(help: "A live migration that does not converge throttles the guest instead of being aborted.")
        var autoConverge = false
        @Option(help: "What runs its guest: simulated (default) or qemu (a real VM; docs/qemu.md).") var driver: String?
        @Option(help: "qemu: the kernel it boots, on a volume, e.g. csv1:boot/vmlinuz.") var kernel: String?
        @Option(help: "qemu: its initial RAM disk, e.g. csv1:boot/initramfs.cpio.gz.") var initrd: String?
        @Option(help: "qemu: kernel arguments.") var append: String?
        @Option(help: "qemu: virtual processors (default 1).") var vcpus: Int?
        @Option(help: "qemu: how its disk is read, raw or qcow2 (default: qcow2 for a .qcow2 file, else raw).")
        var diskFormat: String?
        @Option(help: "qemu: a device besides its balloon and disk: virtio-rng or watchdog (repeatable).")
        var device: [String] = []

        func run() async throws {
            var guestDriver: GuestDriverView?
            if driver != nil || kernel != nil || initrd != nil || append != nil || vcpus != nil || diskFormat != nil
                || !device.isEmpty
            {
                guestDriver = GuestDriverView(
                    kind: driver ?? "qemu", vcpus: vcpus, kernel: kernel, initrd: initrd, append: append,
                    diskFormat: diskFormat, devices: device.isEmpty ? nil : device)
            }
            // --disk VOLUME:FILE names the volume too; --volume must then agree or be left out.
            var volume = self.volume
            var diskFile = disk
            if let disk, let colon = disk.firstIndex(of: ":") {
                let named = String(disk[..<colon])
                guard volume == nil || volume == named else {
                    throw ValidationError(
                        "--disk \(disk) is on volume \(named), but --volume says \(volume!); give one")
                }
                volume = named
                diskFile = String(disk[disk.index(after: colon)...])
            }
            guard let volume else {
                throw ValidationError("give the volume of its disk: --volume csv1, or --disk csv1:FILE")
            }
            let creation = VMCreation(
                name: name, startup: try bytes(startup, option: "--startup"),
                minimum: try min.map { try bytes($0, option: "--min") },
                maximum: try max.map { try bytes($0, option: "--max") }, buffer: buffer, priority: priority,
                restartPriority: restartPriority,
                preferredOwners: preferred.map { $0.split(separator: ",").map(String.init) },
                antiAffinityClass: antiAffinity, volume: volume, diskFile: diskFile, autoConverge: autoConverge,
                driver: guestDriver)
            let vm = try await withAPI(options) { try await $0.createVM(creation) }
            print("created \(vm.name) (\(vm.id)), stopped; start it with: flotilla vm start \(vm.name)")
        }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a VM where placement puts it, or on --on; pending when nothing fits.")
        @OptionGroup var options: APIOptions
        @Argument var name: String
        @Option(help: "Start it on this node.") var on: String?

        func run() async throws {
            print(describe(try await withAPI(options) { try await $0.startVM(name, on: on) }))
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a VM.")
        @OptionGroup var options: APIOptions
        @Argument var name: String

        func run() async throws {
            print(describe(try await withAPI(options) { try await $0.stopVM(name) }))
        }
    }

    struct Memory: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a VM's memory settings.")
        @OptionGroup var options: APIOptions
        @Argument var name: String
        @Option var startup: String?
        @Option var min: String?
        @Option var max: String?
        @Option var buffer: Int?
        @Option var priority: Int?

        func run() async throws {
            let change = MemoryChange(
                startup: try startup.map { try bytes($0, option: "--startup") },
                minimum: try min.map { try bytes($0, option: "--min") },
                maximum: try max.map { try bytes($0, option: "--max") }, buffer: buffer, priority: priority)
            let vm = try await withAPI(options) { try await $0.setVMMemory(name, change) }
            print(ClusterText.vms([vm]))
        }
    }

    struct Workload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set what a VM's guest does with memory: its demand over time and how fast it dirties pages.",
            discussion: """
                One of --demand 2G, --ramp 1G:3G:60s (from, to, over), --periodic 1G:3G:120s (low, high, \
                period) or --trace FILE.csv (lines seconds,size such as 30,2.5G). A running guest follows it \
                at once; it moves with the VM.
                """)
        @OptionGroup var options: APIOptions
        @Argument var name: String
        @Option(help: "A constant demand, e.g. 2G.") var demand: String?
        @Option(help: "FROM:TO:SECONDS, e.g. 1G:3G:60s.") var ramp: String?
        @Option(help: "LOW:HIGH:PERIOD, e.g. 1G:3G:120s.") var periodic: String?
        @Option(help: "A CSV file of seconds,size lines.") var trace: String?
        @Option(help: "Pages the guest writes per second (default 500).") var dirtyRate: UInt64?

        func run() async throws {
            var traceFile: (file: String, text: String)?
            if let trace {
                do {
                    traceFile = (trace, try String(contentsOfFile: trace, encoding: .utf8))
                } catch {
                    FileHandle.standardError.write(
                        Data(
                            (ClusterText.errorLine("cannot read --trace \(trace): \(error.localizedDescription)") + "\n")
                                .utf8))
                    throw ExitCode.failure
                }
            }
            switch WorkloadArguments.workload(
                demand: demand, ramp: ramp, periodic: periodic, trace: traceFile, dirtyPagesPerSecond: dirtyRate)
            {
            case .failure(let problem):
                FileHandle.standardError.write(Data((ClusterText.errorLine(problem.description) + "\n").utf8))
                throw ExitCode.failure
            case .success(let workload):
                let vm = try await withAPI(options) { try await $0.setVMWorkload(name, workload) }
                print(ClusterText.vms([vm]))
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a stopped VM.")
        @OptionGroup var options: APIOptions
        @Argument var name: String

        func run() async throws {
            try await withAPI(options) { try await $0.deleteVM(name) }
            print("deleted \(name)")
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one VM (as JSON).")
        @OptionGroup var options: ReadOptions
        @Argument var name: String

        func run() async throws {
            try printJSON(try await withAPI(options.api) { try await $0.vm(name, stale: options.stale) })
        }
    }
}

extension VMCommand {
    struct Console: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the end of a real guest's serial console; --follow keeps printing it.",
            discussion: """
                Any node answers: the node that runs the guest reads its console. With --follow it
                keeps printing as the console grows, and across a failover or migration goes on with
                the new guest's console from its start (Ctrl-C to stop).
                """)
        @OptionGroup var options: APIOptions
        @Argument var name: String
        @Option(help: "How much of the console's end to print first, e.g. 16K (at most 1M).") var tail = "16K"
        @Flag(help: "Keep printing the console as it grows (Ctrl-C to stop).") var follow = false

        func run() async throws {
            let first = try bytes(tail, option: "--tail")
            guard (1...(1 << 20)).contains(first) else {
                FileHandle.standardError.write(
                    Data((ClusterText.errorLine("--tail must be from 1 byte to 1M, got \(tail)") + "\n").utf8))
                throw ExitCode.failure
            }
            try await withAPI(options) { client in
                var follower = ConsoleFollow()
                var waiting = false
                while true {
                    let answer: ConsoleView
                    do {
                        answer = try await client.console(
                            name, offset: follower.offset, limit: follower.offset == nil ? Int(first) : 1 << 20)
                    } catch let error as APIError
                        where follow && ConsoleFollow.waitsOut(status: error.status, message: error.message)
                    {
                        if !waiting {
                            FileHandle.standardError.write(Data("(waiting: \(error.message))\n".utf8))
                            waiting = true
                        }
                        try await Task.sleep(for: .seconds(1))
                        continue
                    }
                    waiting = false
                    // Unbuffered: a follower reads the console as it comes.
                    FileHandle.standardOutput.write(Data(follower.take(answer).utf8))
                    guard follow else { return }
                    if answer.next >= answer.size { try await Task.sleep(for: .milliseconds(500)) }
                }
            }
        }
    }
}

struct VolumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "volume", abstract: "Create, move and delete Cluster Shared Volumes.",
        subcommands: [Create.self, Move.self, Delete.self, DirectIO.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a volume with a coordinator node.")
        @OptionGroup var options: APIOptions
        @Argument(help: "The volume's id, e.g. csv1.") var id: String
        @Option(help: "The node coordinating its metadata.") var coordinator = "n1"
        @Option(help: "Its directory under the shared root (default volumes/<id>).") var path: String?

        func run() async throws {
            let volume = try await withAPI(options) {
                try await $0.createVolume(id, coordinator: coordinator, path: path)
            }
            print("created \(volume.id) at \(volume.path), coordinated by \(volume.coordinator)")
        }
    }

    struct Move: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Give a volume another coordinator.")
        @OptionGroup var options: APIOptions
        @Argument var id: String
        @Option(help: "The new coordinator.") var to: String

        func run() async throws {
            let volume = try await withAPI(options) { try await $0.moveVolume(id, to: to) }
            print("\(volume.id) is coordinated by \(volume.coordinator) (\(volume.state))")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a volume no VM uses; its directory and any files in it stay on the shared root.")
        @OptionGroup var options: APIOptions
        @Argument var id: String

        func run() async throws {
            let deletion = try await withAPI(options) { try await $0.deleteVolume(id) }
            print("deleted \(deletion.deleted); its directory \(deletion.path) is left on the shared root")
        }
    }

    struct DirectIO: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "direct-io",
            abstract: "Simulate a broken (or healed) direct path from the node --api names to a volume.",
            discussion: "While broken, that node's disk I/O to the volume goes through its coordinator.")
        @OptionGroup var options: APIOptions
        @Argument var id: String
        @Option(help: "true: broken, redirect through the coordinator; false: direct again.") var broken: Bool

        func run() async throws {
            let access = try await withAPI(options) { try await $0.setDirectIO(id, broken: broken) }
            print("\(access.node): I/O to \(id) \(broken ? "redirected through its coordinator" : "direct")")
        }
    }
}

/// `flotilla node drain|pause|resume ID`: a node's part in running VMs.
extension NodeCommand {
    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Live-migrate its VMs away, move its volume coordinators and Raft leadership, then leave it paused.")
        @OptionGroup var options: APIOptions
        @Argument(help: "The node's id, e.g. n2.") var id: String

        func run() async throws { try await changeNodeState(options, id, "drain") }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take no new VMs; keep the ones it has where they are.")
        @OptionGroup var options: APIOptions
        @Argument(help: "The node's id, e.g. n2.") var id: String

        func run() async throws { try await changeNodeState(options, id, "pause") }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Bring a drained, paused or down node back up.")
        @OptionGroup var options: APIOptions
        @Argument(help: "The node's id, e.g. n2.") var id: String

        func run() async throws { try await changeNodeState(options, id, "resume") }
    }
}

private func changeNodeState(_ options: APIOptions, _ id: String, _ action: String) async throws {
    let node = try await withAPI(options) { try await $0.changeNode(id, action) }
    print("\(node.id) is \(node.state)")
}
