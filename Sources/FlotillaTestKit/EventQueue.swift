// The simulator's agenda: events ordered by simulated time, ties broken by scheduling order.

/// A min-heap of events keyed by `(time, sequence)`.
///
/// The sequence number makes the order total, so two events due at the same instant always run
/// in the order they were scheduled: no hidden nondeterminism from heap layout.
public struct EventQueue<Event> {
    private struct Item {
        var time: UInt64
        var sequence: UInt64
        var event: Event

        func precedes(_ other: Item) -> Bool {
            time != other.time ? time < other.time : sequence < other.sequence
        }
    }

    private var heap: [Item] = []
    private var nextSequence: UInt64 = 0

    public init() {}

    public var count: Int { heap.count }
    public var isEmpty: Bool { heap.isEmpty }
    /// When the earliest event is due, if any.
    public var nextTime: UInt64? { heap.first?.time }

    public mutating func schedule(_ event: Event, at time: UInt64) {
        heap.append(Item(time: time, sequence: nextSequence, event: event))
        nextSequence += 1
        siftUp(heap.count - 1)
    }

    /// Removes and returns the earliest event with its due time.
    public mutating func pop() -> (time: UInt64, event: Event)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let item = heap.removeLast()
        if !heap.isEmpty { siftDown(0) }
        return (item.time, item.event)
    }

    /// Drops every event for which `shouldRemove` is true (a crashed node's pending timers, say).
    public mutating func removeAll(where shouldRemove: (Event) -> Bool) {
        let before = heap.count
        heap.removeAll { shouldRemove($0.event) }
        guard heap.count != before else { return }
        for index in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(index) }
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { return }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var first = parent
            if left < heap.count && heap[left].precedes(heap[first]) { first = left }
            if right < heap.count && heap[right].precedes(heap[first]) { first = right }
            guard first != parent else { return }
            heap.swapAt(parent, first)
            parent = first
        }
    }
}
