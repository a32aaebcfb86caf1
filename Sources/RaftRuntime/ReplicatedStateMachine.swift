// The application the Raft log drives, and the transport that carries Raft messages to peers.
public import ClusterModel
public import RaftCore

/// A deterministic state machine fed by committed log entries.
///
/// Every node applies the same commands in the same order, so each must reach the same state:
/// `apply` may depend only on the state and the command — never on a clock, randomness or I/O.
public protocol ReplicatedStateMachine: SendableMetatype {
    /// Applies one committed command and returns the answer for the client that proposed it.
    ///
    /// A command the machine refuses is an answer, not an error: every node refuses the same bytes
    /// alike. Throw only when this build cannot know what the entry means (a newer format,
    /// `NewerFormatVersion`): the driver then stops without applying it, since applying or
    /// refusing it could make this node's state differ from nodes that read the format.
    mutating func apply(_ command: [UInt8], at index: LogIndex) throws -> [UInt8]
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
