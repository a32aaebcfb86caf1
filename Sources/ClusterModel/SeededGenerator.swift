// The injected source of randomness (election timeouts, guests' writes, tests): seeded, so a run can be replayed.

/// A small, fast, seedable generator (SplitMix64). A value: copying a node copies its future draws.
public struct SeededGenerator: RandomNumberGenerator, Hashable, Sendable {
    private var state: UInt64

    /// Nearby seeds (a node's id, say) are spread apart so that their sequences do not start alike.
    public init(seed: UInt64) { self.state = (seed &* 0xD1B5_4A32_D192_ED03) ^ 0x8CB9_2BA7_2F3D_8DD7 }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
