// A node's side of the lease protocol: heartbeats to the leader, its own lease, and self-fencing.
import ClusterModel
import ClusterState
import Controllers
import HTTP2
public import Logging
import NIOCore
import RaftCore
import RaftRuntime

/// What a node does when it loses its lease: stop every VM and stop coordinating volumes
/// (`fence`), and resume once a new lease allows it (`unfence`).
///
/// A node starts fenced: it runs no VM before the leader has granted it a lease and it has
/// applied the state the leader granted it on.
public protocol Fencing: Sendable {
    func fence(reason: String) async
    func unfence() async
}

/// Several fencing hooks told in order (the node agent, then whoever else watches).
struct FencingGroup: Fencing {
    let members: [any Fencing]

    init(_ members: [any Fencing]) { self.members = members }

    func fence(reason: String) async {
        for member in members { await member.fence(reason: reason) }
    }

    /// In reverse: what the first member needs (the agent needs its volumes) is back before it.
    func unfence() async {
        for member in members.reversed() { await member.unfence() }
    }
}

/// The node agent is what a lease protects: fenced, it stops every VM and starts none.
extension NodeAgent: Fencing {}

/// Fencing for a node that runs nothing it must stop: it only says what would be done.
public struct LoggingFencing: Fencing {
    let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func fence(reason: String) async {
        logger.warning("fenced: \(reason); no VM may run here until a new lease is granted")
    }

    public func unfence() async {
        logger.notice("unfenced: this node holds a lease and may run its VMs")
    }
}

