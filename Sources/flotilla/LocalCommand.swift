// `flotilla local up|down`: a cluster of node processes on this machine.
import ArgumentParser
import Foundation
import Node
import UnixSignals

struct LocalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "local", abstract: "Run a cluster of nodes on this machine (127.0.0.1).",
        subcommands: [Up.self, Down.self])

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start the nodes, wait for a leader, show status; Ctrl-C stops them cleanly.")
        @Option(help: "How many nodes (1–9).") var nodes = 3
        @Option(help: "Where data, logs and the cluster config go.") var dir = ".flotilla"
        @Flag(help: "Return once the cluster is up; stop it later with `flotilla local down`.") var detach = false

        func run() async throws {
            let executable =
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                ?? CommandLine.arguments[0]
            let cluster = LocalCluster(directory: dir, nodes: nodes, executable: executable)
            // Trap Ctrl-C and SIGTERM from now on, so an interrupted start-up still stops the nodes.
            let stop = await UnixSignalsSequence(trapping: .sigint, .sigterm)
            do {
                let pids = try await cluster.start()
                print(
                    "started \(pids.count) nodes (pids \(pids.map(String.init).joined(separator: " "))); logs in \(dir)/n*.log"
                )
            } catch let failure as LocalCluster.Failure {
                _ = await cluster.stop()
                throw ValidationError(failure.description)
            }
            let client = APIClient(endpoint: cluster.clientEndpoint(1))
            if let status = try? await client.status() {
                print("leader \(status.leader ?? "none"), term \(status.term); API on 127.0.0.1:7101–\(7100 + nodes)")
            }
            await client.close()
            if detach {
                print("stop it with: flotilla local down --dir \(dir)")
                return
            }
            print("try: flotilla status · flotilla config set greeting hello · kill a node's pid · Ctrl-C to stop")
            for await _ in stop { break }
            print("\nstopping…")
            let stopped = await cluster.stop()
            print("stopped \(stopped) nodes")
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
