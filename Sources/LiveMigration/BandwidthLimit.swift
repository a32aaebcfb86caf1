// A cap on the bytes a migration's pre-copy puts on the link per second (QEMU's max-bandwidth, Proxmox's bwlimit).

/// Paces a pre-copy round so its pages leave no faster than `bytesPerSecond`: the round goes out in
/// batches of about `slice` worth of bytes, and before each batch the sender waits until the bytes
/// already sent are due at the limit. Pure: the time comes in as an argument.
///
/// An operator sets it (`migration.max-bandwidth-mib-s`) to keep a migration from taking the whole
/// link from the cluster's other traffic. The last copy, made while the guest is paused, is not
/// paced: its bytes are the downtime, which the limit would only lengthen (QEMU lifts its limit
/// for the switchover as well).
public struct BandwidthLimit: Hashable, Sendable {
    /// More than 0.
    public let bytesPerSecond: UInt64
    /// The bytes one batch holds at most, as time at the limit.
    public static let slice = Duration.milliseconds(50)

    /// A limit of `bytesPerSecond`, or nil for 0 (no limit).
    public init?(bytesPerSecond: UInt64) {
        guard bytesPerSecond > 0 else { return nil }
        self.bytesPerSecond = bytesPerSecond
    }

    /// Frames per batch: what the limit sends in `slice`, and at least `minimum` (a body chunk,
    /// so a low limit does not turn a round into a request per page).
    public func framesPerBatch(frameSize: Int, minimum: Int) -> Int {
        let bytes = Double(bytesPerSecond) * Self.slice.seconds
        return max(minimum, Int(bytes / Double(frameSize)))
    }

    /// How long to wait, `elapsed` after the round's first byte went out with `sent` bytes gone
    /// since, before the next batch: until `sent` is due at the limit, or not at all.
    public func wait(sent: UInt64, elapsed: Duration) -> Duration {
        let due = Duration.seconds(Double(sent) / Double(bytesPerSecond))
        return due > elapsed ? due - elapsed : .zero
    }
}
