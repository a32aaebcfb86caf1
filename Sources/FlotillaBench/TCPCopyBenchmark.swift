// `flotilla-bench tcp-copy`: a plain TCP copy between two processes, the yardstick of a migration's transfer rate.
import ArgumentParser
import Foundation
import Guests
import LiveMigration

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A copy of N bytes over one TCP connection on loopback between two processes of this binary,
/// `receive` (a long-lived listener) and `send` (one copy per run): what a live migration's
/// transfer rate is measured against.
///
/// Plain (the default): the sender writes a 256 KiB buffer filled once over and over, the receiver
/// reads into a 256 KiB buffer and looks at nothing. That is the kernel's loopback path and two
/// processes' system calls, nothing more: no page is made or checked, no HTTP/2, no flow control
/// beyond TCP's. With `--pages` the bytes are page frames as a migration sends them (8-byte index,
/// then the 4 KiB `GuestMemory.expand` makes of a word), each made as it is sent, and the receiver
/// checks every page with `GuestMemory.word(ofPage:)`: the simulated guests' own work on top of the
/// plain copy, still without HTTP/2 or a shell to write into.
///
/// The sender times from before `connect` until the receiver's one-byte answer, which it writes
/// once it has read (and, with pages, checked) every byte; it prints the nanoseconds.
struct TCPCopyBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcp-copy",
        abstract: "A plain TCP copy on loopback between two processes (a migration's yardstick).",
        subcommands: [Receive.self, Send.self])

    /// Listens on 127.0.0.1 (a free port, printed on the first line of stdout) and takes copies one
    /// after another until killed.
    struct Receive: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "receive", abstract: "Take copies on a free loopback port (printed) until killed.")

        func run() throws {
            let listener = try TCPSocket.listening()
            print(listener.port)
            fflush(nil)  // flush stdout: the benchmark waits for this line on a pipe
            while true {
                let connection = try listener.acceptOne()
                let answer: UInt8 = (try? Self.take(connection)) == true ? 1 : 0
                try? connection.sendAll([answer])
                connection.closeSocket()
            }
        }

        /// Reads one copy to its end; false when a page did not check out.
        private static func take(_ connection: TCPSocket) throws -> Bool {
            var mode: [UInt8] = [0]
            guard try connection.receive(into: &mode, at: 0) == 1 else { return false }
            let size = 256 << 10
            var buffer = [UInt8](repeating: 0, count: size + PageFrame.size)
            guard mode[0] == 1 else {
                while try connection.receive(into: &buffer, at: 0) > 0 {}
                return true
            }
            // Pages: whole frames are checked as they come; a partial one moves to the front.
            var filled = 0
            while true {
                let count = try connection.receive(into: &buffer, at: filled, upTo: size)
                if count == 0 { return filled == 0 }
                filled += count
                var offset = 0
                let good = buffer.withUnsafeBytes { bytes -> Bool in
                    while filled - offset >= PageFrame.size {
                        let page = UnsafeRawBufferPointer(rebasing: bytes[offset + 8..<offset + PageFrame.size])
                        guard GuestMemory.word(ofPage: page) != nil else { return false }
                        offset += PageFrame.size
                    }
                    return true
                }
                guard good else { return false }
                buffer.withUnsafeMutableBytes { bytes in
                    bytes.baseAddress!.copyMemory(from: bytes.baseAddress! + offset, byteCount: filled - offset)
                }
                filled -= offset
            }
        }
    }

    /// Copies `--bytes` to a receiver and prints the nanoseconds it took.
    struct Send: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "send", abstract: "Copy --bytes to the receiver on --port; print the nanoseconds taken.")

        @Option(help: "The receiver's port on 127.0.0.1.") var port: Int
        @Option(help: "Bytes to copy (with --pages, rounded up to whole page frames).") var bytes: Int
        @Flag(help: "Send page frames made as they go, checked by the receiver.") var pages = false

        func validate() throws {
            guard bytes > 0 else { throw ValidationError("--bytes must be positive") }
        }

        func run() throws {
            let size = 64 * PageFrame.size
            var buffer = [UInt8](repeating: 0, count: size)
            // Plain: the buffer holds page frames made once, so the bytes look like a migration's.
            Self.fill(&buffer, firstPage: 0)
            let started = ContinuousClock.now
            let connection = try TCPSocket.connected(port: port)
            try connection.sendAll([pages ? 1 : 0])
            var sent = 0
            var page = 0
            while sent < bytes {
                if pages {
                    Self.fill(&buffer, firstPage: page)
                    page += 64
                }
                // With pages, whole frames only.
                let rest = bytes - sent
                let count = min(size, pages ? (rest + PageFrame.size - 1) / PageFrame.size * PageFrame.size : rest)
                try connection.sendAll(buffer, count: count)
                sent += count
            }
            connection.shutdownWrite()
            var answer: [UInt8] = [0]
            guard try connection.receive(into: &answer, at: 0) == 1, answer[0] == 1 else {
                throw ValidationError("the receiver did not take the copy (a page failed its check, or it closed)")
            }
            let elapsed = ContinuousClock.now - started
            connection.closeSocket()
            print(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }

        /// 64 page frames from `firstPage` on, each word drawn from its index (never 0).
        private static func fill(_ buffer: inout [UInt8], firstPage: Int) {
            buffer.withUnsafeMutableBytes { bytes in
                for frame in 0..<64 {
                    let page = firstPage + frame
                    let start = frame * PageFrame.size
                    bytes.storeBytes(of: UInt64(page).littleEndian, toByteOffset: start, as: UInt64.self)
                    let word = (UInt64(page) &* 0x9E37_79B9_7F4A_7C15) | 1
                    GuestMemory.expand(
                        word, into: UnsafeMutableRawBufferPointer(rebasing: bytes[start + 8..<start + PageFrame.size]))
                }
            }
        }
    }
}

