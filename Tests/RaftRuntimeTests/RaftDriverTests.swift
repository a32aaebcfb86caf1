import ClusterModel
// Three Raft drivers with real disks and an in-memory network: writes commit, survive restarts.
import FlotillaTestKit
import Foundation
import RaftCore
import RaftRuntime
import RaftStorage
import Synchronization
import TestSupport
import Testing

/// Appends every command; answers with the count so far.
private struct CommandLog: ReplicatedStateMachine {
    var commands: [[UInt8]] = []
    /// Where the last command applied stood in the log (not kept in snapshots).
    var lastIndex: LogIndex = 0

    mutating func apply(_ command: [UInt8], at index: LogIndex) -> [UInt8] {
        commands.append(command)
        lastIndex = index
        return Array(String(commands.count).utf8)
    }

    func snapshot() -> [UInt8] {
        var writer = ByteWriter()
        writer.writeVarint(commands.count)
        for command in commands { writer.write(command) }
        return writer.bytes
    }

    mutating func restore(from snapshot: [UInt8]) throws {
        var reader = ByteReader(snapshot)
        commands = try (0..<reader.readCount()).map { _ in try reader.readBytes() }
    }
}

/// Delivers messages between drivers in this process; a node can be cut off.
private final class MemoryNetwork: Sendable {
    private let drivers = Mutex<[NodeID: RaftDriver<CommandLog>]>([:])
    /// Every message the drivers handed to the network, in order, and who waits for what in them.
    private let log = Mutex<(sent: [Message], waiters: [Waiter])>(([], []))

    private struct Waiter {
        var condition: @Sendable ([Message]) -> Bool
        var continuation: CheckedContinuation<Void, Never>
    }

    var sentCount: Int { log.withLock { $0.sent.count } }

