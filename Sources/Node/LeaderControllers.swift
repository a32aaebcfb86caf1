// The leader's controller loop: leases from heartbeats, and failover proposals through the log.
import ClusterModel
import ClusterState
import Controllers
import Foundation
import HTTP2
import Logging
import NIOCore
import RaftCore

/// Runs the failover controller while this node leads (docs/failover.md).
///
/// Every heartbeat interval it decides from the committed state and its lease table, and proposes
/// what `FailoverController` returns, one command after the other, waiting for each to commit;
/// a round starts only after the previous one has finished, so a slow commit is never proposed twice.
/// The lease table lives only as long as one leadership (one term): a node that becomes leader,
/// or leads again in a new term, starts with a fresh table and so declares nobody down until a
/// whole lease (plus margin, plus how long a deposed leader may still have granted one) has passed.
actor LeaderControllers {
    private let driver: RaftDriver
    private let timings: LeaseTimings
    private let interval: Duration
    private let timeoutTicks: UInt64
    private let logger: Logger
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant
    /// The table of the current leadership, with its term; nil while this node does not lead.
    private var leadership: (term: Term, table: LeaseTable)?
    private var loop: Task<Void, Never>?
    /// Policy problems already logged, so a bad setting is said once, not every round.
    private var reportedProblems: Set<String> = []

    init(driver: RaftDriver, timings: LeaseTimings, interval: Duration, timeoutTicks: UInt64, logger: Logger) {
        self.driver = driver
        self.timings = timings
        self.interval = interval
        self.timeoutTicks = timeoutTicks
        self.logger = logger
        self.origin = clock.now
    }

    /// The leader's monotonic clock, as the lease table measures.
    private var now: Duration { clock.now - origin }

    func start() {
        guard loop == nil else { return }
        loop = Task { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                try? await Task.sleep(for: self.interval)
                await self.round()
            }
        }
    }

    func stop() {
        loop?.cancel()
        loop = nil
        leadership = nil
    }

    /// Answers a node's heartbeat: a lease if this node leads and the state knows the node as
    /// able to own VMs; otherwise why not.
    func heartbeat(from node: NodeID, facts: NodeFacts) async -> HeartbeatAnswer {
        guard await leads() else {
            return .refused(reason: "this node is not the leader; send heartbeats to the leader")
        }
        // The state first, then the applied index: the index is at least the state's, so a node
        // that catches up to it has seen everything this decision saw.
        let state = await driver.staleRead { ($0 as! ClusterStateMachine).state }
        let applied = await driver.status.applied.rawValue
        // Re-checked after the awaits: leadership may have ended meanwhile.
        guard leadership != nil else { return .refused(reason: "leadership ended while answering") }
        return leadership!.table.heartbeat(from: node, facts: facts, in: state, appliedIndex: applied, now: now)
    }

    /// Whether this node leads now; starts a fresh table on a new leadership and drops it on losing one.
    private func leads() async -> Bool {
        let status = await driver.status
        guard status.role == .leader else {
            if leadership != nil { logger.info("no longer the leader: the failover controller stops") }
            leadership = nil
            return false
        }
        if leadership?.term != status.term {
            leadership = (status.term, LeaseTable(timings: timings, startedAt: now))
            let wait = timings.lease + timings.margin + timings.deposedLeaderBound
            logger.info(
                "leader in term \(status.term): the failover controller starts; nobody is declared down for \(wait)")
        }
        return true
    }

    /// One controller round on the leader.
    private func round() async {
        guard await leads() else { return }
        let state = await driver.staleRead { ($0 as! ClusterStateMachine).state }
        guard let table = leadership?.table else { return }
        for problem in FailoverPolicy(settings: state.settings).problems where !reportedProblems.contains(problem) {
            reportedProblems.insert(problem)
            logger.warning("failover policy: \(problem)")
        }
        let proposals = FailoverController.proposals(
            state: state, leases: table, now: now, wallClock: Self.wallClock)
        for proposal in proposals {
            guard leadership != nil else { return }
            await propose(proposal)
        }
    }

    private func propose(_ proposal: Proposal) async {
        let envelope = CommandEnvelope(proposedAt: Self.wallClock, command: proposal.command)
        do {
            let answer = try await driver.propose(envelope.encoded, timeoutTicks: timeoutTicks)
            switch try CommandResult(decoding: answer) {
            case .applied: logger.notice("failover: \(proposal.reason)")
            case .rejected(let rejection):
                // The state moved on since the decision (an operator acted, or a repeat); the next
                // round decides again from the new state.
                logger.info("failover: \(proposal.command.kind) not applied (\(rejection)); deciding again")
            }
        } catch {
            logger.warning("failover: could not propose \(proposal.command.kind) (\(proposal.reason)): \(error)")
        }
    }

    /// Milliseconds since 1970: the time a proposal records, and what the failover history is counted in.
    private static var wallClock: UInt64 { UInt64(max(0, Date().timeIntervalSince1970 * 1000)) }
}

