// `flotilla vm migrate|auto-converge`, `flotilla migrations` and `flotilla migration cancel|show`: live migration from the CLI.
import ArgumentParser
import FlotillaAPI
import FlotillaCLI
import FlotillaClient
import Foundation

extension VMCommand {
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Live-migrate a running VM to --to, or where placement puts it; --watch prints its steps.",
            discussion: """
                The guest keeps running while its memory is copied in rounds; it pauses only for the last \
                pages (about the downtime target, migration.downtime-ms, 50 ms by default), and runs on the \
                target once the switchover is committed. A copy that does not converge is aborted and the VM \
                stays where it was, unless auto-converge is on for it (flotilla vm auto-converge NAME on).
                """)
        @OptionGroup var options: APIOptions
        @Argument var name: String
        @Option(help: "The node to migrate it to, e.g. n2.") var to: String?
        @Flag(help: "Print the migration's four steps as they happen, with their times.") var watch = false

        func run() async throws {
            let migration = try await withAPI(options) { try await $0.migrateVM(name, to: to) }
            let queued = migration.phase == "queued" ? " (queued: \(migration.reason ?? "waiting for a slot"))" : ""
            print(
                "\(migration.id): \(migration.vmName ?? migration.vm) \(migration.source) → \(migration.target)\(queued)"
            )
            guard watch else {
                print("follow it with: flotilla migrations, or flotilla migration show \(migration.id)")
                return
            }
            var progress = MigrationProgress()
            try await withAPI(options) { api in
                while !progress.finished {
                    for line in progress.lines(for: try await api.migration(migration.id)) { print(line) }
                    if !progress.finished { try await Task.sleep(for: .milliseconds(100)) }
                }
            }
            // A migration that failed or was cancelled is a failed command (the VM stays where it was).
            guard progress.switchedOver else { throw ExitCode.failure }
        }
    }

    struct AutoConverge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "auto-converge",
            abstract:
                "on: a live migration that does not converge throttles the guest until it does; off: it is aborted.")
        @OptionGroup var options: APIOptions
        @Argument var name: String
        @Argument(help: "on or off.") var setting: String

        func run() async throws {
            guard setting == "on" || setting == "off" else {
                FileHandle.standardError.write(
                    Data((ClusterText.errorLine("auto-converge is on or off, got \(setting)") + "\n").utf8))
                throw ExitCode.failure
            }
            let vm = try await withAPI(options) { try await $0.setVMAutoConverge(name, setting == "on") }
            print("\(vm.name): auto-converge \(vm.autoConverge == true ? "on" : "off")")
        }
    }
}

struct MigrationsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrations",
        abstract: "List live migrations (running, queued and the last ended ones) with rounds, bytes and downtime.")
    @OptionGroup var options: ReadOptions
    @Flag(help: "Only the running and queued ones.") var active = false

    func run() async throws {
        let migrations = try await withAPI(options.api) {
            try await $0.migrations(activeOnly: active, stale: options.stale)
        }
        if options.json { return try printJSON(migrations) }
        print(ClusterText.migrationTable(migrations))
    }
}

struct MigrationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migration", abstract: "Show or cancel one live migration.", subcommands: [Show.self, Cancel.self])

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one migration with its rounds (as JSON).")
        @OptionGroup var options: ReadOptions
        @Argument(help: "The migration's id, e.g. mig3.") var id: String

        func run() async throws {
            try printJSON(try await withAPI(options.api) { try await $0.migration(id, stale: options.stale) })
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a queued or running migration; the VM keeps running where it was.")
        @OptionGroup var options: APIOptions
        @Argument(help: "The migration's id, e.g. mig3.") var id: String

        func run() async throws {
            let migration = try await withAPI(options) { try await $0.cancelMigration(id) }
            print(
                "\(migration.id) \(migration.phase); \(migration.vmName ?? migration.vm) stays on \(migration.source)")
        }
    }
}
