// `flotilla local up|down`: a cluster of node processes on this machine.
import ArgumentParser
import FlotillaCLI
import FlotillaClient
import Foundation
import Node
import UnixSignals

struct LocalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "local", abstract: "Run a cluster of nodes on this machine (127.0.0.1).",
        subcommands: [Up.self, Down.self, Start.self])

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Start the nodes, create volume csv1 and the demo VMs, show live status; Ctrl-C stops them cleanly.")
        @Option(help: "How many nodes (1–9).") var nodes = 3
        @Option(help: "Where data, logs and the cluster config go.") var dir = ".flotilla"
        @Option(help: "Node nK serves its API on this + K and peer RPC on this + 100 + K.") var portBase = 7100
        @Flag(help: "Create only volume csv1, not the Finance, Engineering and Sales VMs.") var noDemo = false
        @Flag(help: "Return once the cluster is up; stop it later with `flotilla local down`.") var detach = false
        @Option(
            help: """
                Run a scenario instead of the demo: dynamic-memory (the Hyper-V walkthrough: n1 an 8 GB host, \
                Finance, Engineering, Sales and later Marketing on it, 30 walkthrough minutes of a second each).
                """)
        var scenario: Scenario?
        @Option(help: "The demo VMs' guests: simulated (default) or qemu (real VMs; needs --guest).")
        var driver = "simulated"
        @Option(
            help: """
                With --driver qemu: a directory with vmlinuz and initramfs.cpio.gz \
                (scripts/build-test-guest.sh DIR makes one; `make run-qemu` does it all).
                """)
        var guest: String?
        @Option(help: "With --scenario: how long a walkthrough minute lasts, in seconds.") var minute: Double = 1

        /// The real guest `--driver qemu --guest DIR` names, checked before anything starts.
        static func realGuest(driver: String, guest: String?) throws -> LocalCluster.RealGuest? {
            switch driver {
            case "simulated":
                guard guest == nil else { throw ValidationError("--guest goes with --driver qemu") }
                return nil
            case "qemu":
                guard let guest else {
                    throw ValidationError(
                        "--driver qemu needs --guest DIR with vmlinuz and initramfs.cpio.gz (scripts/build-test-guest.sh DIR makes one)"
                    )
                }
                let directory = URL(fileURLWithPath: guest).standardizedFileURL.path
                let found = LocalCluster.RealGuest(
                    kernel: directory + "/vmlinuz", initrd: directory + "/initramfs.cpio.gz")
                for file in [found.kernel, found.initrd] where !FileManager.default.fileExists(atPath: file) {
                    throw ValidationError(
                        "--guest \(guest): \(file) is missing (scripts/build-test-guest.sh \(guest) makes it)")
                }
                guard FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-system-x86_64") else {
                    throw ValidationError(
                        "--driver qemu needs QEMU: /usr/bin/qemu-system-x86_64 is missing (FLOTILLA_QEMU_DEPS=1 scripts/install-deps.sh)"
                    )
                }
                return found
            default:
                throw ValidationError("--driver is simulated or qemu, not \(driver)")
            }
        }

        enum Scenario: String, ExpressibleByArgument, CaseIterable {
            case dynamicMemory = "dynamic-memory"
        }

        func run() async throws {
            let executable = LocalCluster.thisExecutable
            guard minute > 0, minute <= 60 else { throw ValidationError("--minute must be more than 0 and at most 60") }
            let realGuest = try Self.realGuest(driver: driver, guest: guest)
            let cluster = LocalCluster(
                directory: dir, nodes: nodes, executable: executable, portBase: portBase,
                memory: scenario == .dynamicMemory ? [1: DynamicMemoryWalkthrough.usableMemory] : [:])
            // Trap Ctrl-C and SIGTERM from now on, so an interrupted start-up still stops the nodes.
            let stop = await UnixSignalsSequence(trapping: .sigint, .sigterm)
            let client = APIClient(endpoint: cluster.clientEndpoint(1))
            do {
                let pids = try await cluster.start()
                print(
                    "started \(pids.count) nodes (pids \(pids.map(String.init).joined(separator: " "))); logs in \(dir)/n*.log"
                )
                for line in try await cluster.prepare(
                    demo: !noDemo && scenario == nil, client: client, realGuest: realGuest)
                {
                    print(line)
                }
                if scenario == .dynamicMemory {
                    print(
                        "the dynamic-memory walkthrough: \(DynamicMemoryWalkthrough.lastMinute) minutes of \(minute) s")
                    let samples = try await DynamicMemoryWalkthrough.run(
                        client: client, minute: .milliseconds(Int64(minute * 1000)), say: { print($0) })
                    print(DynamicMemoryWalkthrough.timeline(samples))
                }
            } catch {
                await client.close()
                _ = await cluster.stop()
                let message =
                    (error as? LocalCluster.Failure)?.description ?? (error as? APIError)?.message ?? "\(error)"
                throw ValidationError("the local cluster did not come up: \(message)")
            }
            if detach {
                await client.close()
                print(
                    "API on 127.0.0.1:\(portBase + 1)–\(portBase + nodes); try `flotilla status`; stop it with: flotilla local down --dir \(dir)"
                )
                return
            }
            // The live view: the status tables every second until Ctrl-C.
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        let view: String
                        do {
                            view = ClusterText.status(try await client.cluster())
                        } catch {
                            view = "waiting for the cluster: \((error as? APIError)?.message ?? "\(error)")"
                        }
                        // Clear the screen and draw from the top.
                        print("\u{1B}[H\u{1B}[2J" + view + "\n\nCtrl-C stops the cluster · logs in \(dir)/n*.log")
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
                for await _ in stop { break }
                group.cancelAll()
            }
            await client.close()
            print("\nstopping…")
            let stopped = await cluster.stop()
            print("stopped \(stopped) nodes")
        }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start one node of a local cluster again (after it was killed or stopped).",
            discussion: """
                It runs `flotilla node` with the cluster's config, appends to its log and records its pid, \
                so `flotilla local down` stops it with the others; it returns once the node serves its API.
                """)
        @Argument(help: "The node, e.g. n2.") var node: String
        @Option(help: "The directory given to `local up`.") var dir = ".flotilla"
        @Flag(
            name: .customLong("force-new-cluster"),
            help: "Start it as the only voter after losing quorum for good (see `flotilla node --help`).")
        var forceNewCluster = false
        @Flag(help: "Start it as a joiner (`--join true`): an empty node added with `flotilla members add`.")
        var join = false

        func run() async throws {
            guard let match = node.wholeMatch(of: /n?([1-9])/), let number = Int(match.1) else {
                throw ValidationError("the node is n1…n9 (or 1…9), not \(node)")
            }
            let executable = LocalCluster.thisExecutable
            let cluster = LocalCluster(directory: dir, nodes: 0, executable: executable)
            let arguments = (forceNewCluster ? ["--force-new-cluster"] : []) + (join ? ["--join", "true"] : [])
            do {
                let pid = try await cluster.startNode(number, extraArguments: arguments)
                print("started n\(number) (pid \(pid)); log in \(dir)/n\(number).log")
            } catch let error as LocalCluster.Failure {
                FileHandle.standardError.write(Data((ClusterText.errorLine(error.description) + "\n").utf8))
                throw ExitCode.failure
            }
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a cluster started with --detach.")
        @Option(help: "The directory given to `local up`.") var dir = ".flotilla"

        func run() async throws {
            let cluster = LocalCluster(directory: dir, nodes: 0, executable: "")
            let stopped = await cluster.stop()
            print(stopped == 0 ? "no local cluster is running from \(dir)" : "stopped \(stopped) nodes")
        }
    }
}