/// The heartbeat as it travels on peer RPC: binary, like the Raft messages.
enum HeartbeatWire {
    static let path = "/v1/internal/heartbeat"

    static func encode(node: NodeID, facts: NodeFacts) -> [UInt8] {
        var writer = ByteWriter()
        writer.writeVarint(node.rawValue)
        writer.writeVarint(facts.appliedIndex)
        writer.writeVarint(facts.runningVMs.count)
        for vm in facts.runningVMs { writer.writeVarint(vm.rawValue) }
        return writer.bytes
    }

    static func decodeHeartbeat(_ bytes: [UInt8]) throws(WireFormatError) -> (NodeID, NodeFacts) {
        var reader = ByteReader(bytes)
        let node = try reader.readNodeID()
        let applied = try reader.readVarint()
        let count = try reader.readCount()
        var vms: [VMID] = []
        for _ in 0..<count { vms.append(VMID(try reader.readVarint())) }
        guard reader.isAtEnd else { throw WireFormatError("\(reader.remaining) bytes after a heartbeat") }
        return (node, NodeFacts(appliedIndex: applied, runningVMs: vms))
    }

    static func encode(_ answer: HeartbeatAnswer) -> [UInt8] {
        var writer = ByteWriter()
        switch answer {
        case .granted(let grant):
            writer.write(UInt8(1))
            writer.writeVarint(
                UInt64(grant.duration.components.seconds) * 1000
                    + UInt64(grant.duration.components.attoseconds / 1_000_000_000_000_000))
            writer.writeVarint(grant.requiredAppliedIndex)
        case .refused(let reason):
            writer.write(UInt8(2))
            writer.write(Array(reason.utf8))
        }
        return writer.bytes
    }

    static func decodeAnswer(_ bytes: [UInt8]) throws(WireFormatError) -> HeartbeatAnswer {
        var reader = ByteReader(bytes)
        let answer: HeartbeatAnswer
        switch try reader.readByte() {
        case 1:
            let milliseconds = try reader.readVarint()
            guard milliseconds <= 3_600_000 else { throw WireFormatError("a lease of \(milliseconds) ms") }
            answer = .granted(
                LeaseGrant(duration: .milliseconds(milliseconds), requiredAppliedIndex: try reader.readVarint()))
        case 2: answer = .refused(reason: try reader.readString())
        case let kind: throw WireFormatError("unknown heartbeat answer kind \(kind)")
        }
        guard reader.isAtEnd else { throw WireFormatError("\(reader.remaining) bytes after a heartbeat answer") }
        return answer
    }
}

extension Router {
    /// Adds the heartbeat route of the peer port: the leader answers with a lease.
    mutating func addHeartbeatRoute(controllers: LeaderControllers) {
        post(HeartbeatWire.path) { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            let node: NodeID
            let facts: NodeFacts
            do {
                (node, facts) = try HeartbeatWire.decodeHeartbeat(Array(buffer: body))
            } catch {
                throw HTTPError(status: 400, error: "bad heartbeat", detail: "\(error)")
            }
            let answer = await controllers.heartbeat(from: node, facts: facts)
            return HTTPResponse(
                status: 200, headers: ["content-type": "application/octet-stream"],
                body: .buffer(ByteBuffer(bytes: HeartbeatWire.encode(answer))))
        }
    }
}

extension LeaderControllers {
    /// The leader's controllers and this node's heartbeats, with the timings from the configuration.
    static func services(
        _ configuration: NodeConfiguration, driver: RaftDriver, addressBook: AddressBook, fencing: any Fencing,
        logger: Logger
    ) -> (LeaderControllers, Heartbeats) {
        let tick = Duration.milliseconds(configuration.tickMilliseconds)
        let timings = LeaseTimings(
            lease: .milliseconds(configuration.leaseMilliseconds), margin: .milliseconds(500),
            // CheckQuorum makes a cut-off leader step down one election timeout after it last
            // heard from a majority; until then it may still grant leases.
            deposedLeaderBound: tick * (configuration.electionTicks + 1))
        let controllers = LeaderControllers(
            driver: driver, timings: timings, interval: .milliseconds(configuration.heartbeatMilliseconds),
            timeoutTicks: UInt64(max(1, 5_000 / configuration.tickMilliseconds)), logger: logger)
        let heartbeats = Heartbeats(
            local: configuration.nodeID, driver: driver, addressBook: addressBook, controllers: controllers,
            fencing: fencing, interval: .milliseconds(configuration.heartbeatMilliseconds),
            requestTimeout: timings.lease, logger: logger)
        return (controllers, heartbeats)
    }
}
