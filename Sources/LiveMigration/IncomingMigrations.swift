// A migration's target: the VM shells pages are copied into, the page streams' sink, and the checks before the switchover.
public import ClusterModel
import ClusterState
public import Guests
public import HTTP2
import NIOCore
import Synchronization

/// The VM shells this node is the target of, while their pages arrive.
///
/// `prepare` makes a shell (an empty memory image as large as the VM's memory, which the agent has
/// reserved). Pages from the page requests are checked (a page's bytes must be the ones its word
/// stands for) and written into the image as they arrive, on the data listener's event loops; a
/// page request is answered only once every page of it is in. `finish` compares the image's
/// checksum with the source's and keeps the paused guest's state. The shell is taken by the agent
/// once the switchover is committed (`take`), or discarded when the migration ends otherwise.
public final class IncomingMigrations: Sendable {
    /// A shell and what has come into it.
    private struct Shell {
        let vm: VMID
        var memory: GuestMemory
        /// Page frames taken (a page sent in several rounds counts each time).
        var received: UInt64 = 0
        /// Set by a verified `finish`: the guest's state at pause.
        var finished: MigrationWire.Finish?
    }

    private let shells = Mutex<[MigrationID: Shell]>([:])

    public init() {}

    /// Makes the shell of `id`; false when one exists already (a repeated `prepare`).
    @discardableResult
    public func prepare(_ id: MigrationID, vm: VMID, memoryBytes: UInt64) -> Bool {
        shells.withLock { shells in
            guard shells[id] == nil else { return false }
            shells[id] = Shell(vm: vm, memory: GuestMemory(bytes: memoryBytes))
            return true
        }
    }

    /// Writes pages that arrived (called inline by the page sink); throws a 404 without a shell
    /// and a 409 for a damaged page or one outside the image, which ends that page request.
    func receive(_ id: MigrationID, _ pages: [(page: Int, word: UInt64?)]) throws(HTTPError) {
        try shells.withLock { shells throws(HTTPError) in
            // In place (`&shells[id]`): a copy of the shell taken out of the dictionary would copy
            // the whole image on its first write, as many times as pages arrive in pieces.
            try Self.write(pages, into: &shells[id], of: id)
        }
    }

    /// Checks every page, then writes them all: a request with one bad page writes none of them.
    private static func write(_ pages: [(page: Int, word: UInt64?)], into shell: inout Shell?, of id: MigrationID)
        throws(HTTPError)
    {
        guard shell != nil else {
            throw HTTPError(status: 404, error: "not_found", detail: "no shell for \(id) on this node")
        }
        let pageCount = shell!.memory.pageCount
        for (page, word) in pages where word == nil || page < 0 || page >= pageCount {
            throw HTTPError(
                status: 409, error: "copy_failed",
                detail: "page \(page) arrived damaged or outside the \(pageCount)-page image")
        }
        for (page, word) in pages { shell!.memory.write(page: page, word: word!) }
        shell!.received += UInt64(pages.count)
    }

    /// Checks the image against what the source paused: nil when it is byte for byte the source's
    /// (then the shell keeps the guest's state for the switchover), else why not.
    public func finish(_ id: MigrationID, _ finish: MigrationWire.Finish) -> String? {
        shells.withLock { shells in
            guard var shell = shells[id] else { return "no shell for \(id) on this node" }
            guard shell.received == finish.pages else {
                return "\(shell.received) page frames arrived of the \(finish.pages) the source sent"
            }
            guard shell.memory.bytes == finish.memoryBytes else {
                return "the image is \(shell.memory.bytes) bytes, the source's \(finish.memoryBytes)"
            }
            guard shell.memory.checksum == finish.checksum else {
                return "the image's checksum is not the source's: a page was lost or damaged on the way"
            }
            shell.finished = finish
            shells[id] = shell
            return nil
        }
    }

    /// The verified shell of `vm`, if one waits for its switchover: taken out of the store.
    public func take(vm: VMID) -> (migration: MigrationID, memory: GuestMemory, finish: MigrationWire.Finish)? {
        shells.withLock { shells in
            for (id, shell) in shells where shell.vm == vm {
                guard let finished = shell.finished else { continue }
                shells[id] = nil
                return (id, shell.memory, finished)
            }
            return nil
        }
    }

