// Proposing a command from any node: through its own Raft driver when it leads, else on the leader's peer port.
import ClusterModel
import ClusterState
import Foundation
import HTTP2
import Logging
import NIOCore
import RaftCore
import RaftRuntime
import Synchronization

/// Proposes cluster commands on behalf of this node's own components (a migration's source and
/// target), wherever the leader is.
///
/// The leader proposes through its driver; any other node sends the command to the leader's peer
/// port (`POST /v1/internal/propose`), which proposes it there and answers the state machine's
/// answer. Requests that certainly did not reach a leader are sent again until the deadline;
/// once one may have, a lost answer is `unknown`: the caller then learns the outcome from the
/// log (its applied state), never by guessing.
final class ClusterWriter: Sendable {
    enum Outcome: Sendable {
        case applied(CommandOutcome?)
        case rejected(Rejection)
        /// The command may or may not have been applied; read the state to know.
        case unknown(String)
    }

    static let path = "/v1/internal/propose"

    private let local: NodeID
    private let driver: ClusterDriver
    private let addressBook: AddressBook
    private let timeoutTicks: UInt64
    private let clients = Mutex<[Endpoint: HTTP2Client]>([:])

    init(local: NodeID, driver: ClusterDriver, addressBook: AddressBook, timeoutTicks: UInt64) {
        self.local = local
        self.driver = driver
        self.addressBook = addressBook
        self.timeoutTicks = timeoutTicks
    }

    /// Proposes `command` (time-stamped now) and answers what became of it, trying for `patience`
    /// while no leader takes it.
    func propose(_ command: ClusterCommand, patience: Duration = .seconds(10)) async -> Outcome {
        let envelope = CommandEnvelope(proposedAt: WallClock.milliseconds(), command: command).encoded
        let deadline = ContinuousClock.now + patience
        var lastProblem = "no leader is known"
        while ContinuousClock.now < deadline {
            let status = await driver.status
            if status.leader == local {
                do {
                    return Self.outcome(try await driver.propose(envelope, timeoutTicks: timeoutTicks))
                } catch let error as RaftDriverError where error.isNotLeader {
                    lastProblem = error.description
                } catch {
                    return .unknown("\(error)")
                }
            } else if let leader = status.leader, let address = addressBook.addresses(of: leader)?.peer {
                let client = client(for: address)
                let request = HTTPRequest(
                    method: .post, path: Self.path, headers: ["content-type": "application/octet-stream"],
                    body: .buffer(ByteBuffer(bytes: envelope)))
                do {
                    let response = try await client.send(request, timeout: .seconds(5))
                    let body = Array(buffer: try await response.body.collect(upTo: 1 << 20))
                    if response.status == 200 { return Self.outcome(body) }
                    // Answered "not the leader" before proposing anything: try again.
                    guard response.status == 503 else { return .unknown("the leader answered \(response.status)") }
                    lastProblem = String(decoding: body, as: UTF8.self)
                } catch let error as HTTP2ClientError where error.requestWasNotProcessed {
                    lastProblem = "the leader \(leader) is unreachable: \(error.kind)"
                } catch {
                    return .unknown("\(error)")
                }
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return .unknown("no leader took it within \(patience): \(lastProblem)")
    }

    private static func outcome(_ answer: [UInt8]) -> Outcome {
        // An empty answer is a retried request applied before: applied, without an outcome.
        guard !answer.isEmpty else { return .applied(nil) }
        switch try? CommandResult(decoding: answer) {
        case .applied(let outcome): return .applied(outcome)
        case .rejected(let rejection): return .rejected(rejection)
        case nil: return .unknown("an answer that is not a command result")
        }
    }

    private func client(for address: Endpoint) -> HTTP2Client {
        clients.withLock { clients in
            if let client = clients[address] { return client }
            let client = HTTP2Client(configuration: .init(host: address.host, port: address.port))
            clients[address] = client
            return client
        }
    }

    func close() async {
        for client in clients.withLock({ $0.values }) { await client.close() }
    }
}

extension Router {
    /// The leader's side of `ClusterWriter`: proposes the command in the body and answers the
    /// state machine's answer (binary), or 503 when this node does not lead.
    mutating func addProposeRoute(driver: ClusterDriver, timeoutTicks: UInt64) {
        post(ClusterWriter.path) { request, _ in
            let body = Array(buffer: try await request.body.collect(upTo: 1 << 20))
            do {
                let answer = try await driver.propose(body, timeoutTicks: timeoutTicks)
                return HTTPResponse(
                    status: 200, headers: ["content-type": "application/octet-stream"],
                    body: .buffer(ByteBuffer(bytes: answer)))
            } catch let error as RaftDriverError where error.isNotLeader {
                return HTTPResponse(status: 503, headers: [:], body: .string(error.description))
            }
        }
    }
}

/// The wall clock, for the times the state records (`CommandEnvelope.proposedAt`) and for a
/// migration's downtime measured across two nodes (whose wall clocks agree on one host, and to
/// NTP's precision across hosts).
enum WallClock {
    static func milliseconds() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970 * 1000)) }
    static func microseconds() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970 * 1_000_000)) }
}
