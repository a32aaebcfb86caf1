// `flotilla snapshot save|restore|status`: back up the replicated state and seed a new cluster from it.
import ArgumentParser
import FlotillaCLI
import FlotillaClient
import Foundation
import Node

struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Save the cluster's replicated state to a file, check a file, or seed a new cluster from one.",
        subcommands: [Save.self, Restore.self, Status.self])

    /// One line on standard error and a non-zero exit, as the API errors do.
    static func fail(_ error: BackupError) -> ExitCode {
        FileHandle.standardError.write(Data((ClusterText.errorLine(error.description) + "\n").utf8))
        return ExitCode.failure
    }

    struct Save: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Save a consistent snapshot, taken by the leader, to FILE (written atomically).")
        @OptionGroup var options: APIOptions
        @Argument(help: "The file to write; replaced whole if it exists.") var file: String

        func run() async throws {
            let bytes = try await withAPI(options) { try await $0.snapshot() }
            do {
                let summary = try ClusterBackup.save(bytes, to: file)
                print(
                    "saved the state of cluster \(summary.clusterID) at index \(summary.index), term \(summary.term) "
                        + "to \(file) (\(summary.bytes) bytes; \(summary.nodes) nodes, \(summary.volumes) volumes, "
                        + "\(summary.vms) VMs)")
            } catch {
                throw SnapshotCommand.fail(error)
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seed the data directories of a new cluster from a snapshot file.",
            discussion: """
                For each member of the cluster config, writes DIR/<node id>: a data directory bound to the \
                config's cluster id whose storage starts from the snapshot, with the config's members as \
                the cluster's members. Start each node on its directory (--data-dir DIR/{node}).
                """)
        @Argument(help: "A file written by `flotilla snapshot save`.") var file: String
        @Option(help: "Where the members' data directories go; each DIR/<node id> must be new or empty.")
        var dir: String
        @Option(
            name: .customLong("cluster-config"), help: "The new cluster's config file (its members and cluster id).")
        var clusterConfig: String

        func run() async throws {
            do {
                let restored = try ClusterBackup.restore(
                    snapshotPath: file, into: dir, clusterConfigPath: clusterConfig)
                let summary = restored.summary
                print(
                    "restored the state of cluster \(summary.clusterID) at index \(summary.index), term \(summary.term) "
                        + "into cluster \(restored.clusterID):")
                for (node, path) in restored.directories { print("  \(node)  \(path)") }
                print("start each node with --config \(clusterConfig) --data-dir \(dir)/{node}")
            } catch {
                throw SnapshotCommand.fail(error)
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a snapshot file and show what it holds (fails if it is damaged or unreadable).")
        @Argument var file: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let summary = try ClusterBackup.read(path: file).summary
                if json { try printJSON(summary) } else { print(summary.text) }
            } catch let error as BackupError {
                throw SnapshotCommand.fail(error)
            }
        }
    }
}
