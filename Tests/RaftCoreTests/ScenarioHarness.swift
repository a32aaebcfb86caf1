// An in-test cluster of RaftNodes on a hand-driven network, run by scenario scripts.
import ClusterModel
import RaftCore

/// Drives RaftNodes the way a shell would (persist, send, apply, advance) and prints what happens.
///
/// Everything is deterministic: nodes are visited in id order, messages are delivered in the order
/// they were sent, and each node's election jitter comes from a generator seeded by its id.
struct ScenarioHarness {
    /// What a node's shell has made durable, and its state machine (a list of applied commands).
    struct Shell {
        var node: RaftNode
        var configuration: RaftConfiguration
        var bootstrapMembership: Membership
        var hardState = HardState()
        var snapshot: Snapshot?
        var entries: [Entry] = []
        var applied: [String] = []
        /// Reads served to this node's clients, as they become applicable.
        var waitingReads: [ReadState] = []
        var isDown = false
    }

    var shells: [NodeID: Shell] = [:]
    /// Messages sent and not yet delivered, in send order.
    var network: [Message] = []
    /// Links that drop every message (both directions are listed).
    var cutLinks: Set<[NodeID]> = []
    var defaults = RaftConfiguration(id: 1)
    var seed: UInt64 = 0

    var nodeIDs: [NodeID] { shells.keys.sorted() }

    // MARK: Commands.

    mutating func run(_ line: String) throws -> [String] {
        var words = line.split(separator: " ").map(String.init)
        let command = words.removeFirst()
        var output: [String] = []
        switch command {
        case "add-nodes": try addNodes(words, output: &output)
        case "reset":
            self = ScenarioHarness()
            output.append("a new, empty cluster")
        case "add-node": try addJoiningNode(words, output: &output)
        case "campaign":
            for id in try nodes(words) { shells[id]!.node.campaign() }
        case "tick":
            try tick(words)
        case "elapse":
            try elapse(words, output: &output)
        case "process":
            for id in try nodes(words) { process(id, output: &output) }
        case "deliver":
            try deliver(words, output: &output)
        case "drop":
            try drop(words, output: &output)
        case "stabilize":
            try stabilize(words, output: &output)
        case "partition":
            try partition(words)
        case "heal":
            cutLinks = []
        case "cut":
            // `cut 1 3`: messages from n1 to n3 are lost; n3 can still reach n1.
            cutLinks.insert([try node(words, at: 0), try node(words, at: 1)])
        case "crash":
            for id in try nodes(words) {
                shells[id]!.isDown = true
                network.removeAll { $0.to == id || $0.from == id }
            }
        case "restart":
            for id in try nodes(words) { try restart(id, output: &output) }
        case "propose":
            try propose(words, output: &output)
        case "read-index":
            let id = try node(words, at: 0)
            let context = words.count > 1 ? words[1] : ""
            do { try shells[id]!.node.readIndex(context: Array(context.utf8)) } catch {
                output.append("error: \(error)")
            }
        case "transfer":
            let from = try node(words, at: 0)
            let to = try node(words, at: 1)
            do { try shells[from]!.node.transferLeadership(to: to) } catch { output.append("error: \(error)") }
        case "change":
            try change(words, output: &output)
        case "compact":
            try compact(words, output: &output)
        case "status":
            for id in try nodes(words) { output.append(contentsOf: status(of: id)) }
        case "log":
            for id in try nodes(words) { output.append(log(of: id)) }
        case "applied":
            for id in try nodes(words) { output.append("\(id): \(shells[id]!.applied.joined(separator: " "))") }
        case "restore-log":
            try restoreLog(words, output: &output)
        default:
            throw ScenarioError("unknown command `\(command)`")
        }
        return output.isEmpty ? ["ok"] : output
    }

    /// `add-nodes 3 [voters=1,2,3] [learners=4] [prevote=false] [checkquorum=false] [election=10]
    /// [heartbeat=1] [inflight=256] [inflight-bytes=N] [max-msg-bytes=N] [chunk=N] [lag=N] [seed=N]`
    private mutating func addNodes(_ words: [String], output: inout [String]) throws {
        guard let count = words.first.flatMap({ UInt64($0) }) else { throw ScenarioError("add-nodes needs a count") }
        let options = try keyValues(words.dropFirst())
        try applyDefaults(options)
        let all = (1...count).map { NodeID($0) }
        var membership = Membership(voters: Set(all))
        if let voters = options["voters"] { membership.voters = Set(try ids(voters)) }
        if let learners = options["learners"] {
            membership.learners = Set(try ids(learners))
            membership.voters.subtract(membership.learners)
        }
        for id in all {
            try create(id, membership: membership)
        }
        output.append("created \(all.map(\.description).joined(separator: " ")) with \(membership)")
    }

