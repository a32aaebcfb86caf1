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

/// `count` distinct TCP ports on 127.0.0.1 that were free a moment ago: each is bound (port 0, the
/// kernel picks), read back, and released together at the end, so no two are the same.
public func freeLoopbackPorts(_ count: Int) throws(FreePortError) -> [Int] {
    var sockets: [Int32] = []
    defer { for socket in sockets { close(socket) } }
    var ports: [Int] = []
    for _ in 0..<count {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw FreePortError(description: "cannot open a socket to find a free port") }
        sockets.append(fd)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw FreePortError(description: "no free loopback port") }
        ports.append(Int(UInt16(bigEndian: address.sin_port)))
    }
    return ports
}
