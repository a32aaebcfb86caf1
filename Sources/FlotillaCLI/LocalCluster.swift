// `flotilla local up|down`: a cluster of node processes on loopback, for trying Flotilla out.
public import ClusterModel
import Dispatch
import FlotillaAPI
public import FlotillaClient
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Starts and stops a cluster of `flotilla node` child processes on 127.0.0.1.
///
/// Node `nK` serves its client API on port 7100+K and peer RPC on 7200+K (the base is
/// configurable). Everything lives in one directory: `cluster.json` (the shared configuration),
/// `nK/` (data), `shared/` (the shared root every node mounts: volumes and VM disk files),
/// `nK.log` and `pids`.
public struct LocalCluster: Sendable {
    public var directory: String
    public var nodes: Int
    /// The `flotilla` binary to start nodes with.
    public var executable: String
    /// Node `nK` serves its API on `portBase + K` and peer RPC on `portBase + 100 + K`.
    public var portBase: Int
    /// The memory some nodes offer VMs (`--memory`), by node number; the others offer the default.
    public var memory: [Int: UInt64]

    public init(directory: String, nodes: Int, executable: String, portBase: Int = 7100, memory: [Int: UInt64] = [:]) {
        self.directory = directory
        self.nodes = nodes
        self.executable = executable
        self.portBase = portBase
        self.memory = memory
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The `flotilla` binary this process runs, to start nodes with.
    public static var thisExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    var pidsPath: String { directory + "/pids" }
    /// Absolute, as the nodes are started with it: `--config` with this path is what tells this
    /// cluster's nodes from other processes (a pids file outlives a reboot, and pids are reused).
    var configPath: String { URL(fileURLWithPath: directory).standardizedFileURL.path + "/cluster.json" }

    public func clientEndpoint(_ node: Int) -> Endpoint { Endpoint(host: "127.0.0.1", port: portBase + node) }

    /// Starts the nodes and waits until they have elected a leader; returns the child pids.
    public func start() async throws -> [Int32] {
        guard (1...9).contains(nodes) else {
            throw Failure(description: "--nodes must be 1–9 (ports \(portBase + 1)–\(portBase + 9)), got \(nodes)")
        }
        guard (1...65_000).contains(portBase) else {
            throw Failure(description: "--port-base must be 1–65000, got \(portBase)")
        }
        if let running = runningPids(), !running.isEmpty {
            throw Failure(
                description:
                    "a local cluster is already running from \(directory) (pids \(running.map(String.init).joined(separator: " "))); stop it with `flotilla local down --dir \(directory)`"
            )
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let members = (1...nodes).map { node in
            "    {\"id\": \"n\(node)\", \"peer\": \"127.0.0.1:\(portBase + 100 + node)\", \"client\": \"127.0.0.1:\(portBase + node)\"}"
        }
        let config = """
            {
              "cluster-id": "local",
              "data-dir": "\(directory)/{node}",
              "shared-root": "\(directory)/shared",
              "tick-ms": 50,
              "election-ticks": 10,
              "members": [
            \(members.joined(separator: ",\n"))
              ]
            }

            """
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)

        var pids: [Int32] = []
        for node in 1...nodes {
            do {
                pids.append(
                    try launch(
                        node: node, extraArguments: memory[node].map { ["--memory", String($0)] } ?? [],
                        freshLog: true))
            } catch {
                for pid in pids { kill(pid, SIGTERM) }
                throw error
            }
        }
        try pids.map(String.init).joined(separator: "\n").appending("\n").write(
            toFile: pidsPath, atomically: true, encoding: .utf8)

        // Wait for a leader (a CLI may poll; nodes report as soon as they know one).
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            for pid in pids where kill(pid, 0) != 0 {
                throw Failure(description: "node process \(pid) exited during start-up; see \(directory)/n*.log")
            }
            let client = APIClient(endpoint: clientEndpoint(1), timeout: .seconds(1))
            let leader = try? await client.status(stale: true).leader
            await client.close()
            if leader != nil { return pids }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw Failure(description: "no leader after 30 s; see \(directory)/n*.log")
    }

    /// Starts `flotilla node` for node `nK` of this directory's configuration, its output written
    /// to `nK.log` (emptied first with `freshLog`, else appended, to keep what the node said before
    /// it was killed); returns its pid.
    private func launch(node: Int, extraArguments: [String], freshLog: Bool) throws -> Int32 {
        let log = directory + "/n\(node).log"
        if freshLog || !FileManager.default.fileExists(atPath: log) {
            _ = FileManager.default.createFile(atPath: log, contents: nil)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["node", "--config", configPath, "--node-id", "n\(node)"] + extraArguments
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw Failure(description: "could not start \(executable): \(error)")
        }
        return process.processIdentifier
    }

    /// Starts one node of a cluster `start` made, again (after it was killed, or with
    /// `--force-new-cluster` or `--join true` in `extraArguments`), records its pid in line K of
    /// the pids file so `local down` stops it too, and waits until it serves its API (`/healthz`).
    /// Refused while that node still runs.
    public func startNode(_ node: Int, extraArguments: [String] = []) async throws -> Int32 {
        guard let config = FileManager.default.contents(atPath: configPath) else {
            throw Failure(
                description: "no local cluster in \(directory) (no cluster.json); start one with `flotilla local up`")
        }
        guard let client = Self.clientAddress(of: "n\(node)", config: config) else {
            throw Failure(description: "n\(node) is not a member of \(configPath)")
        }
        let recorded = (try? String(contentsOfFile: pidsPath, encoding: .utf8)) ?? ""
        let lines = recorded.split(separator: "\n", omittingEmptySubsequences: false)
        if node <= lines.count, let pid = Int32(lines[node - 1]), (runningPids() ?? []).contains(pid) {
            throw Failure(description: "n\(node) is running already (pid \(pid)); stop it first")
        }
        let pid = try launch(node: node, extraArguments: extraArguments, freshLog: false)
        try Self.recording(pid: pid, ofNode: node, in: recorded).write(
            toFile: pidsPath, atomically: true, encoding: .utf8)
        let api = APIClient(endpoint: client, timeout: .seconds(1))
        defer { Task { await api.close() } }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            guard isAlive(pid) else {
                throw Failure(
                    description: "n\(node) (pid \(pid)) exited during start-up; see \(directory)/n\(node).log")
            }
            if (try? await api.health()) != nil { return pid }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw Failure(
            description: "n\(node) (pid \(pid)) did not serve its API within 30 s; see \(directory)/n\(node).log")
    }

    /// The pids file's text with `pid` as node `node`'s line (line K for nK), other lines kept
    /// (empty ones added where none were recorded).
    public static func recording(pid: Int32, ofNode node: Int, in text: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        while lines.count < node { lines.append("") }
        lines[node - 1] = String(pid)
        return lines.joined(separator: "\n") + "\n"
    }

    /// A member's client address in a cluster configuration (`members[].client`), if it has one.
    static func clientAddress(of node: String, config: Data) -> Endpoint? {
        struct Config: Decodable {
            struct Member: Decodable {
                var id: String
                var client: String
            }
            var members: [Member]
        }
        guard let decoded = try? JSONDecoder().decode(Config.self, from: config),
            let member = decoded.members.first(where: { $0.id == node })
        else { return nil }
        return Endpoint(parsing: member.client)
    }

    /// The reference walkthrough's VMs: 1 GB startup, 512 MB minimum, 4 GB maximum, buffer 20, priority 50.
    public static let demoVMs = ["Finance", "Engineering", "Sales"]

    /// Waits until every node has registered, then creates the shared volume `csv1` and, with
    /// `demo`, the walkthrough's VMs, and starts them. Idempotent: what exists is left as it is,
    /// so a second `local up` on the same directory goes through. Returns what it did, a line each.
    /// A real guest for the demo VMs (`local up --driver qemu`): a kernel and an initramfs, copied
    /// onto volume csv1 where every node finds them.
    public struct RealGuest: Sendable {
        public var kernel: String
        public var initrd: String

        public init(kernel: String, initrd: String) {
            self.kernel = kernel
            self.initrd = initrd
        }
    }

    public func prepare(demo: Bool, client: APIClient, realGuest: RealGuest? = nil) async throws -> [String] {
        let deadline = ContinuousClock.now + .seconds(30)
        while try await client.nodes().count < nodes {
            guard ContinuousClock.now < deadline else {
                throw Failure(description: "the nodes did not all register within 30 s; see \(directory)/n*.log")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        var done: [String] = []
        if try await !client.volumes().contains(where: { $0.id == "csv1" }) {
            try await client.createVolume("csv1", coordinator: "n1")
            done.append("created volume csv1 (coordinator n1)")
        }
        guard demo else { return done }
        let existing = Dictionary(try await client.vms().map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var driver: GuestDriverView?
        if let realGuest {
            // On the volume, so a VM that fails over boots from the same files.
            let boot = directory + "/shared/volumes/csv1/boot"
            try FileManager.default.createDirectory(atPath: boot, withIntermediateDirectories: true)
            for (source, name) in [(realGuest.kernel, "vmlinuz"), (realGuest.initrd, "initramfs.cpio.gz")] {
                try? FileManager.default.removeItem(atPath: boot + "/" + name)
                try FileManager.default.copyItem(atPath: source, toPath: boot + "/" + name)
            }
            driver = GuestDriverView(
                kind: "qemu", kernel: "csv1:boot/vmlinuz", initrd: "csv1:boot/initramfs.cpio.gz", append: "quiet")
            done.append("copied the real guest's kernel and initramfs to csv1:boot/")
        }
        for name in Self.demoVMs {
            var vm = existing[name]
            if vm == nil {
                // Real guests are small (software emulation boots them in seconds): 256 MiB, balloonable to 128.
                let creation =
                    driver == nil
                    ? VMCreation(
                        name: name, startup: 1 << 30, minimum: 512 << 20, maximum: 4 << 30, buffer: 20, priority: 50,
                        volume: "csv1")
                    : VMCreation(
                        name: name, startup: 256 << 20, minimum: 128 << 20, maximum: 256 << 20, buffer: 20,
                        priority: 50, volume: "csv1", driver: driver)
                vm = try await client.createVM(creation)
                done.append("created VM \(name)" + (driver == nil ? "" : " (QEMU)"))
            }
            if vm?.state == "stopped" {
                let started = try await client.startVM(name)
                done.append("started \(name) on \(started.owner ?? "no node: \(started.pendingReason ?? "")")")
            }
        }
        return done
    }

    /// The pids recorded by `start` that are still this cluster's nodes (alive, and a `flotilla node`
    /// started with this directory's configuration), or nil when none were recorded. A recorded pid
    /// that another program now has is never counted, so never signalled.
    public func runningPids() -> [Int32]? {
        guard let text = try? String(contentsOfFile: pidsPath, encoding: .utf8) else { return nil }
        return text.split(whereSeparator: \.isNewline).compactMap { Int32($0) }.filter { pid in
            guard kill(pid, 0) == 0, let arguments = Self.commandLine(of: pid) else { return false }
            return Self.isNode(arguments, of: configPath)
        }
    }

    /// Whether a process's arguments are a `flotilla node` started with the configuration at `configPath`.
    public static func isNode(_ arguments: [String], of configPath: String) -> Bool {
        guard arguments.count >= 2, arguments[0].split(separator: "/").last == "flotilla", arguments[1] == "node"
        else { return false }
        return zip(arguments.dropFirst(2), arguments.dropFirst(3)).contains { $0 == "--config" && $1 == configPath }
    }

    /// A process's arguments from /proc (nil when it is gone or cannot be read).
    static func commandLine(of pid: Int32) -> [String]? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else { return nil }
        return data.split(separator: 0, omittingEmptySubsequences: false).dropLast().map {
            String(decoding: $0, as: UTF8.self)
        }
    }

    /// Sends SIGTERM to every node and waits for them to exit (SIGKILL after `grace`).
    public func stop(grace: Duration = .seconds(10)) async -> Int {
        let pids = runningPids() ?? []
        for pid in pids { kill(pid, SIGTERM) }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, pids.contains(where: { isAlive($0) }) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for pid in pids where isAlive(pid) { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: pidsPath)
        return pids.count
    }

    /// Alive and not a zombie: reaps our own children so their exit is seen.
    private func isAlive(_ pid: Int32) -> Bool {
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { return false }
        return kill(pid, 0) == 0
    }
}
