// Checks a key-value client history for linearizability (Wing & Gong's search, as Porcupine does).

/// A history with no linearization: the key's operations, and the furthest the search got.
public struct LinearizabilityViolation: Hashable, Sendable, CustomStringConvertible {
    public var key: UInt32
    /// Every operation on the key, in invocation order.
    public var operations: [HistoryOperation]
    /// The longest order of operations the search found consistent with a register before it
    /// ran out of choices; the operation that should come next is where reality disagreed.
    public var longestLinearizedOrder: [HistoryOperation]

    public var description: String {
        var lines = [
            "key k\(key) has no linearization (\(operations.count) operations); "
                + "the longest consistent order places \(longestLinearizedOrder.count):"
        ]
        lines += longestLinearizedOrder.map { "  ✓ \($0)" }
        let placed = Set(longestLinearizedOrder)
        lines.append("operations that could not be placed after it:")
        lines += operations.filter { !placed.contains($0) }.prefix(20).map { "  ✗ \($0)" }
        return lines.joined(separator: "\n")
    }
}

/// The checker's answer for a whole history.
public enum LinearizabilityVerdict: Hashable, Sendable {
    case linearizable
    case notLinearizable(LinearizabilityViolation)
    /// The search for one key exceeded its step budget; nothing was proved either way.
    case undecided(key: UInt32, searchSteps: Int)
}

/// Decides whether a key-value history is linearizable.
///
/// The store is a product of independent registers, one per key, so a history is linearizable
/// exactly when each key's sub-history is (linearizability is compositional) and each key is
/// searched separately. The search is Wing & Gong's, with Lowe's memoization of (set of
/// operations already placed, register value) as in Porcupine: operations are tried in the
/// order of the history, a completed operation's response ends the choices for the operations
/// that began before it, and a state already explored is never explored again.
public struct LinearizabilityChecker: Sendable {
    /// The most search steps spent on one key before giving up with `.undecided`.
    public var maxSearchStepsPerKey: Int

    public init(maxSearchStepsPerKey: Int = 5_000_000) {
        self.maxSearchStepsPerKey = maxSearchStepsPerKey
    }

    /// The verdict plus how much work it took.
    public struct Report: Hashable, Sendable {
        public var verdict: LinearizabilityVerdict
        /// How many keys (independent sub-histories) were checked.
        public var keysChecked: Int
        public var searchSteps: Int
    }

    public func check(_ history: [HistoryOperation]) -> Report {
        var byKey: [UInt32: [HistoryOperation]] = [:]
        for operation in history {
            // A read that never answered constrains nothing: it changed no state and saw nothing.
            if operation.isPending, case .get = operation.operation { continue }
            byKey[operation.operation.key, default: []].append(operation)
        }
        var totalSteps = 0
        var keysChecked = 0
        for key in byKey.keys.sorted() {
            keysChecked += 1
            let outcome = checkRegister(key: key, operations: byKey[key]!)
            totalSteps += outcome.steps
            if let verdict = outcome.failure {
                return Report(verdict: verdict, keysChecked: keysChecked, searchSteps: totalSteps)
            }
        }
        return Report(verdict: .linearizable, keysChecked: keysChecked, searchSteps: totalSteps)
    }

    private struct Bitset: Hashable {
        var words: [UInt64]

        init(count: Int) { words = Array(repeating: 0, count: (count + 63) / 64) }

        mutating func insert(_ bit: Int) { words[bit >> 6] |= 1 << UInt64(bit & 63) }
        mutating func remove(_ bit: Int) { words[bit >> 6] &= ~(1 << UInt64(bit & 63)) }
    }

    private struct Explored: Hashable {
        var placed: Bitset
        var value: UInt64?
    }

    /// Searches one register's history; `failure` is nil when it is linearizable.
    private func checkRegister(
        key: UInt32, operations unsorted: [HistoryOperation]
    ) -> (failure: LinearizabilityVerdict?, steps: Int) {
        let operations = unsorted.sorted { ($0.invokedAt, $0.client) < ($1.invokedAt, $1.client) }
        let count = operations.count
        // The history as one list of events; node 0 is the head, node 2i+1 the call of operation
        // i and node 2i+2 its return. A pending operation returns after everything else.
        struct Event {
            var time: UInt64
            var isReturn: Bool
            var operation: Int
        }
        var events: [Event] = []
        events.reserveCapacity(2 * count)
        for (index, operation) in operations.enumerated() {
            events.append(Event(time: operation.invokedAt, isReturn: false, operation: index))
            events.append(Event(time: operation.returnedAt ?? .max, isReturn: true, operation: index))
        }
        // At equal times calls go first: the operations overlap, which only widens the choices.
        events.sort { ($0.time, $0.isReturn ? 1 : 0, $0.operation) < ($1.time, $1.isReturn ? 1 : 0, $1.operation) }

        let end = -1
        var next = [Int](repeating: end, count: 2 * count + 1)
        var previous = [Int](repeating: 0, count: 2 * count + 1)
        var cursor = 0
        for event in events {
            let node = 2 * event.operation + (event.isReturn ? 2 : 1)
            next[cursor] = node
            previous[node] = cursor
            cursor = node
        }

        // Lifting takes an operation's call and return out of the list; unlifting puts them back
        // in reverse order, which restores the list exactly (dancing links).
        func remove(_ node: Int) {
            next[previous[node]] = next[node]
            if next[node] != end { previous[next[node]] = previous[node] }
        }
        func restore(_ node: Int) {
            next[previous[node]] = node
            if next[node] != end { previous[next[node]] = node }
        }
        func lift(_ call: Int) {
            remove(call)
            remove(call + 1)
        }
        func unlift(_ call: Int) {
            restore(call + 1)
            restore(call)
        }

        var value: UInt64? = nil
        var placed = Bitset(count: count)
        var explored: Set<Explored> = []
        var stack: [(call: Int, valueBefore: UInt64?)] = []
        var longest: [Int] = []
        var steps = 0
        var entry = next[0]
        while next[0] != end {
            steps += 1
            if steps > maxSearchStepsPerKey {
                return (.undecided(key: key, searchSteps: steps), steps)
            }
            if entry % 2 == 1 {
                let index = entry / 2
                if let after = Self.apply(operations[index], to: value) {
                    placed.insert(index)
                    if explored.insert(Explored(placed: placed, value: after)).inserted {
                        stack.append((entry, value))
                        value = after
                        lift(entry)
                        if stack.count > longest.count { longest = stack.map { $0.call / 2 } }
                        entry = next[0]
                        continue
                    }
                    placed.remove(index)
                }
                entry = next[entry]
            } else {
                // A response: every operation still unplaced that began before it must come
                // first, and none fits, so undo the last choice and try the next one.
                guard let top = stack.popLast() else {
                    let violation = LinearizabilityViolation(
                        key: key, operations: operations, longestLinearizedOrder: longest.map { operations[$0] })
                    return (.notLinearizable(violation), steps)
                }
                value = top.valueBefore
                placed.remove(top.call / 2)
                unlift(top.call)
                entry = next[top.call]
            }
        }
        return (nil, steps)
    }

    /// The register's value after `operation`, or nil if the operation cannot happen now.
    private static func apply(_ operation: HistoryOperation, to value: UInt64?) -> UInt64?? {
        switch (operation.operation, operation.result) {
        case (.put(_, let written), .written), (.put(_, let written), nil):
            return .some(written)
        case (.get, .read(let seen)):
            return seen == value ? .some(value) : nil
        default:
            return nil
        }
    }
}
