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
            found from --api, then FLOTILLA_API, then 127.0.0.1:7101 (the local cluster's first node).
            """,
        version: FlotillaVersion.current,
        subcommands: [
            NodeCommand.self, StatusCommand.self, ConfigCommand.self, MembersCommand.self, LeaderCommand.self,
            LocalCommand.self,
        ]
    )
}

enum FlotillaVersion {
    static let current = "0.1.0"
}
