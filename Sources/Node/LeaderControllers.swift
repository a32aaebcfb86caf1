// The leader's controller loop: leases from heartbeats, and failover proposals through the log.
import ClusterModel
import ClusterState
import Controllers
import Foundation
import HTTP2
import Logging
import NIOCore
import RaftCore
import RaftRuntime

/// Runs the failover controller while this node leads (docs/failover.md).
///
/// Every heartbeat interval it decides from the committed state and its lease table, and proposes
/// what `FailoverController` returns, one command after the other, waiting for each to commit;
/// a round starts only after the previous one has finished, so a slow commit is never proposed twice.
/// When a silent node's last possible lease ends before the next round, the round runs then instead.
///
/// The lease table lives only as long as one leadership (one term). A new leadership starts it
/// with the latest leader contact its voters reported before the election (`LeaderContact`), and
/// declares nobody down before that contact plus a lease plus the margin. While it leads, a probe
/// confirms by ReadIndex, every half heartbeat interval, that a majority still follows it; every
/// grant ends a lease after the start of the latest confirmed probe.
actor LeaderControllers {
    /// One term's leadership.
    private struct Leadership {
        var term: Term
        var table: LeaseTable
        /// When the latest ReadIndex probe a majority confirmed in this term started; nil before the first.
        var confirmedContact: Duration?
    }

    private let driver: ClusterDriver
    private let timings: LeaseTimings
    private let interval: Duration
    /// How often the leader confirms with a majority that it still leads.
    private let probeInterval: Duration
    /// A probe that takes longer is given up and the next one starts: by then its grants would
    /// be short anyway.
    private let probeTimeoutTicks: UInt64
    private let timeoutTicks: UInt64
    private let logger: Logger
    /// The node's one monotonic clock, shared with the driver and the transport.
    private let leaderContact: LeaderContactTracker
    /// Where the memory facts of heartbeats go while this node leads (soft state for the API).
    private let reportedMemory: ReportedMemory
    /// The table of the current leadership; nil while this node does not lead.
    private var leadership: Leadership?
    /// The term of the last table started, so a table dropped and started again within a term
    /// still covers the grants the dropped one made.
    private var lastTableTerm: Term?
    /// Set by `stop`: a node shutting down answers no heartbeat and decides nothing.
    private var stopped = false
    /// When a silent node may next be declared down, from the last round, if before the next one.
    private var nextDownDeadline: Duration?
    private var loop: Task<Void, Never>?
    private var probeLoop: Task<Void, Never>?
    /// Policy problems already logged, so a bad setting is said once, not every round.
    private var reportedProblems: Set<String> = []

    init(
        driver: ClusterDriver, timings: LeaseTimings, interval: Duration, probeInterval: Duration,
        probeTimeoutTicks: UInt64, timeoutTicks: UInt64, leaderContact: LeaderContactTracker,
        reportedMemory: ReportedMemory, logger: Logger
    ) {
        self.reportedMemory = reportedMemory
        self.driver = driver
        self.timings = timings
        self.interval = interval
        self.probeInterval = probeInterval
        self.probeTimeoutTicks = probeTimeoutTicks
        self.timeoutTicks = timeoutTicks
        self.leaderContact = leaderContact
        self.logger = logger
    }

    /// The leader's monotonic clock, as the lease table measures.
    private var now: Duration { leaderContact.now }

    func start() {
        guard loop == nil else { return }
        stopped = false
        loop = Task { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                try? await self.leaderContact.clock.sleep(for: await self.pauseBeforeNextRound())
                await self.round()
            }
        }
        probeLoop = Task { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                await self.confirmLeadership()
                try? await self.leaderContact.clock.sleep(for: self.probeInterval)
            }
        }
    }

    func stop() {
        loop?.cancel()
        loop = nil
        probeLoop?.cancel()
        probeLoop = nil
        leadership = nil
        stopped = true
    }

    /// Answers a node's heartbeat: a lease if this node leads, has recently confirmed that with
    /// a majority, and the state knows the node as able to own VMs; otherwise why not.
    func heartbeat(from node: NodeID, facts: NodeFacts) async -> HeartbeatAnswer {
        guard await leads() else {
            return .refused(reason: "this node is not the leader; send heartbeats to the leader")
        }
        // The state first, then the applied index: the index is at least the state's, so a node
        // that catches up to it has seen everything this decision saw.
        let state = await driver.staleRead { $0.state }
        let status = await driver.status
        let applied = status.applied
        if let notice = MembershipNotice.answer(
            to: node, members: status.membership.members, membershipIndex: status.membershipIndex,
            commit: status.commit)
        {
            return notice
        }
        // Re-checked after the awaits: leadership may have ended meanwhile.
        guard leadership != nil else { return .refused(reason: "leadership ended while answering") }
        if let memory = facts.memory { reportedMemory.record(memory, from: node, at: now) }
        return leadership!.table.heartbeat(
            from: node, facts: facts, in: state, appliedIndex: applied,
            confirmedContact: leadership!.confirmedContact, now: now)
    }

    /// Whether this node leads now; starts a fresh table on a new leadership and drops it on losing one.
    private func leads() async -> Bool {
        let status = await driver.status
        guard status.role == .leader, !stopped else {
            if leadership != nil {
                logger.info("no longer the leader: the failover controller stops")
                reportedMemory.forget()
            }
            leadership = nil
            return false
        }
        if leadership?.term != status.term {
            // Taken by the driver when it handled the leadership's first Ready; until it has,
            // this node does not act as leader yet.
            guard var contact = leaderContact.predecessorContact(term: status.term) else {
                if leadership != nil { logger.info("no longer the leader: the failover controller stops") }
                leadership = nil
                return false
            }
            let now = now
            // A table of this term was dropped: its grants are forgotten, but each ended at most
            // a lease after a contact no later than now.
            if lastTableTerm == status.term { contact = max(contact, now) }
            lastTableTerm = status.term
            leadership = Leadership(
                term: status.term, table: LeaseTable(timings: timings, startedAt: now, predecessorContact: contact),
                confirmedContact: nil)
            let wait = max(.zero, contact + timings.lease + timings.margin - now)
            logger.info(
                """
                leader in term \(status.term): the failover controller starts; a leader was last heard of \
                \(Self.milliseconds(now - contact)) ms ago (the predecessor contact its voters reported), \
                so nobody is declared down for \(Self.milliseconds(wait)) ms
                """)
        }
        return true
    }

    /// One probe: a ReadIndex round; once a majority has confirmed it, every lease granted may
    /// run until a lease after the probe started.
    private func confirmLeadership() async {
        guard await leads(), let term = leadership?.term else { return }
        let startedAt = now
        do {
            try await driver.linearizableRead(timeoutTicks: probeTimeoutTicks) { _ in () }
        } catch {
            // Not confirmed (no majority answered, or leadership ended): grants shrink toward a refusal.
            return
        }
        // Only a read this node served as leader confirms its own contact: one registered just
        // after it stepped down went to the new leader. A node leads at most once in a term, so
        // leading in the same term now means it led throughout (and a read issued as leader
        // fails when leadership ends).
        let status = await driver.status
        guard status.role == .leader, status.term == term, leadership?.term == term else { return }
        leadership!.confirmedContact = max(leadership!.confirmedContact ?? startedAt, startedAt)
    }

    /// How long the controller loop sleeps: one interval, or less when a silent node's last
    /// possible lease ends sooner (a millisecond past it, since it must have passed).
    private func pauseBeforeNextRound() -> Duration {
        guard let deadline = nextDownDeadline else { return interval }
        return min(interval, max(.zero, deadline - now + .milliseconds(1)))
    }

    /// One controller round on the leader.
    private func round() async {
        nextDownDeadline = nil
        guard await leads() else { return }
        let state = await driver.staleRead { $0.state }
        guard let table = leadership?.table else { return }
        for problem in FailoverPolicy(settings: state.settings).problems where !reportedProblems.contains(problem) {
            reportedProblems.insert(problem)
            logger.warning("failover policy: \(problem)")
        }
        let status = await driver.status
        let proposals = FailoverController.proposals(
            state: state, leases: table, now: now, wallClock: Self.wallClock, reported: reportedMemory.current,
            leader: status.id, warningSince: reportedMemory.warningSince)
        for proposal in proposals {
            guard leadership != nil else { return }
            await propose(proposal)
        }
        guard let table = leadership?.table else { return }
        // A draining leader that holds nothing else hands leadership over; the new leader pauses it.
        if status.leadershipTransferTarget == nil,
            let successor = FailoverController.leadershipHandover(
                from: status.id, in: await driver.staleRead { $0.state }, voters: status.membership.voters,
                matched: status.progress.mapValues(\.match), heartbeating: { table.isHeartbeating($0, now: self.now) })
        {
            logger.notice("drain: \(status.id) is drained; handing leadership to \(successor)")
            do {
                try await driver.transferLeadership(to: successor)
            } catch {
                logger.warning("drain: could not hand leadership to \(successor): \(error)")
            }
        }
        let candidates = state.nodes.values.filter { $0.state.canOwnVMs }.map(\.id)
        nextDownDeadline = table.nextDownDeadline(among: candidates, now: now)
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

    private static func milliseconds(_ span: Duration) -> Int64 {
        span.components.seconds * 1000 + span.components.attoseconds / 1_000_000_000_000_000
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
        writer.writeVarint(facts.appliedIndex.rawValue)
        writer.writeVarint(facts.runningVMs.count)
        for vm in facts.runningVMs { writer.writeVarint(vm.rawValue) }
        // Memory facts last and optional: a heartbeat without them still reads.
        if let memory = facts.memory {
            writer.write(UInt8(1))
            memory.encode(into: &writer)
        }
        return writer.bytes
    }

    static func decodeHeartbeat(_ bytes: [UInt8]) throws(WireFormatError) -> (NodeID, NodeFacts) {
        var reader = ByteReader(bytes)
        let node = try reader.readNodeID()
        let applied = LogIndex(try reader.readVarint())
        let count = try reader.readCount()
        var vms: [VMID] = []
        for _ in 0..<count { vms.append(VMID(try reader.readVarint())) }
        var memory: NodeMemoryFacts?
        if !reader.isAtEnd {
            guard try reader.readByte() == 1 else { throw WireFormatError("unknown heartbeat section") }
            memory = try NodeMemoryFacts(from: &reader)
        }
        guard reader.isAtEnd else { throw WireFormatError("\(reader.remaining) bytes after a heartbeat") }
        return (node, NodeFacts(appliedIndex: applied, runningVMs: vms, memory: memory))
    }

    static func encode(_ answer: HeartbeatAnswer) -> [UInt8] {
        var writer = ByteWriter()
        switch answer {
        case .granted(let grant):
            writer.write(UInt8(1))
            writer.writeVarint(
                UInt64(grant.duration.components.seconds) * 1000
                    + UInt64(grant.duration.components.attoseconds / 1_000_000_000_000_000))
            writer.writeVarint(grant.requiredAppliedIndex.rawValue)
        case .refused(let reason):
            writer.write(UInt8(2))
            writer.write(Array(reason.utf8))
        case .notAMember(let index, let reason):
            writer.write(UInt8(3))
            writer.writeVarint(index.rawValue)
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
                LeaseGrant(
                    duration: .milliseconds(milliseconds), requiredAppliedIndex: LogIndex(try reader.readVarint())))
        case 2: answer = .refused(reason: try reader.readString())
        case 3:
            let index = LogIndex(try reader.readVarint())
            answer = .notAMember(membershipIndex: index, reason: try reader.readString())
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
                throw HTTPError(status: 400, error: "bad_heartbeat", detail: "\(error)")
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
        _ configuration: NodeConfiguration, driver: ClusterDriver, addressBook: AddressBook,
        leaderContact: LeaderContactTracker, reportedMemory: ReportedMemory, fencing: any Fencing,
        memoryFacts: @escaping @Sendable () async -> NodeMemoryFacts?, logger: Logger
    ) -> (LeaderControllers, Heartbeats) {
        let tick = Duration.milliseconds(configuration.tickMilliseconds)
        let heartbeatInterval = Duration.milliseconds(configuration.heartbeatMilliseconds)
        let timings = LeaseTimings(
            lease: .milliseconds(configuration.leaseMilliseconds), margin: .milliseconds(500),
            heartbeatInterval: heartbeatInterval)
        let controllers = LeaderControllers(
            driver: driver, timings: timings, interval: heartbeatInterval,
            // Often enough that a grant is never much shorter than the lease; a probe is one
            // ReadIndex heartbeat round, not a log write.
            probeInterval: max(tick, heartbeatInterval / 2),
            probeTimeoutTicks: UInt64(max(1, configuration.leaseMilliseconds / 2 / configuration.tickMilliseconds)),
            timeoutTicks: UInt64(max(1, 5_000 / configuration.tickMilliseconds)), leaderContact: leaderContact,
            reportedMemory: reportedMemory, logger: logger)
        let heartbeats = Heartbeats(
            local: configuration.nodeID, driver: driver, addressBook: addressBook, controllers: controllers,
            fencing: fencing, memoryFacts: memoryFacts, interval: .milliseconds(configuration.heartbeatMilliseconds),
            requestTimeout: timings.lease, clock: leaderContact.clock, logger: logger)
        return (controllers, heartbeats)
    }
}
