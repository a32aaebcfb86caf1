// The simulated network between nodes: loss, duplication, delay and reordering, and partitions.
public import ClusterModel

/// How badly the network behaves; every draw is made from the simulation's seeded generator.
public struct NetworkFaults: Hashable, Sendable {
    /// The chance that a message is dropped.
    public var lossProbability: Double
    /// The chance that a message that is not dropped arrives twice.
    public var duplicateProbability: Double
    /// Delays are drawn uniformly from this range, so messages on one link overtake each other.
    public var delay: ClosedRange<UInt64>
    /// The chance that a message is held back much longer than usual (a congested path).
    public var slowProbability: Double
    /// How long a held-back message is delayed.
    public var slowDelay: UInt64

    public init(
        lossProbability: Double, duplicateProbability: Double, delay: ClosedRange<UInt64>,
        slowProbability: Double = 0, slowDelay: UInt64 = 0
    ) {
        self.lossProbability = lossProbability
        self.duplicateProbability = duplicateProbability
        self.delay = delay
        self.slowProbability = slowProbability
        self.slowDelay = slowDelay
    }

    /// A perfect network: nothing lost or duplicated, every message arrives after one time unit.
    public static let reliable = NetworkFaults(lossProbability: 0, duplicateProbability: 0, delay: 1...1)
}

/// One direction between two nodes; partitions may cut one direction and leave the other.
public struct Link: Hashable, Sendable, CustomStringConvertible {
    public var from: NodeID
    public var to: NodeID

    public init(from: NodeID, to: NodeID) {
        self.from = from
        self.to = to
    }

    public var description: String { "\(from)→\(to)" }
}

/// The network's state: which links are cut, and how each message sent now will fare.
///
/// The network does not hold messages itself; it says when copies of a message arrive and the
/// simulator puts them on its agenda. A link is checked again on arrival, so a partition that
/// starts while a message is in flight drops it.
public struct SimulatedNetwork: Sendable {
    public var faults: NetworkFaults
    /// Directed links that currently deliver nothing.
    public private(set) var cutLinks: Set<Link> = []
    public private(set) var sentCount = 0
    public private(set) var droppedCount = 0
    public private(set) var duplicatedCount = 0

    public init(faults: NetworkFaults) {
        self.faults = faults
    }

    /// Whether a message sent from `from` to `to` gets through right now.
    public func delivers(from: NodeID, to: NodeID) -> Bool {
        !cutLinks.contains(Link(from: from, to: to))
    }

    /// Cuts both directions between the two groups.
    public mutating func partition(_ side: Set<NodeID>, from otherSide: Set<NodeID>) {
        cutOneWay(from: side, to: otherSide)
        cutOneWay(from: otherSide, to: side)
    }

    /// Cuts only messages from `senders` to `receivers`; the replies still flow.
    public mutating func cutOneWay(from senders: Set<NodeID>, to receivers: Set<NodeID>) {
        for sender in senders {
            for receiver in receivers where sender != receiver {
                cutLinks.insert(Link(from: sender, to: receiver))
            }
        }
    }

    /// Restores every link.
    public mutating func heal() {
        cutLinks.removeAll()
    }

    /// The delays after which copies of one message arrive: none if it is lost or the link is
    /// cut, two if it is duplicated.
    public mutating func arrivalDelays(
        from: NodeID, to: NodeID, random: inout SimulationRandom
    ) -> [UInt64] {
        sentCount += 1
        guard delivers(from: from, to: to), !random.chance(faults.lossProbability) else {
            droppedCount += 1
            return []
        }
        var delays = [drawDelay(&random)]
        if random.chance(faults.duplicateProbability) {
            duplicatedCount += 1
            delays.append(drawDelay(&random))
        }
        return delays
    }

    /// Counts a message that reached a cut link or a stopped node after it was sent.
    public mutating func recordDroppedInFlight() {
        droppedCount += 1
    }

    private func drawDelay(_ random: inout SimulationRandom) -> UInt64 {
        if random.chance(faults.slowProbability) { return faults.slowDelay }
        if faults.delay.lowerBound == faults.delay.upperBound { return faults.delay.lowerBound }
        return UInt64.random(in: faults.delay, using: &random)
    }
}
