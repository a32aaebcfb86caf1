import ArgumentParser
// The client commands: status and settings, against any node's API.
import ClusterModel
import Foundation
import Node

/// How a client command finds a node: --api, then FLOTILLA_API, then the local cluster's first node.
struct APIOptions: ParsableArguments {
    @Option(help: "A node's client API as host:port (or FLOTILLA_API).")
    var api: String?

    func client() throws -> APIClient {
        let text = api ?? ProcessInfo.processInfo.environment["FLOTILLA_API"] ?? "127.0.0.1:7101"
        let trimmed = text.replacingOccurrences(of: "http://", with: "")
        guard let endpoint = Endpoint(parsing: trimmed.hasSuffix("/") ? String(trimmed.dropLast()) : trimmed) else {
            throw ValidationError("--api \(text) is not host:port (e.g. 127.0.0.1:7101)")
        }
        return APIClient(endpoint: endpoint)
    }
}

/// Runs a client call and turns API errors into one clear line and a non-zero exit.
func withAPI<T>(_ options: APIOptions, _ body: (APIClient) async throws -> T) async throws -> T {
    let client = try options.client()
    defer { Task { await client.close() } }
    do {
        return try await body(client)
    } catch let error as APIError {
        FileHandle.standardError.write(Data("flotilla: \(error.description)\n".utf8))
        throw ExitCode.failure
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the leader, term, commit index and every member.")

    @OptionGroup var options: APIOptions
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Answer from the contacted node's own, possibly stale, view.") var stale = false

    func run() async throws {
        let status = try await withAPI(options) { try await $0.status(stale: stale) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
            return
        }
        print(
            "cluster \(status.cluster)  leader \(status.leader ?? "none")  term \(status.term)  commit \(status.commitIndex)"
        )
        print(
            Table.render(
                header: ["NODE", "ROLE", "STATE", "MATCH", "CLIENT", "PEER"],
                rows: status.members.map {
                    [
                        $0.id, $0.role, $0.state, $0.matchIndex.map(String.init) ?? "-", $0.clientAddress ?? "-",
                        $0.peerAddress ?? "-",
                    ]
                }))
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
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(settings), as: UTF8.self))
                return
            }
            print(
                Table.render(
                    header: ["KEY", "VALUE"], rows: settings.sorted { $0.key < $1.key }.map { [$0.key, $0.value] }))
        }
    }
}

/// Aligned text tables for the CLI.
enum Table {
    static func render(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
