// The simulator's seeded random source: every fault, delay and client choice is drawn from it.

/// A SplitMix64 generator: a value type, so a run is reproducible from its seed alone.
///
/// The simulator never touches the system's random source; two runs with the same seed make
/// exactly the same choices, which is what lets a failing seed be replayed.
public struct SimulationRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { self.state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

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
}
