// A guest's serial console log, read by byte offset: the tail, or what came after a point, so a
// reader can follow it (`GET /v1/vms/{name}/console`, `flotilla vm console --follow`).
import Foundation

/// Bytes of a console log and where they lie in it.
public struct ConsoleSlice: Sendable, Equatable {
    /// The offset of the first byte.
    public var start: UInt64
    public var bytes: [UInt8]
    /// The log's size when it was read (it grows while the guest runs).
    public var size: UInt64

    /// Where a reader that follows the log asks next.
    public var next: UInt64 { start + UInt64(bytes.count) }

    public init(start: UInt64, bytes: [UInt8], size: UInt64) {
        self.start = start
        self.bytes = bytes
        self.size = size
    }
}

public struct ConsoleLogError: Error, Equatable, CustomStringConvertible {
    public var description: String

    public init(description: String) { self.description = description }
}

public enum ConsoleLog {
    /// The last `limit` bytes of the log at `path` when `offset` is nil; otherwise up to `limit`
    /// bytes from `offset` on (none when the log has not grown past it: a follower asks again).
    public static func read(_ path: String, from offset: UInt64?, limit: Int) throws(ConsoleLogError) -> ConsoleSlice {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ConsoleLogError(description: "no console log at \(path)")
        }
        defer { try? handle.close() }
        do {
            let size = try handle.seekToEnd()
            let wanted = UInt64(max(0, limit))
            let start = offset.map { min($0, size) } ?? (size > wanted ? size - wanted : 0)
            try handle.seek(toOffset: start)
            let count = Int(min(wanted, size - start))
            let data = count == 0 ? Data() : (try handle.read(upToCount: count) ?? Data())
            return ConsoleSlice(start: start, bytes: [UInt8](data), size: size)
        } catch {
            throw ConsoleLogError(description: "reading the console log at \(path): \(error)")
        }
    }

    /// The last `bytes` bytes as text ("" when there is no log).
    public static func tail(of path: String, bytes: Int) -> String {
        guard let slice = try? read(path, from: nil, limit: bytes) else { return "" }
        return String(decoding: slice.bytes, as: UTF8.self)
    }
}
