// A live migration on the wire between its source and its target: the paths and the binary bodies.
public import ClusterModel
public import ClusterState
public import Guests
public import NIOCore

/// The peer RPC of a live migration (docs/live-migration.md).
///
/// On the target's peer port, `prepare` reserves the VM's memory and makes its shell, and answers
/// the port of the target's migration data listener, where the rest goes: the pages of each round
/// (several requests in parallel, each a body of `PageFrame`s, answered once every page of it is
/// in the shell), `finish` (the device state and the image's checksum, answered once verified)
/// and `discard`. The data listener is a server of its own, on its own event loops, so a copy at
/// gigabytes a second never holds up the Raft loop the peer port runs on.
public enum MigrationWire {
    public static func preparePath(_ id: MigrationID) -> String { "/v1/internal/migrations/\(id.rawValue)/prepare" }
    public static func discardPath(_ id: MigrationID) -> String { "/v1/internal/migrations/\(id.rawValue)" }
    public static func pagesPath(_ id: MigrationID) -> String { "/v1/internal/migrations/\(id.rawValue)/pages" }
    public static func finishPath(_ id: MigrationID) -> String { "/v1/internal/migrations/\(id.rawValue)/finish" }

    /// What `prepare` carries: the VM and the memory it holds (what the target must reserve), and
    /// for a QEMU guest the epoch it booted under (its target's QEMU is started as the source's
    /// was; absent for a simulated guest).
    public struct Prepare: Equatable, Sendable {
        public var vm: VMID
        public var memoryBytes: UInt64
        public var bootEpoch: Epoch?

        public var encoded: [UInt8] {
            var writer = ByteWriter()
            writer.writeVarint(vm.rawValue)
            writer.writeVarint(memoryBytes)
            if let bootEpoch { writer.writeVarint(bootEpoch.rawValue) }
            return writer.bytes
        }

        public init(vm: VMID, memoryBytes: UInt64, bootEpoch: Epoch? = nil) {
            self.vm = vm
            self.memoryBytes = memoryBytes
            self.bootEpoch = bootEpoch
        }

        public init(decoding bytes: [UInt8]) throws(WireFormatError) {
            var reader = ByteReader(bytes)
            vm = VMID(try reader.readVarint())
            memoryBytes = try reader.readVarint()
            bootEpoch = reader.isAtEnd ? nil : Epoch(try reader.readVarint())
            guard reader.isAtEnd else { throw WireFormatError("\(reader.remaining) bytes after a prepare") }
        }
    }

    /// What the target's `prepare` answers: the port of its data listener, and for a QEMU guest the
    /// token its stream must carry (`QEMUStreamReceiver`), as text: `PORT` or `PORT TOKEN`.
    public struct Prepared: Equatable, Sendable {
        public var dataPort: Int
        public var streamToken: String?

        public init(dataPort: Int, streamToken: String? = nil) {
            self.dataPort = dataPort
            self.streamToken = streamToken
        }

        public var text: String { "\(dataPort)" + (streamToken.map { " " + $0 } ?? "") }

        /// Nil when `text` is not an answer of this form.
        public init?(text: String) {
            let words = text.split(separator: " ", omittingEmptySubsequences: false)
            guard (1...2).contains(words.count), let port = Int(words[0]), (1...65535).contains(port) else {
                return nil
            }
            if words.count == 2 {
                guard words[1].count == 32, words[1].allSatisfy(\.isHexDigit) else { return nil }
            }
            dataPort = port
            streamToken = words.count == 2 ? String(words[1]) : nil
        }
    }

    /// What `finish` carries: the guest as it was paused, what the image must check out as, and
    /// what the copy took (the target records it once the guest runs there).
    public struct Finish: Equatable, Sendable {
        /// Page frames sent in all, every round's and the last: the target must have taken as many.
        public var pages: UInt64
        public var checksum: UInt64
        public var memoryBytes: UInt64
        public var workload: Workload
        public var elapsedNanoseconds: UInt64
        public var heldPages: Int
        /// When the source paused the guest, microseconds since 1970 (wall clock).
        public var pausedAt: UInt64
        /// When the migration began on the source, microseconds since 1970 (wall clock).
        public var startedAt: UInt64
        /// The rounds and bytes; the target adds the downtime and total time once the guest runs there.
        public var stats: MigrationStats

        public var encoded: [UInt8] {
            var writer = ByteWriter()
            writer.writeVarint(pages)
            writer.writeVarint(checksum)
            writer.writeVarint(memoryBytes)
            workload.encode(into: &writer)
            writer.writeVarint(elapsedNanoseconds)
            writer.writeVarint(heldPages)
            writer.writeVarint(pausedAt)
            writer.writeVarint(startedAt)
            stats.encode(into: &writer)
            return writer.bytes
        }

        public init(
            pages: UInt64, checksum: UInt64, memoryBytes: UInt64, workload: Workload, elapsedNanoseconds: UInt64,
            heldPages: Int, pausedAt: UInt64, startedAt: UInt64, stats: MigrationStats
        ) {
            self.pages = pages
            self.checksum = checksum
            self.memoryBytes = memoryBytes
            self.workload = workload
            self.elapsedNanoseconds = elapsedNanoseconds
            self.heldPages = heldPages
            self.pausedAt = pausedAt
            self.startedAt = startedAt
            self.stats = stats
        }

        public init(decoding bytes: [UInt8]) throws(WireFormatError) {
            var reader = ByteReader(bytes)
            pages = try reader.readVarint()
            checksum = try reader.readVarint()
            memoryBytes = try reader.readVarint()
            workload = try Workload(from: &reader)
            elapsedNanoseconds = try reader.readVarint()
            heldPages = try reader.readInt()
            pausedAt = try reader.readVarint()
            startedAt = try reader.readVarint()
            stats = try MigrationStats(from: &reader)
            guard reader.isAtEnd else { throw WireFormatError("\(reader.remaining) bytes after a finish") }
        }

        /// The guest's activity where it was paused.
        public var activity: GuestActivity {
            GuestActivity(
                migrated: workload, elapsed: .nanoseconds(Int64(clamping: elapsedNanoseconds)), heldPages: heldPages)
        }
    }
}

/// One page on a page stream: its index (8 bytes, little-endian), then its 4 KiB.
public enum PageFrame {
    public static let size = 8 + GuestMemory.pageSize

    /// Appends the frames of `pages` to `buffer`, expanding each page's word to its bytes.
    public static func append(_ pages: some Collection<(page: Int, word: UInt64)>, to buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: pages.count * size)
        for (page, word) in pages {
            buffer.writeInteger(UInt64(page), endianness: .little)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: GuestMemory.pageSize) { raw in
                GuestMemory.expand(word, into: raw)
                return GuestMemory.pageSize
            }
        }
    }
}
