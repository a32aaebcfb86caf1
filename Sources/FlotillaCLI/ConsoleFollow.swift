// `flotilla vm console --follow`: where to ask next, and what to print of each answer.
public import FlotillaAPI

/// Follows a guest's console across answers. Offsets belong to one guest (node and epoch): when
/// the VM comes back on another node or under another epoch (a failover, a migration, a restart),
/// the new guest's console is read from its start, after a line that says so.
public struct ConsoleFollow: Sendable {
    /// The guest read so far, as "node@epoch".
    private var guest: String?
    /// Where to ask next; nil: the tail, first.
    public private(set) var offset: UInt64?

    public init() {}

    /// What to print of `answer` (possibly nothing, when it must ask again from another offset).
    public mutating func take(_ answer: ConsoleView) -> String {
        let current = "\(answer.node)@\(answer.epoch)"
        guard let guest, guest != current else {
            self.guest = current
            offset = answer.next
            return answer.text
        }
        self.guest = current
        let line =
            "\n--- \(answer.vm) now runs on \(answer.node) under epoch \(answer.epoch): its console from the start ---\n"
        // An answer for an offset into the old console is not this one's start: ask again from 0.
        guard answer.start == 0 else {
            offset = 0
            return line
        }
        offset = answer.next
        return line + answer.text
    }

    /// Whether a follower waits out a refusal and asks again: the guest is not running right now
    /// (a failover, a restart, a node without a leader) — not a VM that does not exist or has no console.
    public static func waitsOut(status: Int?, message: String) -> Bool {
        status == 503 || status == nil || (status == 409 && message.hasPrefix("not_running"))
    }
}
