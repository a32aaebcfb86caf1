// The `flotilla` command: argument parsing only; every subcommand calls into a module.
import ArgumentParser
import Node

@main
struct Flotilla: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flotilla",
        abstract: "A failover cluster for virtual machines.",
        discussion: """
            `flotilla node` runs a cluster member; every other command is a client of a node's API,
            found from --api, then FLOTILLA_API, then the local cluster's .flotilla/cluster.json, then
            127.0.0.1:7101; any node answers (it forwards to the leader).
            """,
        version: FlotillaVersion.current,
        subcommands: [
            NodeCommand.self, StatusCommand.self, NodesCommand.self, VMsCommand.self, VolumesCommand.self,
            EventsCommand.self, VMCommand.self, VolumeCommand.self, ConfigCommand.self, MembersCommand.self,
            LeaderCommand.self, LocalCommand.self,
        ]
    )
}

enum FlotillaVersion {
    static let current = "0.1.0"
}
