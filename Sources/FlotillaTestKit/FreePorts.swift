// Free loopback ports for test and benchmark clusters of real processes.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why no free port could be found.
public struct FreePortError: Error, CustomStringConvertible {
    public var description: String
}

/// The ports handed out: below Linux's ephemeral range (32768–60999), so an outgoing connection
/// of another test never takes one as its source port between our check and the node's bind
/// (with ports the kernel picked, that happened under a full parallel test run), and above the
/// fixed ports of the default configuration and the benchmarks (7101–7391, 2379x, 2710x).
public let freePortRange = 10_000..<20_000

/// `count` distinct TCP ports on 127.0.0.1 that were free a moment ago: random ports from
/// `freePortRange`, each bound to check it is free and released together at the end.
public func freeLoopbackPorts(_ count: Int) throws(FreePortError) -> [Int] {
    var sockets: [Int32] = []
    defer { for socket in sockets { close(socket) } }
    var ports: [Int] = []
    var attempts = 0
    while ports.count < count {
        attempts += 1
        guard attempts <= 1000 else {
            throw FreePortError(description: "no free loopback port in \(freePortRange) after 1000 tries")
        }
        let port = Int.random(in: freePortRange)
        guard !ports.contains(port) else { continue }
        guard let fd = try bindLoopback(port) else { continue }
        sockets.append(fd)
        ports.append(port)
    }
    return ports
}

/// A base from `bases` for which every `base + offset` is a TCP port on 127.0.0.1 that was free a
/// moment ago (each bound to check, released together at the end): for a cluster whose ports are
/// laid out from one base, such as `flotilla local up --port-base`.
public func freeLoopbackPortBase(offsets: [Int], among bases: [Int]) throws(FreePortError) -> Int {
    for base in bases.shuffled() {
        var sockets: [Int32] = []
        defer { for socket in sockets { close(socket) } }
        for offset in offsets {
            guard let fd = try bindLoopback(base + offset) else { break }
            sockets.append(fd)
        }
        if sockets.count == offsets.count { return base }
    }
    throw FreePortError(description: "no base among \(bases.count) with all of \(offsets) free")
}

/// A TCP socket bound to 127.0.0.1:`port`, or nil when the port is taken.
private func bindLoopback(_ port: Int) throws(FreePortError) -> Int32? {
    #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { throw FreePortError(description: "cannot open a socket to find a free port") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
    guard bound else {
        close(fd)
        return nil
    }
    return fd
}
