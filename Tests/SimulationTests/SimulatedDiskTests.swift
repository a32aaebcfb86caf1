// Tests of the simulated disk: synced records survive crashes, unsynced ones may not, torn tails are cut.
import FlotillaTestKit
import Testing

@Test(arguments: 0..<50 as Range<UInt64>)
func aCrashKeepsEverySyncedRecordAndAPrefixOfTheRest(seed: UInt64) throws {
    var disk = SimulatedDisk<Int>()
    var random = SimulationRandom(seed: seed)
    for record in 0..<5 { disk.write(record) }
    disk.sync()
    for record in 5..<10 { disk.write(record) }
    let damage = disk.crash(random: &random, tornWriteProbability: 0.5)
    let recovered = try disk.recover()
    #expect(recovered == Array(0..<(5 + damage.survived)))
    #expect(damage.survived + damage.lost == 5)
    #expect(disk.tornRecordsTruncated == (damage.tornRecord ? 1 : 0))
    #expect(disk.unsynced.isEmpty)
}

@Test func aTornTailIsTruncatedOnRecovery() throws {
    var disk = SimulatedDisk<String>()
    var random = SimulationRandom(seed: 1)
    disk.write("a")
    disk.sync()
    disk.write("b")
    var damage = disk.crash(random: &random, tornWriteProbability: 1)
    // Draw until the crash loses the unsynced record (it may also survive whole).
    var seed: UInt64 = 2
    while damage.lost == 0 {
        disk = SimulatedDisk<String>()
        disk.write("a")
        disk.sync()
        disk.write("b")
        random = SimulationRandom(seed: seed)
        seed += 1
        damage = disk.crash(random: &random, tornWriteProbability: 1)
    }
    #expect(damage.tornRecord)
    #expect(disk.hasTornTail)
    #expect(try disk.recover() == ["a"])
    #expect(!disk.hasTornTail)
    #expect(disk.tornRecordsTruncated == 1)
}

@Test func aTornRecordBeforeTheTailIsReportedNotDropped() throws {
    var disk = SimulatedDisk<Int>()
    var random = SimulationRandom(seed: 0)
    var damage = disk.crash(random: &random, tornWriteProbability: 1)
    while !damage.tornRecord {
        disk = SimulatedDisk<Int>()
        disk.write(1)
        damage = disk.crash(random: &random, tornWriteProbability: 1)
    }
    // Writing on without recovering first buries the torn record under good ones.
    disk.write(2)
    disk.sync()
    #expect(throws: SimulatedDisk<Int>.CorruptionError.self) { try disk.recover() }
}

@Test func replacingTheDurableContentIsAtomic() throws {
    var disk = SimulatedDisk<Int>()
    for record in 0..<4 { disk.write(record) }
    disk.sync()
    disk.replaceDurable(with: [42])
    var random = SimulationRandom(seed: 0)
    _ = disk.crash(random: &random, tornWriteProbability: 1)
    #expect(try disk.recover() == [42])
}
