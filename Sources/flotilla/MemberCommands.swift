// `flotilla members …` and `flotilla leader transfer`: change who is in the cluster and who leads.
import ArgumentParser
import FlotillaClient
import Node

struct MembersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "members", abstract: "Add, promote and remove cluster members (one change at a time).",
        subcommands: [Add.self, Promote.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a node as a learner; start it with `flotilla node --join true`, then promote it.")
        @OptionGroup var options: APIOptions
        @Argument(help: "The new node's id, e.g. n4.") var id: String
        @Option(help: "Its peer address, host:port.") var peer: String
        @Option(help: "Its client API address, host:port.") var client: String

        func run() async throws {
            _ = try await withAPI(options) { try await $0.addMember(id, peer: peer, client: client) }
            print("\(id) added as a learner; promote it once it has caught up: flotilla members promote \(id)")
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a caught-up learner a voter.")
        @OptionGroup var options: APIOptions
        @Argument var id: String

        func run() async throws {
            _ = try await withAPI(options) { try await $0.promoteMember(id) }
            print("\(id) is a voter")
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a node for good: from the Raft membership, then its record.",
            discussion: """
                Refused while it is up, runs VMs, coordinates volumes, takes part in migrations or leads, \
                or when the voters left could not form a majority; the refusal says what to do \
                (drain it first: flotilla node drain ID). Stop its process afterwards: it takes no part.
                """)
        @OptionGroup var options: APIOptions
        @Argument var id: String

        func run() async throws {
            _ = try await withAPI(options) { try await $0.removeMember(id) }
            print("\(id) removed from the cluster; stop its process, it takes no part any more")
        }
    }
}

struct LeaderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leader", abstract: "Move Raft leadership.", subcommands: [Transfer.self])

    struct Transfer: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Hand leadership to a caught-up voter.")
        @OptionGroup var options: APIOptions
        @Argument var id: String

        func run() async throws {
            try await withAPI(options) { try await $0.transferLeadership(to: id) }
            print("leadership is moving to \(id)")
        }
    }
}
