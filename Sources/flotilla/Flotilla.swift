// The `flotilla` command: argument parsing only; every subcommand calls into a module.
import ArgumentParser
import FlotillaCLI
import Foundation
import Node

@main
struct Flotilla: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flotilla",
        abstract: "A failover cluster for virtual machines.",
        discussion: """
            `flotilla node` runs a cluster member; every other command is a client of a node's API, \
            found from --api, then FLOTILLA_API, then the local cluster's .flotilla/cluster.json, then \
            127.0.0.1:7101; any node answers (it forwards to the leader).
            """,
        version: FlotillaVersion.text,
        subcommands: [
            NodeCommand.self, StatusCommand.self, ReadyCommand.self, NodesCommand.self, VMsCommand.self,
            VolumesCommand.self,
            EventsCommand.self, VMCommand.self, MigrationsCommand.self, MigrationCommand.self, VolumeCommand.self,
            ConfigCommand.self, MembersCommand.self, SnapshotCommand.self,
            LeaderCommand.self, LocalCommand.self, GuestCommand.self,
        ]
    )

    /// Runs the command. A usage mistake (a missing or unknown option, a bad value) prints one line
    /// saying what was wrong and where the usage is, like every other error of the CLI, instead of
    /// the whole usage text; `--help` and `--version` print in full.
    static func main() async {
        let command: any ParsableCommand
        do {
            command = try await asyncParseAsRoot()
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            let problem = message(for: error)
            FileHandle.standardError.write(
                Data((ClusterText.errorLine("\(problem) (`flotilla help <command>` shows the usage)") + "\n").utf8))
            exit(withError: ExitCode(code.rawValue))
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

enum FlotillaVersion {
    static let current = "0.1.0"
    /// What `--version` prints: the release, then the format versions this build writes (and the
    /// newest it reads; docs/operations.md, Upgrades).
    static let text = "\(current)\nformats: \(FormatVersions.summary)"
}