    /// `add-node 4`: a fresh node that will join the running cluster (empty membership).
    private mutating func addJoiningNode(_ words: [String], output: inout [String]) throws {
        let id = try node(words, at: 0, mustExist: false)
        try create(id, membership: Membership())
        output.append("created \(id) (joining, no membership yet)")
    }

    private mutating func applyDefaults(_ options: [String: String]) throws {
        func int(_ key: String) throws -> Int? {
            guard let text = options[key] else { return nil }
            guard let value = Int(text) else { throw ScenarioError("\(key)=\(text) is not a number") }
            return value
        }
        if let text = options["prevote"] { defaults.preVote = text == "true" }
        if let text = options["checkquorum"] { defaults.checkQuorum = text == "true" }
        if let value = try int("election") { defaults.electionTicks = value }
        if let value = try int("heartbeat") { defaults.heartbeatTicks = value }
        if let value = try int("inflight") { defaults.maxInflightMessages = value }
        if let value = try int("inflight-bytes") { defaults.maxInflightBytes = value }
        if let value = try int("max-msg-bytes") { defaults.maxEntriesBytesPerMessage = value }
        if let value = try int("chunk") { defaults.snapshotChunkBytes = value }
        if let value = try int("lag") { defaults.maxPromotionLag = UInt64(value) }
        if let value = try int("seed") { seed = UInt64(value) }
    }

    private mutating func create(_ id: NodeID, membership: Membership) throws {
        var configuration = defaults
        configuration.id = id
        let node = try RaftNode(
            configuration: configuration,
            membership: membership,
            random: SeededGenerator(seed: seed &+ id.rawValue)
        )
        shells[id] = Shell(node: node, configuration: configuration, bootstrapMembership: membership)
    }

    /// `restore-log 1 term=3 terms=1,1,1,4,4 [commit=2]`: rebuilds a node as if its disk held this log
    /// (entries get commands named `t<term>i<index>`), to set up the paper's figures.
    private mutating func restoreLog(_ words: [String], output: inout [String]) throws {
        let id = try node(words, at: 0)
        let options = try keyValues(words.dropFirst())
        let terms = try (options["terms"] ?? "").split(separator: ",").map { text in
            guard let value = UInt64(text) else { throw ScenarioError("terms: \(text) is not a number") }
            return Term(value)
        }
        let entries = terms.enumerated().map { offset, term in
            let index = LogIndex(UInt64(offset + 1))
            return Entry(term: term, index: index, payload: .command(Array("t\(term)i\(index)".utf8)))
        }
        let term = Term(UInt64(options["term"] ?? "") ?? terms.last?.rawValue ?? 0)
        let commit = LogIndex(UInt64(options["commit"] ?? "") ?? 0)
        var shell = shells[id]!
        shell.hardState = HardState(term: term, vote: nil, commit: commit)
        shell.entries = entries
        shell.snapshot = nil
        shell.applied = []
        shells[id] = shell
        try restart(id, output: &output)
    }

    private mutating func restart(_ id: NodeID, output: inout [String]) throws {
        var shell = shells[id]!
        shell.node = try RaftNode(
            configuration: shell.configuration,
            hardState: shell.hardState,
            snapshot: shell.snapshot,
            entries: shell.entries,
            bootstrapMembership: shell.bootstrapMembership,
            random: SeededGenerator(seed: seed &+ id.rawValue &+ 1000)
        )
        shell.applied = shell.snapshot.map { Self.commands(in: $0.data) } ?? []
        shell.waitingReads = []
        shell.isDown = false
        shells[id] = shell
        output.append("\(id) restarted: \(shell.hardState), log \(describe(shell.node.status))")
    }

    private mutating func tick(_ words: [String]) throws {
        var times = 1
        var targets = words
        if let last = words.last, last.hasPrefix("x"), let count = Int(last.dropFirst()) {
            times = count
            targets.removeLast()
        }
        let ids = try nodes(targets)
        for _ in 0..<times {
            for id in ids where !shells[id]!.isDown { shells[id]!.node.tick() }
        }
    }