/// Sends a heartbeat to the leader every interval and keeps this node's `LeaseHolder`.
///
/// Each heartbeat goes out on its own task, so a leader that does not answer never delays the
/// next heartbeat (to a new leader, perhaps). A separate check, every 25 ms, moves between fenced
/// and unfenced; it alone calls `Fencing`, so fence and unfence are never reordered.
actor Heartbeats {
    private let local: NodeID
    private let driver: ClusterDriver
    private let addressBook: AddressBook
    private let controllers: LeaderControllers
    private let fencing: any Fencing
    /// This node's memory facts (the agent's last balancing pass), sent with every heartbeat.
    private let memoryFacts: @Sendable () async -> NodeMemoryFacts?
    private let interval: Duration
    /// How long a heartbeat may wait for its answer: after a lease it is worthless anyway.
    private let requestTimeout: Duration
    private let logger: Logger
    /// The node's monotonic clock: leases are measured and heartbeats timed by it.
    private let clock: NodeClock
    private var holder = LeaseHolder()
    private var clients: [NodeID: (peer: Endpoint, client: HTTP2Client)] = [:]
    private var tasks: [Task<Void, Never>] = []
    /// Set by `stop`; a heartbeat still in flight then opens no new connection.
    private var stopped = false
    /// The last heartbeat problem logged, so an outage is said once, not five times a second.
    private var lastProblem: String?
    /// Says once, with the leader's reason, that this node was removed from the cluster
    /// (`MembershipNotice`): the node then stops (`NodeDaemon`).
    nonisolated let removals: AsyncStream<String>
    private let removalContinuation: AsyncStream<String>.Continuation

    init(
        local: NodeID, driver: ClusterDriver, addressBook: AddressBook, controllers: LeaderControllers,
        fencing: any Fencing, memoryFacts: @escaping @Sendable () async -> NodeMemoryFacts?, interval: Duration,
        requestTimeout: Duration, clock: NodeClock, logger: Logger
    ) {
        self.memoryFacts = memoryFacts
        self.local = local
        self.driver = driver
        self.addressBook = addressBook
        self.controllers = controllers
        self.fencing = fencing
        self.interval = interval
        self.requestTimeout = requestTimeout
        self.logger = logger
        self.clock = clock
        (removals, removalContinuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// How often the lease is checked: a fence comes at most this late after the lease ran out,
    /// well inside the margin the leader adds before it declares the node down.
    static let leaseCheckInterval = Duration.milliseconds(25)

    /// This node's monotonic clock, as its lease is measured.
    private var now: Duration { clock.now }

    func start() async {
        guard tasks.isEmpty else { return }
        await fencing.fence(reason: "this node holds no lease yet")
        let interval = interval
        let clock = clock
        tasks.append(
            Task { [weak self] in
                while !Task.isCancelled {
                    guard let self else { return }
                    Task { await self.beat() }
                    try? await clock.sleep(for: interval)
                }
            })
        tasks.append(
            Task { [weak self] in
                while !Task.isCancelled {
                    try? await clock.sleep(for: Self.leaseCheckInterval)
                    guard let self else { return }
                    await self.checkLease()
                }
            })
    }

    func stop() async {
        stopped = true
        removalContinuation.finish()
        for task in tasks { task.cancel() }
        tasks.removeAll()
        for (_, client) in clients { await client.client.close() }
        clients.removeAll()
    }

    /// One heartbeat: to the leader, with this node's facts; a grant extends the lease from `sentAt`.
    private func beat() async {
        let sentAt = now
        let status = await driver.status
        guard let leader = status.leader else {
            note("no leader known: no lease can be renewed until one is elected")
            return
        }
        let fenced = holder.isFenced
        let owned = await driver.staleRead { machine in
            machine.state.vms.values.filter { $0.owner == status.id }.map(\.id).sorted()
        }
        // What it runs: nothing while fenced; otherwise the VMs its state says it owns.
        let facts = NodeFacts(
            appliedIndex: status.applied, runningVMs: fenced ? [] : owned, memory: await memoryFacts())
        let answer: HeartbeatAnswer
        if leader == local {
            answer = await controllers.heartbeat(from: local, facts: facts)
        } else {
            do {
                answer = try await send(facts, to: leader)
            } catch {
                // Once per outage: the error's text changes from beat to beat (the client's backoff
                // counts down), and one line per beat would bury everything else in the log.
                note("heartbeat to the leader \(leader) failed: \(error)", once: "heartbeat to \(leader) failing")
                return
            }
        }
        switch answer {
        case .granted(let grant):
            holder.granted(grant, sentAt: sentAt)
            lastProblem = nil
        case .refused(let reason):
            holder.refused(reason: reason)
            note("the leader \(leader) refused a lease: \(reason)")
        case .notAMember(let leaderIndex, let reason):
            holder.refused(reason: reason)
            let own = await driver.status
            if MembershipNotice.isRemoved(
                local, ownMembers: own.membership.members, ownMembershipIndex: own.membershipIndex,
                leaderMembershipIndex: leaderIndex)
            {
                removalContinuation.yield("\(reason) (the leader \(leader) says; this node's own is \(own.membership))")
            } else {
                note("the leader \(leader) refused a lease: \(reason); waiting to be added")
            }
        }
    }

    private func send(_ facts: NodeFacts, to leader: NodeID) async throws -> HeartbeatAnswer {
        guard let peer = addressBook.addresses(of: leader)?.peer else {
            throw HTTPError(
                status: 503, error: "no_address", detail: "no peer address is known for the leader \(leader)")
        }
        guard !stopped else { throw HTTPError(status: 503, error: "stopped", detail: "this node is shutting down") }
        let client: HTTP2Client
        if let known = clients[leader], known.peer == peer {
            client = known.client
        } else {
            let stale = clients[leader]?.client
            client = HTTP2Client(configuration: .init(host: peer.host, port: peer.port))
            clients[leader] = (peer, client)
            if let stale { await stale.close() }
        }
        let request = HTTPRequest(
            method: .post, path: HeartbeatWire.path, headers: ["content-type": "application/octet-stream"],
            body: .buffer(ByteBuffer(bytes: HeartbeatWire.encode(node: local, facts: facts))))
        let response = try await client.send(request, timeout: requestTimeout)
        let body = try await response.body.collect(upTo: 64 << 10)
        guard response.status == 200 else {
            throw HTTPError(status: response.status, error: "heartbeat_refused", detail: String(buffer: body))
        }
        return try HeartbeatWire.decodeAnswer(Array(buffer: body))
    }

    /// Fences when the lease has run out, unfences when a new one holds and the state has caught up.
    private func checkLease() async {
        let applied = await driver.status.applied
        guard let action = holder.check(now: now, appliedIndex: applied) else { return }
        switch action {
        case .fence(let reason):
            logger.warning("\(local) fences itself: \(reason)")
            await fencing.fence(reason: reason)
        case .unfence:
            logger.info("\(local) holds a lease (applied index \(applied))")
            await fencing.unfence()
        }
    }

    /// Logs `problem` unless the last one logged was the same, or had the same `once` key (a
    /// problem whose text changes while it lasts); a granted lease ends it.
    private func note(_ problem: String, once key: String? = nil) {
        let identity = key ?? problem
        guard identity != lastProblem else { return }
        lastProblem = identity
        logger.info("\(problem)")
    }
}