/// A blocking TCP socket on 127.0.0.1, with the few calls the copy needs.
private struct TCPSocket {
    let descriptor: Int32
    /// The bound port (listeners only).
    var port = 0

    static func listening() throws -> TCPSocket {
        let descriptor = try makeSocket()
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(descriptor, 4) == 0 else { throw failure("bind or listen") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return TCPSocket(descriptor: descriptor, port: Int(UInt16(bigEndian: address.sin_port)))
    }

    static func connected(port: Int) throws -> TCPSocket {
        let descriptor = try makeSocket()
        var address = loopback(port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else { throw failure("connect to 127.0.0.1:\(port)") }
        return TCPSocket(descriptor: descriptor)
    }

    func acceptOne() throws -> TCPSocket {
        let accepted = accept(descriptor, nil, nil)
        guard accepted >= 0 else { throw Self.failure("accept") }
        return TCPSocket(descriptor: accepted)
    }

    /// Reads up to `limit` bytes (default: the rest of `buffer`) at `offset`; 0 at the end.
    func receive(into buffer: inout [UInt8], at offset: Int, upTo limit: Int? = nil) throws -> Int {
        let wanted = min(limit ?? buffer.count, buffer.count - offset)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + offset, wanted) }
            if count >= 0 { return count }
            if errno != EINTR { throw Self.failure("read") }
        }
    }

    /// Writes the first `count` bytes of `bytes` (default: all of them).
    func sendAll(_ bytes: [UInt8], count: Int? = nil) throws {
        let total = count ?? bytes.count
        var written = 0
        while written < total {
            let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, total - written) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Self.failure("write")
            }
            written += count
        }
    }

    func shutdownWrite() { _ = shutdown(descriptor, Int32(SHUT_WR)) }

    func closeSocket() { _ = close(descriptor) }

    private static func makeSocket() throws -> Int32 {
        #if canImport(Glibc)
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let descriptor = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { throw failure("socket") }
        return descriptor
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }

    private static func failure(_ what: String) -> any Error {
        ValidationError("tcp-copy: \(what) failed: \(String(cString: strerror(errno)))")
    }
}