    /// `elapse all x20`: twenty rounds of one tick on each node followed by `stabilize`, so that
    /// timers and messages interleave as in a real cluster whose network is much faster than a tick.
    /// With `until=leader` it stops after the first round that ends with one of those nodes leading a
    /// term newer than any term led when the command started.
    private mutating func elapse(_ words: [String], output: inout [String]) throws {
        var times = 1
        var targets = words.filter { !$0.hasPrefix("until=") }
        let untilLeader = words.contains("until=leader")
        if let last = targets.last, last.hasPrefix("x"), let count = Int(last.dropFirst()) {
            times = count
            targets.removeLast()
        }
        let ids = try nodes(targets)
        let termsLedBefore = shells.values.filter { $0.node.role == .leader }.map(\.node.term).max() ?? 0
        for round in 1...max(1, times) {
            for id in ids where !shells[id]!.isDown { shells[id]!.node.tick() }
            var lines: [String] = []
            try stabilize([], output: &lines)
            if !lines.isEmpty {
                output.append("tick \(round):")
                output.append(contentsOf: lines)
            }
            let newLeader = ids.contains {
                !shells[$0]!.isDown && shells[$0]!.node.role == .leader && shells[$0]!.node.term > termsLedBefore
            }
            if untilLeader && newLeader { return }
        }
    }

    private mutating func propose(_ words: [String], output: inout [String]) throws {
        let id = try node(words, at: 0)
        guard words.count > 1 else { throw ScenarioError("propose needs a command") }
        let options = try keyValues(words.dropFirst(2))
        var request: RequestID?
        if let client = options["client"].flatMap(UInt64.init), let sequence = options["seq"].flatMap(UInt64.init) {
            request = RequestID(client: client, sequence: sequence)
        }
        do {
            let index = try shells[id]!.node.propose(Array(words[1].utf8), requestID: request)
            output.append("\(id) appended \(words[1]) at \(index)")
        } catch {
            output.append("error: \(error)")
        }
    }

    private mutating func change(_ words: [String], output: inout [String]) throws {
        let id = try node(words, at: 0)
        guard words.count == 3 else { throw ScenarioError("usage: change <leader> add-learner|promote|remove <node>") }
        let target = try node(words, at: 2, mustExist: false)
        let change: MembershipChange
        switch words[1] {
        case "add-learner": change = .addLearner(target)
        case "promote": change = .promote(target)
        case "remove": change = .remove(target)
        default: throw ScenarioError("unknown membership change `\(words[1])`")
        }
        do {
            let index = try shells[id]!.node.changeMembership(change)
            output.append("\(id) appended \(change) at \(index)")
        } catch {
            output.append("error: \(error)")
        }
    }

    /// `compact 1 [index]`: node 1's application snapshots its state at its applied index.
    private mutating func compact(_ words: [String], output: inout [String]) throws {
        let id = try node(words, at: 0)
        var shell = shells[id]!
        let index = words.count > 1 ? LogIndex(UInt64(words[1]) ?? 0) : shell.node.status.applied
        do {
            let snapshot = try shell.node.compact(
                snapshotAt: index,
                data: Array(shell.applied.joined(separator: ",").utf8)
            )
            shell.snapshot = snapshot
            shell.entries.removeAll { $0.index <= index }
            output.append("\(id) snapshot \(snapshot.metadata) data=\(shell.applied.joined(separator: ","))")
        } catch {
            output.append("error: \(error)")
        }
        shells[id] = shell
    }

    // MARK: The shell's loop.

