// Tests of the simulator's agenda and seeded random source: a total, reproducible order.
import FlotillaTestKit
import Testing

@Test func eventsComeOutByTimeThenBySchedulingOrder() {
    var queue = EventQueue<String>()
    queue.schedule("c", at: 5)
    queue.schedule("a", at: 1)
    queue.schedule("d", at: 5)
    queue.schedule("b", at: 3)
    queue.schedule("e", at: 5)
    var order: [String] = []
    while let (_, event) = queue.pop() { order.append(event) }
    #expect(order == ["a", "b", "c", "d", "e"])
}

@Test func removingEventsKeepsTheRestInOrder() {
    var queue = EventQueue<Int>()
    var random = SimulationRandom(seed: 9)
    for value in 0..<200 { queue.schedule(value, at: UInt64(random.int(in: 0...50))) }
    queue.removeAll { $0 % 3 == 0 }
    var last: UInt64 = 0
    var count = 0
    while let (time, value) = queue.pop() {
        #expect(time >= last && value % 3 != 0)
        last = time
        count += 1
    }
    #expect(count == 133)
}

@Test func theRandomSourceIsReproducibleFromItsSeed() {
    var first = SimulationRandom(seed: 42)
    var second = SimulationRandom(seed: 42)
    #expect((0..<10).map { _ in first.next() } == (0..<10).map { _ in second.next() })
    #expect(!first.chance(0) && first.chance(1))
    var child = first.split()
    #expect(child.next() != first.next())
}
