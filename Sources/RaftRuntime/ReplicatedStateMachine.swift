// The application the Raft log drives, and the transport that carries Raft messages to peers.
public import ClusterModel
public import RaftCore

/// A deterministic state machine fed by committed log entries.
///
/// Every node applies the same commands in the same order, so each must reach the same state:
/// `apply` may depend only on the state and the command — never on a clock, randomness or I/O.
public protocol ReplicatedStateMachine: SendableMetatype {
    /// Applies one committed command and returns the answer for the client that proposed it.
    mutating func apply(_ command: [UInt8], at index: LogIndex) -> [UInt8]
    /// The whole state, for a snapshot.
    func snapshot() -> [UInt8]
    /// Replaces the whole state with a snapshot's.
    mutating func restore(from snapshot: [UInt8]) throws
}

/// Carries Raft messages to other nodes. Delivery is best effort: Raft tolerates loss,
/// duplication and reordering, so `send` never waits and never fails.
public protocol PeerTransport: Sendable {
    func send(_ messages: [Message])
}