    /// Does one `Ready`'s duties in their documented order, printing what it contained.
    mutating func process(_ id: NodeID, output: inout [String]) {
        var shell = shells[id]!
        guard !shell.isDown, shell.node.hasReady else { return }
        let ready = shell.node.ready()
        var lines: [String] = []
        let head = "\(id): \(ready.role) leader=\(ready.leader.map(\.description) ?? "-")"
        // 2, early: a leader whose term and vote are durable sends while it writes (marked only
        // when there is something to write, so heartbeat rounds read as before).
        let sendsEarly = ready.canSendBeforePersisting && (!ready.entries.isEmpty || ready.hardState != nil)
        if sendsEarly {
            for message in ready.messages {
                network.append(message)
                lines.append("  send (before persisting) \(message)")
            }
        }
        // 1. Persist.
        if let snapshot = ready.snapshot {
            shell.snapshot = snapshot
            shell.entries = []
            lines.append("  persist snapshot \(snapshot.metadata)")
        }
        if let first = ready.entries.first {
            shell.entries.removeAll { $0.index >= first.index }
            shell.entries.append(contentsOf: ready.entries)
            lines.append("  persist entries: " + ready.entries.map { "[\($0)]" }.joined(separator: " "))
        }
        if let hardState = ready.hardState {
            shell.hardState = hardState
            lines.append("  persist \(hardState)")
        }
        // 2. Send.
        for message in ready.messages where !sendsEarly {
            network.append(message)
            lines.append("  send \(message)")
        }
        // 3. Apply.
        if let snapshot = ready.snapshot {
            shell.applied = Self.commands(in: snapshot.data)
            lines.append("  restore snapshot data=\(shell.applied.joined(separator: ","))")
        }
        for committed in ready.committedEntries {
            switch committed.entry.payload {
            case .command(let bytes):
                let command = String(decoding: bytes, as: UTF8.self)
                if committed.isDuplicate {
                    lines.append("  apply \(committed.entry.index): \(command) (duplicate, skipped)")
                } else {
                    shell.applied.append(command)
                    lines.append("  apply \(committed.entry.index): \(command)")
                }
            case .noop:
                lines.append("  apply \(committed.entry.index): noop")
            case .membership(let membership):
                lines.append("  apply \(committed.entry.index): \(membership)")
            }
        }
        // 4. Reads.
        shell.waitingReads.append(contentsOf: ready.readStates)
        let appliedIndex = ready.committedEntries.last?.entry.index ?? shell.node.status.applied
        let servable = shell.waitingReads.filter { $0.index <= max(appliedIndex, ready.snapshot?.metadata.index ?? 0) }
        shell.waitingReads.removeAll { $0.index <= max(appliedIndex, ready.snapshot?.metadata.index ?? 0) }
        for read in servable {
            lines.append("  read \(String(decoding: read.context, as: UTF8.self)) served at index \(read.index)")
        }
        for read in shell.waitingReads where ready.readStates.contains(read) {
            lines.append("  read \(String(decoding: read.context, as: UTF8.self)) waits for index \(read.index)")
        }
        // 5. Advance.
        shell.node.advance(ready)
        shells[id] = shell
        output.append(head)
        output.append(contentsOf: lines)
    }

    /// `deliver [to ...]`: hands every pending message (for the given recipients) to its node.
    private mutating func deliver(_ words: [String], output: inout [String]) throws {
        let targets = Set(try nodes(words))
        let batch = network.filter { targets.contains($0.to) }
        network.removeAll { targets.contains($0.to) }
        deliver(batch, output: &output)
    }

    private mutating func deliver(_ batch: [Message], output: inout [String]) {
        for message in batch {
            guard let shell = shells[message.to], !shell.isDown else {
                output.append("dropped (\(message.to) is down): \(message)")
                continue
            }
            if cutLinks.contains([message.from, message.to]) {
                output.append("dropped (partition): \(message)")
                continue
            }
            do { try shells[message.to]!.node.step(message) } catch { output.append("error: \(error)") }
        }
    }

    /// `drop 1 3`: loses every pending message from node 1 to node 3 (`drop 1` — everything from 1);
    /// `drop 1 3 #2` loses only the second of them.
    private mutating func drop(_ words: [String], output: inout [String]) throws {
        var words = words
        var only: Int?
        if let last = words.last, last.hasPrefix("#") {
            guard let position = Int(last.dropFirst()), position >= 1 else { throw ScenarioError("bad `\(last)`") }
            only = position
            words.removeLast()
        }
        let from = try node(words, at: 0)
        let to = words.count > 1 ? try node(words, at: 1) : nil
        var matching = network.indices.filter { network[$0].from == from && (to == nil || network[$0].to == to) }
        if let only {
            guard only <= matching.count else { throw ScenarioError("only \(matching.count) messages match") }
            matching = [matching[only - 1]]
        }
        for position in matching { output.append("dropped: \(network[position])") }
        for position in matching.reversed() { network.remove(at: position) }
    }

