import ArgumentParser
import ClusterModel
import FlotillaAPI
import FlotillaCLI
import FlotillaClient
import Foundation
import Node

/// How a client command finds a node: --api, then FLOTILLA_API, then the local cluster's
/// `.flotilla/cluster.json`, then 127.0.0.1:7101. Any node answers: it forwards to the leader.
struct APIOptions: ParsableArguments {
    @Option(help: "A node's client API as host:port (or FLOTILLA_API; default: the local cluster in .flotilla).")
    var api: String?

    func candidates() throws -> [Endpoint] {
        try APILocation.candidates(
            flag: api, environment: ProcessInfo.processInfo.environment["FLOTILLA_API"],
            localConfig: FileManager.default.contents(atPath: ".flotilla/cluster.json"))
    }
}

/// Runs a client call against the first node that can be reached, and turns an API error into
/// one clear line on standard error and a non-zero exit.
func withAPI<T>(_ options: APIOptions, _ body: (APIClient) async throws -> T) async throws -> T {
    do {
        let candidates = try options.candidates()
        var lastError: APIError?
        for endpoint in candidates {
            // During an election a node answers "no leader" for a moment; wait it out.
            let client = APIClient(endpoint: endpoint, noLeaderPatience: .seconds(5))
            defer { Task { await client.close() } }
            do {
                return try await body(client)
            } catch let error as APIError where error.status == nil && error.hadNoEffect {
                // Never reached this node: the next one may be up (a request that had no effect is safe to resend).
                lastError = error
            }
        }
        throw lastError!
    } catch let error as APIError {
        FileHandle.standardError.write(Data((ClusterText.errorLine(error.message) + "\n").utf8))
        throw ExitCode.failure
    }
}

/// Prints a value as indented JSON with sorted keys (`--json`).
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// The flags every read command takes.
struct ReadOptions: ParsableArguments {
    @OptionGroup var api: APIOptions
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Read the contacted node's own copy (may lag the leader).") var stale = false
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the leader, term, nodes with memory, VMs, volumes and running migrations.")

    @OptionGroup var options: ReadOptions

    func run() async throws {
        let cluster = try await withAPI(options.api) { try await $0.cluster(stale: options.stale) }
        if options.json { return try printJSON(cluster) }
        print(ClusterText.status(cluster))
    }
}

struct ReadyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ready",
        abstract: "Exit 0 if the node at --api is ready (GET /readyz), 1 with the reason if not.",
        discussion: """
            Ready: the node knows a leader and has applied everything that leader had committed when it \
            last heard from it. The container image's HEALTHCHECK runs `flotilla ready --api 127.0.0.1:7101`.
            """)

    @OptionGroup var options: APIOptions

    func run() async throws {
        let readiness = try await withAPI(options) { try await $0.readiness() }
        print("ready: \(readiness.detail)")
    }
}

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Read and change the cluster's replicated settings.",
        subcommands: [Get.self, Set.self, Delete.self, List.self])

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print one setting's value.")
        @OptionGroup var options: APIOptions
        @Argument var key: String
        @Flag(help: "Read the contacted node's local copy (may be stale).") var stale = false

        func run() async throws {
            let value = try await withAPI(options) { try await $0.setting(key, stale: stale) }
            print(value ?? "")
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a setting (committed through the log).")
        @OptionGroup var options: APIOptions
        @Argument var key: String
        @Argument var value: String

        func run() async throws {
            _ = try await withAPI(options) { try await $0.setSetting(key, to: value) }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a setting.")
        @OptionGroup var options: APIOptions
        @Argument var key: String

        func run() async throws {
            _ = try await withAPI(options) { try await $0.deleteSetting(key) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every setting.")
        @OptionGroup var options: APIOptions
        @Flag(help: "Print JSON.") var json = false
        @Flag(help: "Read the contacted node's local copy (may be stale).") var stale = false

        func run() async throws {
            let settings = try await withAPI(options) { try await $0.settings(stale: stale) }
            if json { return try printJSON(settings) }
            print(
                TextTable.render(
                    header: ["KEY", "VALUE"], rows: settings.sorted { $0.key < $1.key }.map { [$0.key, $0.value] }))
        }
    }
}
