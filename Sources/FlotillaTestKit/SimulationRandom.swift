// The simulator's seeded random source: every fault, delay and client choice is drawn from it.
public import ClusterModel

/// The core's seeded generator with the draws the simulator needs: a value type, so a run is
/// reproducible from its seed alone.
///
/// The simulator never touches the system's random source; two runs with the same seed make
/// exactly the same choices, which is what lets a failing seed be replayed.
public struct SimulationRandom: RandomNumberGenerator, Sendable {
    private var generator: SeededGenerator

    public init(seed: UInt64) { self.generator = SeededGenerator(seed: seed) }

    public mutating func next() -> UInt64 { generator.next() }

    /// True with probability `probability` (0 never, 1 always).
    public mutating func chance(_ probability: Double) -> Bool {
        guard probability > 0 else { return false }
        guard probability < 1 else { return true }
        return Double(next() >> 11) * 0x1.0p-53 < probability
    }

    /// A uniformly drawn integer in `range`.
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        Int.random(in: range, using: &self)
    }

    /// A uniformly drawn element of a non-empty collection.
    public mutating func element<C: Collection>(of collection: C) -> C.Element {
        precondition(!collection.isEmpty, "cannot draw an element of an empty collection")
        let offset = Int.random(in: 0..<collection.count, using: &self)
        return collection[collection.index(collection.startIndex, offsetBy: offset)]
    }

    /// An independent generator for a sub-component (a node's election jitter, say), so adding
    /// draws in one place does not shift every later draw elsewhere.
    public mutating func split() -> SimulationRandom {
        SimulationRandom(seed: next())
    }

    /// An independent generator of the core's own type, for a node's election timeouts.
    public mutating func splitForNode() -> SeededGenerator {
        SeededGenerator(seed: next())
    }
}