    /// Returns once the messages sent so far satisfy `condition` (checked at every send).
    func waitUntilSent(_ condition: @escaping @Sendable ([Message]) -> Bool) async {
        await withCheckedContinuation { continuation in
            let ready = log.withLock { log in
                if condition(log.sent) { return true }
                log.waiters.append(Waiter(condition: condition, continuation: continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// The messages sent from index `start` on.
    func sent(from start: Int) -> [Message] { log.withLock { Array($0.sent[start...]) } }

    fileprivate func record(_ messages: [Message]) {
        let satisfied = log.withLock { log in
            log.sent += messages
            let sent = log.sent
            let satisfied = log.waiters.filter { $0.condition(sent) }
            log.waiters.removeAll { $0.condition(sent) }
            return satisfied
        }
        for waiter in satisfied { waiter.continuation.resume() }
    }

    func attach(_ id: NodeID, _ driver: RaftDriver<CommandLog>) { drivers.withLock { $0[id] = driver } }
    func detach(_ id: NodeID) { _ = drivers.withLock { $0.removeValue(forKey: id) } }

    func transport() -> some PeerTransport { Transport(network: self) }

    struct Transport: PeerTransport {
        let network: MemoryNetwork
        func send(_ messages: [Message]) {
            network.record(messages)
            for (to, batch) in Dictionary(grouping: messages, by: \.to) {
                // Through the wire format, as a real peer would receive them.
                let decoded = batch.compactMap { try? Message(wireBytes: $0.wireBytes) }
                guard let driver = network.drivers.withLock({ $0[to] }) else { continue }
                Task { await driver.receive(decoded) }
            }
        }
    }
}

private struct NoLeaderAccepted: Error {
    var command: String
}

private struct Cluster: ~Copyable {
    let root = try! TemporaryDirectory()
    let network = MemoryNetwork()
    let members: Set<NodeID> = [1, 2, 3]
    var drivers: [NodeID: RaftDriver<CommandLog>] = [:]
    var emptyAppendDelay: Duration = .microseconds(500)
    var leaderSyncsOffLoop = true
    /// Per node; 2 ms when not given.
    var tickDurations: [NodeID: Duration] = [:]
    /// Nodes keep lease promises and take read leases, as a node does (`LeasePromise`).
    var readLeases = false
    /// Nodes that keep lease promises (the core knows their tick) though `readLeases` is off.
    var promiseKeepers: Set<NodeID> = []
    /// Nodes whose ticker sleeps on a clock the test advances (the others on the system's).
    var clocks: [NodeID: ManualClock] = [:]

    mutating func start(_ id: NodeID) throws {
        let (storage, recovered) = try RaftDiskStorage.open(directory: "\(root.path)/\(id)")
        let tick = tickDurations[id] ?? .milliseconds(2)
        let keepsPromises = readLeases || promiseKeepers.contains(id)
        let driver = try RaftDriver(
            configuration: RaftConfiguration(
                id: id, electionTicks: 10, heartbeatTicks: 1, tickInterval: keepsPromises ? tick : nil,
                readLease: readLeases ? LeasePromise.standardLease(tick: tick) : nil),
            bootstrapMembership: Membership(voters: members), storage: storage, recovered: recovered,
            machine: CommandLog(), transport: network.transport(), tickDuration: tick,
            snapshotInterval: 40, seed: id.rawValue, emptyAppendDelay: emptyAppendDelay,
            leaderSyncsOffLoop: leaderSyncsOffLoop,
            clock: clocks[id].map { NodeClock($0) } ?? NodeClock(ContinuousClock()))
        drivers[id] = driver
        network.attach(id, driver)
        Task { await driver.start() }
    }

    mutating func kill(_ id: NodeID) async {
        network.detach(id)
        await drivers.removeValue(forKey: id)?.stop()
    }

    /// Proposes through whichever node leads, following leader hints. `retried` says the request
    /// was proposed more than once (a leader changed meanwhile).
    func write(_ text: String, sequence: UInt64) async throws -> (answer: String, retried: Bool) {
        try await Writer(drivers: drivers).write(text, client: 1, sequence: sequence)
    }

    /// Node `id`'s commands by a linearizable read, asked again while it times out or finds no
    /// leader: on a loaded machine 2 ms ticks and 20 ms elections can churn leadership for longer
    /// than one read's budget. A node that never catches up still fails (every attempt times out).
    func commands(readOn id: NodeID) async throws -> [[UInt8]] {
        var last: (any Error)?
        for _ in 0..<8 {
            do {
                return try await drivers[id]!.linearizableRead(timeoutTicks: 2000) { $0.commands }
            } catch let error as RaftDriverError {
                last = error
                _ = await drivers[id]!.awaitLeader()
            }
        }
        throw last!
    }
}

/// Writes through the cluster's drivers; a value that concurrent tasks can each hold.
private struct Writer: Sendable {
    let drivers: [NodeID: RaftDriver<CommandLog>]

    func write(_ text: String, client: UInt64, sequence: UInt64) async throws -> (answer: String, retried: Bool) {
        var target = await drivers.values.first!.awaitLeader()
        for attempt in 0..<200 {
            guard let driver = drivers[target] else {
                target = await drivers.values.first!.awaitLeader()
                continue
            }
            do {
                let answer = try await driver.propose(
                    Array(text.utf8), requestID: RequestID(client: client, sequence: sequence),
                    timeoutTicks: 500)
                return (String(decoding: answer, as: UTF8.self), attempt > 0)
            } catch let error as RaftDriverError {
                if case .notLeader(let hint?) = error.kind {
                    target = hint
                } else {
                    target = await driver.awaitLeader()
                }
            }
        }
        throw NoLeaderAccepted(command: text)
    }
}

@Test(.timeLimit(.minutes(1)))
func writesCommitAndSurviveARestart() async throws {
    var cluster = Cluster()
    for id in cluster.members { try cluster.start(id) }

    for number in 1...30 {
        let (answer, retried) = try await cluster.write("w\(number)", sequence: UInt64(number))
        // A retry of a request the old leader already committed is answered as a duplicate
        // (applied once, no answer of its own); the log check below proves it was applied once.
        #expect(answer == String(number) || (retried && answer.isEmpty), "write \(number) answered \(answer)")
    }

    // Kill a follower, write more, bring it back from its disk: it catches up.
    let leader = await cluster.drivers[1]!.awaitLeader()
    let victim = cluster.members.sorted().first { $0 != leader }!
    await cluster.kill(victim)
    for number in 31...100 { _ = try await cluster.write("w\(number)", sequence: UInt64(number)) }
    try cluster.start(victim)
    _ = try await cluster.write("w101", sequence: 101)

    let expected = (1...101).map { Array("w\($0)".utf8) }
    // A restarted node answers linearizable reads once it knows the leader (the read goes through it).
    _ = await cluster.drivers[victim]!.awaitLeader()
    let seen = try await cluster.commands(readOn: victim)
    #expect(seen == expected)
    for id in cluster.members { await cluster.drivers[id]?.stop() }
}

@Test(.timeLimit(.minutes(1)))
func aFollowerRefusesWritesAndNamesTheLeader() async throws {
    var cluster = Cluster()
    for id in cluster.members { try cluster.start(id) }
    _ = try await cluster.write("first", sequence: 1)
    let leader = await cluster.drivers[1]!.awaitLeader()
    let follower = cluster.members.sorted().first { $0 != leader }!
    let error = await #expect(throws: RaftDriverError.self) {
        try await cluster.drivers[follower]!.propose(Array("x".utf8), timeoutTicks: 100)
    }
    #expect(error?.kind == .notLeader(leaderHint: leader))
    for id in cluster.members { await cluster.drivers[id]?.stop() }
}

/// A follower that missed writes while it was down catches up in a quiet cluster — no new write
/// arrives to reveal the gap; the leader's heartbeats must. (This found a liveness bug in the core:
/// appends lost while the follower was down left it stalled.)
@Test(.timeLimit(.minutes(1)))
func aRestartedFollowerCatchesUpWithoutNewWrites() async throws {
    var cluster = Cluster()
    for id in cluster.members { try cluster.start(id) }
    _ = try await cluster.write("first", sequence: 1)
    let leader = await cluster.drivers[1]!.awaitLeader()
    let victim = cluster.members.sorted().first { $0 != leader }!
    await cluster.kill(victim)
    for number in 2...10 { _ = try await cluster.write("w\(number)", sequence: UInt64(number)) }
    try cluster.start(victim)
    _ = await cluster.drivers[victim]!.awaitLeader()
    let seen = try await cluster.commands(readOn: victim)
    #expect(seen == [Array("first".utf8)] + (2...10).map { Array("w\($0)".utf8) })
    for id in cluster.members { await cluster.drivers[id]?.stop() }
}

/// The appends without entries among `sent` that left `leader` for `follower`.
private func emptyAppends(in sent: [Message], from leader: NodeID, to follower: NodeID) -> [AppendEntries] {
    sent.compactMap { message in
        guard message.from == leader, message.to == follower, case .append(let append) = message.kind,
            append.entries.isEmpty
        else { return nil }
        return append
    }
}

/// A commit that no write follows still reaches every follower in an append of its own, once the
/// leader has held it for its delay (`HeldAppends`): a heartbeat is not what tells them.
@Test(.timeLimit(.minutes(1)))
func aHeldCommitLeavesAfterItsDelayWhenNoWriteFollows() async throws {
    var cluster = Cluster()
    cluster.emptyAppendDelay = .milliseconds(1)
    for id in cluster.members { try cluster.start(id) }
    _ = try await cluster.write("first", sequence: 1)
    let leader = await cluster.drivers[1]!.awaitLeader()
    let index = await cluster.drivers[leader]!.staleRead { $0.lastIndex }
    for follower in cluster.members.subtracting([leader]) {
        await cluster.network.waitUntilSent { sent in
            emptyAppends(in: sent, from: leader, to: follower).contains { $0.commit >= index }
        }
    }
    for id in cluster.members { await cluster.drivers[id]?.stop() }
}

/// Writes that follow one another carry each other's commit: with a delay longer than the test, no
/// append without entries leaves the leader while they do, and the followers still apply every
/// write (the last commit comes with a heartbeat).
@Test(.timeLimit(.minutes(1)))
func writesThatFollowOneAnotherCarryTheCommitWithoutAppendsOfTheirOwn() async throws {
    var cluster = Cluster()
    cluster.emptyAppendDelay = .seconds(600)
    for id in cluster.members { try cluster.start(id) }
    _ = try await cluster.write("w1", sequence: 1)
    let leader = await cluster.drivers[1]!.awaitLeader()
    let start = cluster.network.sentCount
    for number in 2...20 { _ = try await cluster.write("w\(number)", sequence: UInt64(number)) }
    // None left any node (were leadership to move on a loaded machine, the new leader's are held too).
    for from in cluster.members {
        for to in cluster.members.subtracting([from]) {
            #expect(emptyAppends(in: cluster.network.sent(from: start), from: from, to: to).isEmpty)
        }
    }
    let expected = (1...20).map { Array("w\($0)".utf8) }
    for follower in cluster.members.subtracting([leader]) {
        #expect(try await cluster.commands(readOn: follower) == expected)
    }
    for id in cluster.members { await cluster.drivers[id]?.stop() }
}

/// Many writes at once with one follower down, so every commit needs the leader's own copy: the
/// leader syncs its batches off its loop and reports them (without the reports nothing would
/// commit), every write is answered and applied once, and all of it is on the disks (a restart of
/// every node finds it).
@Test(.timeLimit(.minutes(1)), arguments: [true, false])
func concurrentWritesCommitWhileTheLeaderSyncsOffItsLoop(offLoop: Bool) async throws {
    var cluster = Cluster()
    cluster.leaderSyncsOffLoop = offLoop
    for id in cluster.members { try cluster.start(id) }
    _ = try await cluster.write("first", sequence: 1)
    let leader = await cluster.drivers[1]!.awaitLeader()
    let down = cluster.members.sorted().first { $0 != leader }!
    await cluster.kill(down)
    try await withThrowingTaskGroup(of: Void.self) { group in
        let writer = Writer(drivers: cluster.drivers)
        for number in 2...201 {
            // A client each: one client's requests are applied in sequence order only.
            group.addTask { _ = try await writer.write("w\(number)", client: UInt64(number), sequence: 1) }
        }
        try await group.waitForAll()
    }
    // Counted by the node that led through the burst (the count stays when leadership moves).
    let syncsOffLoop = await cluster.drivers[leader]!.syncsOffLoop
    #expect(offLoop ? syncsOffLoop > 0 : syncsOffLoop == 0, "\(syncsOffLoop) syncs off the loop")
    let expected = Set(["first"] + (2...201).map { "w\($0)" })
    for id in cluster.members.sorted() where id != down {
        let seen = try await cluster.commands(readOn: id).map { String(decoding: $0, as: UTF8.self) }
        #expect(seen.count == expected.count && Set(seen) == expected, "node \(id)")
    }
    // Every node stopped and started again from its disk: the writes are all there.
    for id in cluster.members.sorted() where id != down { await cluster.kill(id) }
    for id in cluster.members.sorted() { try cluster.start(id) }
    _ = try await cluster.write("after", sequence: 202)
    for id in cluster.members.sorted() {
        let afterRestart = try await cluster.commands(readOn: id).map { String(decoding: $0, as: UTF8.self) }
        #expect(Set(afterRestart) == expected.union(["after"]), "node \(id) after the restart")
    }
    for id in cluster.members { await cluster.drivers[id]?.stop() }
}

/// Followers whose ticker would not beat again for an hour elect a successor all the same once
/// told that their leader's process is gone: the first tick after the notice comes within
/// `deadLeaderTickDelay`, not on the ticker's next beat.
@Test(.timeLimit(.minutes(1)))
func followersToldTheirLeaderDiedTickAtOnceAndElectTheSuccessor() async throws {
    var cluster = Cluster()
    // Only node 1 ticks: it is the first leader, and nodes 2 and 3 never time out on their own.
    cluster.tickDurations = [2: .seconds(3600), 3: .seconds(3600)]
    for id in cluster.members { try cluster.start(id) }
    _ = try await cluster.write("first", sequence: 1)
    #expect(await cluster.drivers[2]!.awaitLeader() == 1)
    await cluster.kill(1)
    await cluster.drivers[2]!.peerProcessGone(1)
    await cluster.drivers[3]!.peerProcessGone(1)
    // Node 2 comes first after node 1 in rank order (`RaftNode.leaderGoneDelay`).
    await cluster.network.waitUntilSent { sent in
        sent.contains { message in
            if case .appendResponse = message.kind, message.to == 2, message.term > 1 { return true }
            return false
        }
    }
    #expect(await cluster.drivers[3]!.awaitLeader() == 2)
    for id in [2, 3] as [NodeID] { await cluster.drivers[id]?.stop() }
}

/// A follower that holds a lease promise when told its leader's process died does not tick early:
/// a promise counts the ticker's beats, and a tick between them would end it too soon. Without a
/// promise it ticks `deadLeaderTickDelay` after the notice, before the ticker's beat. Node 2 ticks
/// on a clock the test advances and keeps promises only in the first case: from its start it holds
/// one (`LeasePromise.startTicks`) that never runs out while its clock stands still.
@Test(.timeLimit(.minutes(1)), arguments: [true, false])
func aFollowerHoldingALeasePromiseSkipsTheEarlyTickAfterItsLeaderDied(promised: Bool) async throws {
    var cluster = Cluster()
    let clock = ManualClock()
    cluster.clocks = [2: clock]
    // Node 1 leads (with node 3's vote); node 3 never times out on its own.
    cluster.tickDurations = [2: .milliseconds(50), 3: .seconds(3600)]
    if promised { cluster.promiseKeepers = [2] }
    for id in cluster.members { try cluster.start(id) }
    _ = try await cluster.write("first", sequence: 1)
    let follower = cluster.drivers[2]!
    #expect(await follower.awaitLeader() == 1)
    #expect(await follower.holdsLeasePromise == promised)
    try await eventually("node 2's ticker waits") { clock.sleepers == 1 }
    #expect(await follower.ticksSinceStart == 0)
    await cluster.kill(1)
    await follower.peerProcessGone(1)
    if !promised {
        try await eventually("the early tick waits") { clock.sleepers == 2 }
    }
    clock.advance(by: .milliseconds(5))
    if !promised {
        try await eventually("node 2 ticks early") { await follower.ticksSinceStart == 1 }
    }
    // Whatever the first step woke was queued on the driver's loop before the ticker's beat is.
    try await eventually("only the ticker waits") { clock.sleepers == 1 }
    clock.advance(by: .milliseconds(45))
    try await eventually("node 2's ticker beats and waits again") {
        await follower.ticksSinceStart >= (promised ? 1 : 2) && clock.sleepers == 1
    }
    #expect(await follower.ticksSinceStart == (promised ? 1 : 2), "ticks besides the ticker's")
    for id in [2, 3] as [NodeID] { await cluster.drivers[id]?.stop() }
}

/// The ticker waits a whole interval after each tick: after a stall (here ten intervals of the
/// test's clock at once) it ticks once, not ten times to catch up, and the next tick comes an
/// interval later. Lease promises count ticks, so ticks must never come closer than an interval.
@Test(.timeLimit(.minutes(1)))
func theTickerWaitsAWholeIntervalAfterEachTickAndNeverCatchesUp() async throws {
    let root = try TemporaryDirectory()
    let clock = ManualClock()
    let (storage, recovered) = try RaftDiskStorage.open(directory: "\(root.path)/1")
    let driver = try RaftDriver(
        configuration: RaftConfiguration(id: 1, tickInterval: .milliseconds(50)),
        bootstrapMembership: Membership(voters: [1]), storage: storage, recovered: recovered,
        machine: CommandLog(), transport: MemoryNetwork().transport(), tickDuration: .milliseconds(50), seed: 1,
        clock: NodeClock(clock))
    await driver.start()
    try await eventually("the ticker waits") { clock.sleepers == 1 }
    clock.advance(by: .milliseconds(49))
    #expect(await driver.ticksSinceStart == 0)
    clock.advance(by: .milliseconds(1))
    try await eventually("the first tick") { await driver.ticksSinceStart == 1 && clock.sleepers == 1 }
    clock.advance(by: .milliseconds(500))
    try await eventually("one tick after the stall, then the ticker waits") {
        await driver.ticksSinceStart >= 2 && clock.sleepers == 1
    }
    #expect(await driver.ticksSinceStart == 2, "ticks to catch up after a stall")
    clock.advance(by: .milliseconds(49))
    #expect(await driver.ticksSinceStart == 2)
    clock.advance(by: .milliseconds(1))
    try await eventually("the tick an interval after it") { await driver.ticksSinceStart == 3 }
    await driver.stop()
}

/// Reads that ask for the lease through a real driver: the driver hands the core its clock, the
/// leader answers some reads from the lease (no heartbeat round) and none without lease reads, and
/// every read returns the applied state with every acknowledged write. (One stable leader: a stale
/// lease is the core's tests' subject, `LeaseReadTests`.)
@Test(.timeLimit(.minutes(2)), arguments: [true, false])
func leaseReadsSeeEveryEarlierWriteAndSkipTheRound(readLeases: Bool) async throws {
    var cluster = Cluster()
    cluster.readLeases = readLeases
    cluster.tickDurations = [1: .milliseconds(20), 2: .milliseconds(20), 3: .milliseconds(20)]
    for id in cluster.members { try cluster.start(id) }
    var written = 0
    var leaseReads: UInt64 = 0
    // Until a read was answered from a lease (a lease lasts 16 ms from its round's start): 400 at most.
    for _ in 0..<400 where leaseReads == 0 || written < 20 {
        written += 1
        _ = try await cluster.write("w\(written)", sequence: UInt64(written))
        for _ in 0..<5 {
            let leader = await cluster.drivers[1]!.awaitLeader()
            do {
                let seen = try await cluster.drivers[leader]!.linearizableRead(timeoutTicks: 500, lease: true) {
                    $0.commands.count
                }
                #expect(seen >= written, "a read saw \(seen) commands after \(written) writes were acknowledged")
            } catch is RaftDriverError {
                // Leadership moved (a loaded machine churns 20 ms ticks): the next read finds the new leader.
                continue
            }
        }
        leaseReads = 0
        for driver in cluster.drivers.values { leaseReads += await driver.status.leaseReads }
    }
    #expect(readLeases ? leaseReads > 0 : leaseReads == 0, "\(leaseReads) reads from a lease")
    for id in cluster.members { await cluster.kill(id) }
}

/// A core that counts its lease promises in ticks of one length and a ticker that beats at another
/// would keep every promise for the wrong time: the driver refuses to start.
@Test func aDriverRefusesACoreWhoseTickIsNotItsTickers() throws {
    let root = try TemporaryDirectory()
    let (storage, recovered) = try RaftDiskStorage.open(directory: "\(root.path)/1")
    do {
        _ = try RaftDriver(
            configuration: RaftConfiguration(id: 1, tickInterval: .milliseconds(50)),
            bootstrapMembership: Membership(voters: [1]), storage: storage, recovered: recovered,
            machine: CommandLog(), transport: MemoryNetwork().transport(), tickDuration: .milliseconds(20), seed: 1)
        Issue.record("the driver started with a core whose tick is not its ticker's")
    } catch let error as ConfigurationError {
        #expect(
            error.description.contains("tickInterval (0.05 seconds) is not the driver's tickDuration (0.02 seconds)"),
            "\(error)")
    }
}
