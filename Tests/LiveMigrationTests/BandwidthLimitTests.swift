// The pacing of a pre-copy round to a bandwidth limit: batch sizes and waits, time as an argument.
import LiveMigration
import Testing

@Suite struct BandwidthLimitTests {
    @Test func noLimitIsNoPacer() {
        #expect(BandwidthLimit(bytesPerSecond: 0) == nil)
        #expect(BandwidthLimit(bytesPerSecond: 1)?.bytesPerSecond == 1)
    }

    @Test func aBatchHoldsFiftyMillisecondsAtTheLimitAndNoLessThanAChunk() throws {
        let limit = try #require(BandwidthLimit(bytesPerSecond: 100 << 20))
        // 100 MiB/s × 50 ms = 5 MiB: 1,280 frames of 4 KiB.
        #expect(limit.framesPerBatch(frameSize: 4096, minimum: 256) == 1280)
        let slow = try #require(BandwidthLimit(bytesPerSecond: 1 << 20))
        #expect(slow.framesPerBatch(frameSize: 4096, minimum: 256) == 256)
    }

    @Test func eachBatchWaitsUntilTheBytesBeforeItAreDue() throws {
        let limit = try #require(BandwidthLimit(bytesPerSecond: 10_000_000))
        #expect(limit.wait(sent: 0, elapsed: .zero) == .zero, "the first batch goes at once")
        // 1 MB is due 100 ms after the start: sent in 20 ms, the next batch waits 80 ms.
        #expect(limit.wait(sent: 1_000_000, elapsed: .milliseconds(20)) == .milliseconds(80))
        // A link slower than the limit never waits.
        #expect(limit.wait(sent: 1_000_000, elapsed: .milliseconds(150)) == .zero)
    }

    /// Sent as the pacer says, over a link of any speed, the round's average never exceeds the limit.
    @Test(arguments: [1_000, 40_000_000, 2_000_000_000])
    func aPacedRoundNeverBeatsTheLimit(linkBytesPerSecond: Double) throws {
        let limit = try #require(BandwidthLimit(bytesPerSecond: 20 << 20))
        let frames = limit.framesPerBatch(frameSize: 4104, minimum: 256)
        let batchBytes = UInt64(frames * 4104)
        var now = Duration.zero
        var sent: UInt64 = 0
        for _ in 0..<50 {
            now += limit.wait(sent: sent, elapsed: now)
            now += .seconds(Double(batchBytes) / linkBytesPerSecond)
            sent += batchBytes
            // Before the next batch: what went out is at most what the limit allows by now, plus a batch.
            let allowed =
                Double(limit.bytesPerSecond)
                * (Double(now.components.seconds) + Double(now.components.attoseconds) / 1e18)
            #expect(Double(sent) <= allowed + Double(batchBytes))
        }
    }
}
