// A leader's appends without entries, held back briefly so that the next write's append carries
// their commit instead.
import ClusterModel
import RaftCore

/// The appends without entries a leader sends (the commit index moving forward, a probe, a check
/// of a follower's log), kept back for a moment before they leave, the latest one per follower
/// (`RaftDriver`'s `emptyAppendDelay`).
///
/// Under a stream of writes, each commit is followed within a fraction of a millisecond by the
/// next write's append to the same follower, which carries the commit too and checks the log at a
/// later point: the held append is then dropped, and each follower wakes, reads and answers once
/// per write instead of twice (a local cluster under one client's writes: the leader's CPU per
/// write and its reads of answers fall accordingly). When nothing follows, the held append leaves
/// after the delay, which bounds how much later than at once a follower learns a commit.
///
/// Dropping or delaying such an append is what the network may do to any message, and Raft's
/// safety does not depend on either; a lost one's commit also comes with the next heartbeat. Only
/// appends take part: every other message leaves at once, so a held append may arrive after a
/// heartbeat sent later, a reordering Raft tolerates like any other.
struct HeldAppends {
    /// At most one per follower, with the time (ns, any monotonic origin) its follower's first
    /// still-held append was held: a replacement keeps it, so no commit waits longer than the delay.
    private var held: [(message: Message, since: UInt64)] = []

    var isEmpty: Bool { held.isEmpty }

    /// When the oldest held append is due: `delay` after it was held; nil when none is held.
    func due(delay: UInt64) -> UInt64? {
        held.map(\.since).min().map { $0 + delay }
    }

    /// The messages to send now, in order: appends without entries are held instead (replacing the
    /// one held for the same follower); an append with entries drops the one held for its follower.
    mutating func route(_ messages: [Message], now: UInt64) -> [Message] {
        var sendNow: [Message] = []
        sendNow.reserveCapacity(messages.count)
        for message in messages {
            guard case .append(let append) = message.kind else {
                sendNow.append(message)
                continue
            }
            let index = held.firstIndex { $0.message.to == message.to }
            if append.entries.isEmpty {
                if let index { held[index].message = message } else { held.append((message, now)) }
            } else {
                if let index { held.remove(at: index) }
                sendNow.append(message)
            }
        }
        return sendNow
    }

    /// The appends held for at least `delay` at `now`, to send now; the others stay held.
    mutating func release(now: UInt64, delay: UInt64) -> [Message] {
        var due: [Message] = []
        held.removeAll { entry in
            guard entry.since + delay <= now else { return false }
            due.append(entry.message)
            return true
        }
        return due
    }

    /// Forgets every held append (the driver stopped).
    mutating func removeAll() {
        held.removeAll()
    }
}
