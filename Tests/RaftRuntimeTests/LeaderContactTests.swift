// The record of contact with a leader: what a node reports, and the bound a new leader takes at its election.
import ClusterModel
import FlotillaTestKit
import RaftCore
import RaftRuntime
import RaftStorage
import Synchronization
import TestSupport
import Testing

@Suite struct LeaderContactTests {
    @Test func aNodeStartsAsIfItHadJustHeardFromALeader() {
        let contact = LeaderContact(startedAt: .seconds(5))
        #expect(contact.lastLeaderContact == .seconds(5))
        #expect(contact.age(now: .milliseconds(5300)) == .milliseconds(300))
    }

    @Test func aBatchFromALeaderResetsTheAgeItReports() {
        var contact = LeaderContact(startedAt: .zero)
        contact.heardFromLeader(now: .seconds(10))
        #expect(contact.age(now: .milliseconds(10_250)) == .milliseconds(250))
        // A batch handled late (an earlier receive time) never moves the contact back.
        contact.heardFromLeader(now: .seconds(9))
        #expect(contact.lastLeaderContact == .seconds(10))
    }

    @Test func leadingCountsAsContactUntilTheFirstReadyAfterLeadershipEnds() {
        var contact = LeaderContact(startedAt: .zero)
        contact.handlingReady(leaderOf: nil, now: .seconds(1))
        #expect(contact.lastLeaderContact == .zero, "a follower's own Readies are no contact")
        contact.handlingReady(leaderOf: 4, now: .seconds(2))
        #expect(contact.lastLeaderContact == .seconds(2))
        contact.handlingReady(leaderOf: 4, now: .seconds(3))
        #expect(contact.lastLeaderContact == .seconds(3))
        // It stepped down; this Ready carries its vote for a successor: it reports "just now".
        contact.handlingReady(leaderOf: nil, now: .seconds(4))
        #expect(contact.lastLeaderContact == .seconds(4))
        #expect(contact.age(now: .seconds(4)) == .zero)
        contact.handlingReady(leaderOf: nil, now: .seconds(6))
        #expect(contact.lastLeaderContact == .seconds(4))
    }

    @Test func theBoundIsTakenAtTheFirstLeaderReadyAndIgnoresLaterReports() {
        var contact = LeaderContact(startedAt: .zero)
        contact.heardFromLeader(now: .seconds(8))
        // Voters' reports that arrived with their votes: n2 heard from the old leader 1.5 s before
        // its vote left, n3 500 ms before.
        contact.peerReported(2, age: .milliseconds(1500), receivedAt: .seconds(10))
        contact.peerReported(3, age: .milliseconds(500), receivedAt: .seconds(10))
        #expect(contact.predecessorContact(term: 7) == nil, "not leader yet")
        contact.handlingReady(leaderOf: 7, now: .milliseconds(10_010))
        #expect(contact.predecessorContact(term: 7) == .milliseconds(9500))
        // Answers to the new leader's own first messages say "just now": they do not count.
        contact.peerReported(2, age: .zero, receivedAt: .seconds(11))
        contact.handlingReady(leaderOf: 7, now: .seconds(11))
        #expect(contact.predecessorContact(term: 7) == .milliseconds(9500))
        #expect(contact.predecessorContact(term: 6) == nil)
    }

    @Test func theBoundIncludesThisNodesOwnContactBeforeTheElection() {
        var contact = LeaderContact(startedAt: .zero)
        contact.heardFromLeader(now: .seconds(9))
        contact.peerReported(2, age: .seconds(2), receivedAt: .seconds(10))
        contact.handlingReady(leaderOf: 3, now: .seconds(10))
        #expect(contact.predecessorContact(term: 3) == .seconds(9))
    }

    @Test func leadingAgainInANewTermTakesANewBound() {
        var contact = LeaderContact(startedAt: .zero)
        contact.handlingReady(leaderOf: 3, now: .seconds(1))
        contact.handlingReady(leaderOf: nil, now: .seconds(2))
        contact.peerReported(2, age: .zero, receivedAt: .seconds(5))
        contact.handlingReady(leaderOf: 5, now: .seconds(6))
        #expect(contact.predecessorContact(term: 5) == .seconds(5))
        #expect(contact.predecessorContact(term: 3) == nil)
    }

    @Test func aPeersReportsOnlyEverMoveItsContactLater() {
        var contact = LeaderContact(startedAt: .zero)
        contact.peerReported(2, age: .milliseconds(100), receivedAt: .seconds(10))
        contact.peerReported(2, age: .seconds(3), receivedAt: .milliseconds(10_100))
        #expect(contact.reportedContact[2] == .milliseconds(9900))
        // A negative age (a broken sender) counts as zero, never as a contact in the future.
        contact.peerReported(3, age: .seconds(-5), receivedAt: .seconds(10))
        #expect(contact.reportedContact[3] == .seconds(10))
    }