    /// Processes and delivers until nothing moves (ticks are never added).
    private mutating func stabilize(_ words: [String], output: inout [String]) throws {
        let ids = try nodes(words)
        for _ in 0..<10_000 {
            var moved = false
            for id in ids where shells[id]!.node.hasReady && !shells[id]!.isDown {
                process(id, output: &output)
                moved = true
            }
            let batch = network.filter { ids.contains($0.to) }
            network.removeAll { ids.contains($0.to) }
            if !batch.isEmpty {
                deliver(batch, output: &output)
                moved = true
            }
            if !moved { return }
        }
        throw ScenarioError("stabilize did not settle after 10000 rounds")
    }

    /// `partition 1 | 2 3`: cuts every link between the groups (nodes not listed are unaffected).
    private mutating func partition(_ words: [String]) throws {
        var groups: [[NodeID]] = [[]]
        for word in words {
            if word == "|" { groups.append([]) } else { groups[groups.count - 1].append(try node([word], at: 0)) }
        }
        cutLinks = []
        for (first, group) in groups.enumerated() {
            for other in groups[(first + 1)...] {
                for a in group {
                    for b in other {
                        cutLinks.insert([a, b])
                        cutLinks.insert([b, a])
                    }
                }
            }
        }
    }

    // MARK: Printing.

    func status(of id: NodeID) -> [String] {
        let shell = shells[id]!
        let status = shell.node.status
        var lines = [
            "\(id): \(status.role) term=\(status.term) vote=\(status.vote.map(\.description) ?? "-") "
                + "leader=\(status.leader.map(\.description) ?? "-") commit=\(status.commit) applied=\(status.applied) "
                + "log=\(describe(status))" + (shell.isDown ? " (down)" : "")
        ]
        lines.append("  \(status.membership)" + (status.isLearner ? " (learner)" : ""))
        if let target = status.leadershipTransferTarget { lines.append("  transferring leadership to \(target)") }
        for (peer, follower) in status.progress.sorted(by: { $0.key < $1.key }) {
            let mode: String =
                switch follower.mode {
                case .probe: "probe"
                case .replicate: "replicate"
                case .snapshot(let index): "snapshot(\(index))"
                }
            lines.append(
                "  \(peer): match=\(follower.match) next=\(follower.next) \(mode)"
                    + (follower.inflightMessages > 0 ? " inflight=\(follower.inflightMessages)" : "")
            )
        }
        return lines
    }

    func describe(_ status: RaftStatus) -> String {
        if status.snapshotIndex == 0 { return status.lastIndex == 0 ? "(empty)" : "1...\(status.lastIndex)" }
        let entries = status.lastIndex < status.firstIndex ? "no entries" : "\(status.firstIndex)...\(status.lastIndex)"
        return "snapshot \(status.snapshotIndex) + \(entries)"
    }

    func log(of id: NodeID) -> String {
        let entries = shells[id]!.node.logEntries(from: 0)
        return "\(id) log: " + (entries.isEmpty ? "(empty)" : entries.map { "[\($0)]" }.joined(separator: " "))
    }

    static func commands(in data: [UInt8]) -> [String] {
        data.isEmpty ? [] : String(decoding: data, as: UTF8.self).split(separator: ",").map(String.init)
    }

    // MARK: Arguments.

    private func nodes(_ words: [String]) throws -> [NodeID] {
        if words.isEmpty || words == ["all"] { return nodeIDs }
        return try words.map { word in try node([word], at: 0) }
    }

    private func node(_ words: [String], at position: Int, mustExist: Bool = true) throws -> NodeID {
        guard position < words.count, let id = NodeID(parsing: words[position]) else {
            throw ScenarioError("expected a node id at argument \(position + 1) of \(words)")
        }
        if mustExist && shells[id] == nil { throw ScenarioError("no node \(id)") }
        return id
    }

    private func ids(_ text: String) throws -> [NodeID] {
        try text.split(separator: ",").map { part in
            guard let id = NodeID(parsing: part) else { throw ScenarioError("`\(part)` is not a node id") }
            return id
        }
    }

    private func keyValues(_ words: some Sequence<String>) throws -> [String: String] {
        var result: [String: String] = [:]
        for word in words {
            let pieces = word.split(separator: "=", maxSplits: 1).map(String.init)
            guard pieces.count == 2 else { throw ScenarioError("expected key=value, found `\(word)`") }
            result[pieces[0]] = pieces[1]
        }
        return result
    }
}