    /// Puts back a verified shell that `take` handed out but whose guest could not start, for
    /// the next try: the copied image is the VM's memory and must not be lost with the start.
    public func restore(_ id: MigrationID, vm: VMID, memory: GuestMemory, finish: MigrationWire.Finish) {
        shells.withLock { shells in
            shells[id] = Shell(vm: vm, memory: memory, received: finish.pages, finished: finish)
        }
    }

    /// Drops the shell of `id` (the migration ended without switching over here).
    public func discard(_ id: MigrationID) {
        _ = shells.withLock { $0.removeValue(forKey: id) }
    }

    /// The migrations that have a shell here, with their VM, oldest first.
    public var current: [(migration: MigrationID, vm: VMID)] {
        shells.withLock { shells in shells.map { ($0.key, $0.value.vm) }.sorted { $0.migration < $1.migration } }
    }
}

/// One page request's body, taken as it arrives: whole frames go into the shell, a partial one
/// waits for the rest.
final class PageSink: RequestBodySink {
    private let migration: MigrationID
    private let incoming: IncomingMigrations
    private var partial: [UInt8] = []
    /// The pages of one piece of the body, checked: kept between pieces so its memory is reused.
    private var pages: [(page: Int, word: UInt64?)] = []

    init(migration: MigrationID, incoming: IncomingMigrations) {
        self.migration = migration
        self.incoming = incoming
    }

    func receive(_ bytes: UnsafeRawBufferPointer) throws {
        pages.removeAll(keepingCapacity: true)
        var offset = 0
        if !partial.isEmpty {
            let taken = min(PageFrame.size - partial.count, bytes.count)
            partial.append(contentsOf: bytes[0..<taken])
            offset = taken
            guard partial.count == PageFrame.size else { return }
            partial.withUnsafeBytes { pages.append(Self.page($0)) }
            partial.removeAll(keepingCapacity: true)
        }
        pages.reserveCapacity(pages.count + (bytes.count - offset) / PageFrame.size)
        while bytes.count - offset >= PageFrame.size {
            pages.append(Self.page(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + PageFrame.size])))
            offset += PageFrame.size
        }
        partial.append(contentsOf: bytes[offset...])
        if !pages.isEmpty { try incoming.receive(migration, pages) }
    }

    private static func page(_ frame: UnsafeRawBufferPointer) -> (page: Int, word: UInt64?) {
        let index = Int(truncatingIfNeeded: UInt64(littleEndian: frame.loadUnaligned(as: UInt64.self)))
        return (index, GuestMemory.word(ofPage: UnsafeRawBufferPointer(rebasing: frame[8...])))
    }

    func finish() -> HTTPResponse {
        guard partial.isEmpty else {
            return HTTPResponse(
                error: HTTPError(status: 400, error: "bad_page_stream", detail: "the body ended inside a page frame"))
        }
        return HTTPResponse(status: 204)
    }
}

extension Router {
    /// The data listener's routes: the page requests and `finish`.
    public mutating func addMigrationDataRoutes(incoming: IncomingMigrations) {
        addSink(.post, "/v1/internal/migrations/{id}/pages") { _, parameters in
            PageSink(migration: try Self.migrationID(parameters), incoming: incoming)
        }
        post("/v1/internal/migrations/{id}/finish") { request, parameters in
            let id = try Self.migrationID(parameters)
            let finish: MigrationWire.Finish
            do {
                finish = try MigrationWire.Finish(
                    decoding: Array(buffer: try await request.body.collect(upTo: 1 << 20)))
            } catch {
                throw HTTPError(status: 400, error: "bad_request_body", detail: "\(error)")
            }
            if let problem = incoming.finish(id, finish) {
                throw HTTPError(status: 409, error: "copy_failed", detail: problem)
            }
            return HTTPResponse(status: 204)
        }
    }

    /// The `{id}` of a migration route.
    public static func migrationID(_ parameters: RouteParameters) throws(HTTPError) -> MigrationID {
        guard let text = parameters["id"], let id = MigrationID(parsing: text) else {
            throw HTTPError(
                status: 400, error: "bad_migration_id",
                detail: "migration ids are mig1, mig2, … (or 1, 2, …), got \"\(parameters["id"] ?? "")\"")
        }
        return id
    }
}
