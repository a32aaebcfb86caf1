// Tests of the simulated network: faults drawn from the seed, partitions cut what they should.
import ClusterModel
import FlotillaTestKit
import Testing

@Test func aReliableNetworkDeliversEveryMessageOnceAfterOneUnit() {
    var network = SimulatedNetwork(faults: .reliable)
    var random = SimulationRandom(seed: 1)
    for _ in 0..<100 {
        #expect(network.arrivalDelays(from: 1, to: 2, random: &random) == [1])
    }
    #expect(network.sentCount == 100)
    #expect(network.droppedCount == 0)
}

@Test func aSymmetricPartitionCutsBothWaysUntilHealed() {
    var network = SimulatedNetwork(faults: .reliable)
    var random = SimulationRandom(seed: 1)
    network.partition([1], from: [2, 3])
    #expect(network.arrivalDelays(from: 1, to: 2, random: &random).isEmpty)
    #expect(network.arrivalDelays(from: 3, to: 1, random: &random).isEmpty)
    #expect(network.arrivalDelays(from: 2, to: 3, random: &random) == [1])
    network.heal()
    #expect(network.arrivalDelays(from: 1, to: 2, random: &random) == [1])
    #expect(network.droppedCount == 2)
}

@Test func aOneWayCutLetsRepliesThrough() {
    var network = SimulatedNetwork(faults: .reliable)
    network.cutOneWay(from: [1], to: [2])
    #expect(!network.delivers(from: 1, to: 2))
    #expect(network.delivers(from: 2, to: 1))
    #expect(network.cutLinks == [Link(from: 1, to: 2)])
}

@Test func lossAndDuplicationFollowTheirProbabilities() {
    var random = SimulationRandom(seed: 7)
    var lossy = SimulatedNetwork(faults: NetworkFaults(lossProbability: 1, duplicateProbability: 0, delay: 1...1))
    #expect(lossy.arrivalDelays(from: 1, to: 2, random: &random).isEmpty)
    var doubling = SimulatedNetwork(faults: NetworkFaults(lossProbability: 0, duplicateProbability: 1, delay: 1...1))
    #expect(doubling.arrivalDelays(from: 1, to: 2, random: &random) == [1, 1])
    #expect(doubling.duplicatedCount == 1)
}

@Test func delaysStayInRangeAndReorderMessages() {
    let faults = NetworkFaults(lossProbability: 0, duplicateProbability: 0, delay: 2...20)
    var network = SimulatedNetwork(faults: faults)
    var random = SimulationRandom(seed: 3)
    var arrivals: [UInt64] = []
    for sentAt in 0..<200 as Range<UInt64> {
        let delays = network.arrivalDelays(from: 1, to: 2, random: &random)
        #expect(delays.count == 1 && (2...20).contains(delays[0]))
        arrivals.append(sentAt + delays[0])
    }
    // Some message sent later arrives before one sent earlier.
    #expect(arrivals != arrivals.sorted())
}

@Test func theSameSeedMakesTheSameChoices() {
    let faults = NetworkFaults(
        lossProbability: 0.2, duplicateProbability: 0.1, delay: 1...30, slowProbability: 0.05, slowDelay: 500)
    func draws(seed: UInt64) -> [[UInt64]] {
        var network = SimulatedNetwork(faults: faults)
        var random = SimulationRandom(seed: seed)
        return (0..<300).map { _ in network.arrivalDelays(from: 1, to: 2, random: &random) }
    }
    #expect(draws(seed: 11) == draws(seed: 11))
    #expect(draws(seed: 11) != draws(seed: 12))
    #expect(draws(seed: 11).contains([500]))
}