    @Test func theAgeTravelsInMicrosecondsThatThePeerSubtracts() throws {
        let clock = ManualClock()
        let sender = LeaderContactTracker(clock: NodeClock(clock))
        clock.advance(by: .microseconds(1_234_567))
        #expect(sender.ageMicroseconds() == 1_234_567, "a tracker counts as in contact when it starts")
        let receiver = LeaderContactTracker(clock: NodeClock(clock))
        clock.advance(by: .seconds(10))
        receiver.peerReported(2, ageMicroseconds: 5_000_000)
        #expect(receiver.reportedContact(of: 2) == receiver.now - .seconds(5))
        // An absurd age (a broken sender) is clamped, never a crash.
        receiver.peerReported(3, ageMicroseconds: .max)
        let ancient = try #require(receiver.reportedContact(of: 3))
        #expect(ancient < receiver.now - .seconds(1_000_000), "\(ancient)")
    }

    @Test func onlyAppendsHeartbeatsAndSnapshotsComeFromALeader() {
        let heartbeat = Message(from: 1, to: 2, term: 3, kind: .heartbeat(Heartbeat(commit: 0, readRound: 0)))
        let vote = Message(from: 1, to: 2, term: 3, kind: .voteResponse(granted: true))
        #expect(heartbeat.comesFromLeader)
        #expect(!vote.comesFromLeader)
    }
}

/// Three drivers in this process, each with its own tracker, joined the way the peer route
/// joins them: the sender's age goes along, the receiver records it before its driver sees the batch.
@Suite struct LeaderContactDriverTests {
    private struct Nothing: ReplicatedStateMachine {
        mutating func apply(_ command: [UInt8], at index: LogIndex) -> [UInt8] { [] }
        func snapshot() -> [UInt8] { [] }
        mutating func restore(from snapshot: [UInt8]) throws {}
    }

    private final class Network: Sendable {
        /// What the trackers measure by; the drivers tick in real time.
        let clock = ManualClock()
        let trackers: [NodeID: LeaderContactTracker]

        init() {
            let nodeClock = NodeClock(clock)
            trackers = [1: .init(clock: nodeClock), 2: .init(clock: nodeClock), 3: .init(clock: nodeClock)]
        }
        let drivers = Mutex<[NodeID: RaftDriver<Nothing>]>([:])
        /// Leader messages that left before their sender had taken its bound for their term.
        let early = Mutex<[String]>([])

        struct Transport: PeerTransport {
            let network: Network
            func send(_ messages: [Message]) {
                for (to, batch) in Dictionary(grouping: messages, by: \.to) {
                    guard let from = batch.first?.from, let sender = network.trackers[from],
                        let receiver = network.trackers[to], let driver = network.drivers.withLock({ $0[to] })
                    else { continue }
                    for message in batch where message.comesFromLeader {
                        if sender.predecessorContact(term: message.term) == nil {
                            network.early.withLock { $0.append("\(message)") }
                        }
                    }
                    receiver.peerReported(from, ageMicroseconds: sender.ageMicroseconds())
                    if batch.contains(where: \.comesFromLeader) { receiver.heardFromLeader() }
                    driver.deliver(batch)
                }
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aNewLeaderTakesItsBoundBeforeItsFirstMessageAndFollowersReportFreshContact() async throws {
        let root = try TemporaryDirectory()
        let network = Network()
        for id: NodeID in [1, 2, 3] {
            let (storage, recovered) = try RaftDiskStorage.open(directory: "\(root.path)/\(id)")
            let driver = try RaftDriver(
                configuration: RaftConfiguration(id: id, electionTicks: 10, heartbeatTicks: 1),
                bootstrapMembership: Membership(voters: [1, 2, 3]), storage: storage, recovered: recovered,
                machine: Nothing(), transport: Network.Transport(network: network), tickDuration: .milliseconds(5),
                leaderContact: network.trackers[id], seed: id.rawValue)
            network.drivers.withLock { $0[id] = driver }
        }
        for driver in network.drivers.withLock({ Array($0.values) }) { await driver.start() }
        let leader = await network.drivers.withLock { $0[1]! }.awaitLeader()
        let status = await network.drivers.withLock { $0[leader]! }.status
        // The trackers' clock jumps a minute; the leader's heartbeats keep coming (the drivers tick
        // in real time), so each follower soon counts its contact from after the jump.
        network.clock.advance(by: .seconds(60))
        for (id, follower) in network.trackers where id != leader {
            try await eventually("n\(id) hears from the leader after the jump") { follower.ageMicroseconds() == 0 }
        }
        let tracker = try #require(network.trackers[leader])
        let bound = try #require(tracker.predecessorContact(term: status.term), "no bound taken for \(status.term)")
        #expect(bound <= tracker.now)
        #expect(network.early.withLock { $0 }.isEmpty, "\(network.early.withLock { $0 })")
        for driver in network.drivers.withLock({ Array($0.values) }) { await driver.stop() }
    }
}
