// The `flotilla` command: argument parsing only; every subcommand calls into a module.
import ArgumentParser

@main
struct Flotilla: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flotilla",
        abstract: "A failover cluster for virtual machines.",
        version: FlotillaVersion.current,
        subcommands: []
    )
}

enum FlotillaVersion {
    static let current = "0.1.0"
}
