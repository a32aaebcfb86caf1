// `GET /v1/vms/{name}/console`: a real guest's serial console, from the node that runs it.
import ClusterModel
import ClusterState
import FlotillaAPI
import HTTP2
import QEMU
import RaftRuntime

/// What a console request asks for: the tail (no offset), or what came after an offset.
struct ConsoleQuery: Equatable {
    static let defaultLimit = 16 << 10
    static let maxLimit = 1 << 20

    var offset: UInt64?
    var limit = Self.defaultLimit

    init(offset: UInt64? = nil, limit: Int = Self.defaultLimit) {
        self.offset = offset
        self.limit = limit
    }

    /// `offset=N` (bytes into the console) and `limit=N` (1 to 1 MiB); anything else is refused.
    init(query: String?) throws(HTTPError) {
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            let value = parts.count == 2 ? parts[1] : ""
            switch parts[0] {
            case "offset":
                guard let offset = UInt64(value) else {
                    throw HTTPError(
                        status: 400, error: "bad_offset",
                        detail: "offset must be a byte offset into the console (a whole number ≥ 0), got \(value)")
                }
                self.offset = offset
            case "limit":
                guard let limit = Int(value), (1...Self.maxLimit).contains(limit) else {
                    throw HTTPError(
                        status: 400, error: "bad_limit",
                        detail: "limit must be a number of bytes from 1 to \(Self.maxLimit), got \(value)")
                }
                self.limit = limit
            case "stale": continue
            default:
                throw HTTPError(
                    status: 400, error: "bad_query",
                    detail: "unknown parameter \(parts[0]); the console takes offset=BYTES and limit=BYTES")
            }
        }
    }
}

extension ClientAPI {
    /// Any node answers: the one that runs the guest reads its console; another looks the VM's
    /// owner up in the state it has applied and forwards the request there (once: a forwarded
    /// request that finds no guest says so rather than going round).
    func addConsoleRoute(to router: inout Router, agent: NodeAgent) {
        router.get("/v1/vms/{name}/console") { request, parameters in
            let name = parameters["name"] ?? ""
            let query = try ConsoleQuery(query: request.query)
            if let here = await agent.console(of: name) {
                guard let log = here.log else { throw Self.noConsole(name) }
                let slice: ConsoleSlice
                do {
                    slice = try ConsoleLog.read(log, from: query.offset, limit: query.limit)
                } catch {
                    throw HTTPError(
                        status: 503, error: "console_unavailable",
                        detail:
                            "\(name)'s guest on \(configuration.nodeID) has no console yet (\(error)); retry in a moment"
                    )
                }
                return try json(
                    ConsoleView(
                        vm: name, node: configuration.nodeID.description, epoch: here.epoch.rawValue,
                        start: slice.start, next: slice.next, size: slice.size,
                        text: String(decoding: slice.bytes, as: UTF8.self)))
            }
            let state = await driver.staleRead { $0.state }
            guard let vm = state.vm(named: name) else { throw Self.noVM(name) }
            guard case .qemu = vm.driver else { throw Self.noConsole(name) }
            guard vm.state == .running, let owner = vm.owner else {
                throw HTTPError(
                    status: 409, error: "not_running",
                    detail: "\(name) is \(vm.state): only a running guest has a console; start it with vm start")
            }
            let forwardedBy = request.headers.values(for: Self.forwardedHeader)
            guard owner != configuration.nodeID, forwardedBy.isEmpty else {
                throw HTTPError(
                    status: 503, error: "not_started",
                    detail: "\(name)'s guest is not running on \(configuration.nodeID) yet; retry in a moment")
            }
            guard let address = addressBook.addresses(of: owner)?.client else {
                throw HTTPError(
                    status: 503, error: "owner_unknown",
                    detail: "\(name) runs on \(owner), whose client address this node does not know; ask \(owner)")
            }
            var forwarded = request
            forwarded.headers.append(name: Self.forwardedHeader, value: configuration.nodeID.description)
            do {
                return try await forwarder.send(forwarded, to: address, timeout: .milliseconds(5_000))
            } catch {
                throw HTTPError(
                    status: 503, error: "owner_unreachable",
                    detail: "\(name) runs on \(owner) at \(address), which did not answer: \(error)")
            }
        }
    }

    static func noConsole(_ name: String) -> HTTPError {
        HTTPError(
            status: 409, error: "no_console",
            detail: "\(name) runs a simulated guest, which has no console; only QEMU guests (driver qemu) have one")
    }
}
