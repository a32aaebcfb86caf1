// A node's coordinator role: serves the metadata and redirected I/O of the volumes it coordinates.
import ClusterModel
import ClusterState
public import Guests
public import Logging

/// Serves the volumes the applied state says this node coordinates (DESIGN.md §11).
///
/// `coordinate(_:)` is told which volumes those are; a volume it takes up is served only after
/// its metadata validated (`VolumeDirectory.loadValidated`). One that fails is refused, with the
/// reason logged and answered to every request, and validated again on the next call, so an
/// operator who restores the file needs no restart. A fenced node serves nothing: its lease may
/// have run out while another node took the volume over.
///
/// Metadata operations and redirected journal I/O run on this actor one at a time, so the
/// metadata file has one writer and a journal gets one append at a time.
public actor VolumeCoordinator {
    private enum Role {
        case serving(VolumeDirectory, VolumeMetadata)
        case refused(VolumeDirectory, reason: String)
    }

    public let sharedRoot: String
    private let logger: Logger
    private var roles: [String: Role] = [:]
    /// Journals open for redirected appends, by disk path; reopened whenever the owner also
    /// wrote directly (the sequence tells).
    private var journals: [String: DiskJournal] = [:]
    private var fenceReason: String?
    /// Redirected records appended per volume since this node started: how much I/O it carried for others.
    public private(set) var redirectedAppends: [String: Int] = [:]

    public init(sharedRoot: String, logger: Logger) {
        self.sharedRoot = sharedRoot
        self.logger = logger
    }

    /// Serves exactly `assignments` (volume id → path under the shared root): the online volumes
    /// this node coordinates in its applied state. Validates those it does not serve yet.
    public func coordinate(_ assignments: [String: String]) {
        for (volume, role) in roles {
            let directory = Self.directory(of: role)
            guard
                let path = assignments[volume],
                directory == VolumeDirectory(volume: volume, sharedRoot: sharedRoot, volumePath: path)
            else {
                release(volume, directory)
                continue
            }
        }
        guard fenceReason == nil else { return }
        for (volume, path) in assignments.sorted(by: { $0.key < $1.key }) {
            if case .serving = roles[volume] { continue }
            let directory = VolumeDirectory(volume: volume, sharedRoot: sharedRoot, volumePath: path)
            do {
                let metadata = try directory.loadValidated()
                roles[volume] = .serving(directory, metadata)
                logger.info(
                    "coordinating volume \(volume): metadata validated",
                    metadata: ["path": "\(directory.path)", "disk-files": "\(metadata.diskFiles.count)"])
            } catch {
                if case .refused(_, let previous) = roles[volume], previous == error.detail { continue }
                logger.error("refusing to coordinate volume \(volume): \(error.detail)")
                roles[volume] = .refused(directory, reason: error.detail)
            }
        }
    }

    /// Stops serving every volume until `unfence()` and the next `coordinate(_:)`.
    public func fence(reason: String) {
        fenceReason = reason
        for (volume, role) in roles { release(volume, Self.directory(of: role)) }
    }

    public func unfence() { fenceReason = nil }

    /// The volumes this node serves now.
    public var served: [String] { roles.filter { if case .serving = $0.value { true } else { false } }.keys.sorted() }

    /// Volumes this node should coordinate but refuses to, and why.
    public var refusals: [String: String] {
        roles.compactMapValues { if case .refused(_, let reason) = $0 { reason } else { nil } }
    }

    /// The metadata of a volume this node serves.
    public func metadata(of volume: String) throws(VolumeError) -> VolumeMetadata { try serving(volume).1 }

    /// Applies one metadata operation and answers the metadata after it, durable on disk.
    public func perform(_ operation: MetadataOperation, on volume: String) throws(VolumeError) -> VolumeMetadata {
        let (directory, before) = try serving(volume)
        var metadata = before
        switch operation {
        case .createDiskFile(let file, let vm, let size):
            if let problem = SharedPath.problem(file, what: "disk file name") { throw VolumeError(.invalid, problem) }
            if let problem = VolumeMetadata.sizeProblem(size, of: file) { throw VolumeError(.invalid, problem) }
            if let existing = metadata.entry(named: file) {
                guard existing.vm == vm else {
                    throw VolumeError(
                        .conflict,
                        "disk file \"\(file)\" on volume \(volume) belongs to \(existing.vm); give \(vm) a file of its own"
                    )
                }
                return metadata
            }
            let path = directory.diskPath(file)
            let parent = path[..<(path.lastIndex(of: "/") ?? path.endIndex)]
            try VolumeFiles.makeDirectory(String(parent))
            // The file first, then the metadata that lists it: a crash in between leaves an
            // unlisted file, which validation ignores and the next create of that name adopts.
            try VolumeFiles.createFile(path)
            metadata.put(DiskFileEntry(name: file, vm: vm, size: size))
        case .resizeDiskFile(let file, let size):
            guard var entry = metadata.entry(named: file) else { throw notListed(file, on: volume) }
            if let problem = VolumeMetadata.sizeProblem(size, of: file) { throw VolumeError(.invalid, problem) }
            let length = try VolumeFiles.status(directory.diskPath(file))?.length ?? 0
            guard length <= size else {
                throw VolumeError(
                    .conflict,
                    "disk file \"\(file)\" on volume \(volume) already holds \(length) bytes; a size of \(size) "
                        + "would cut off its data — pick a size of at least \(length)")
            }
            entry.size = size
            metadata.put(entry)
        case .deleteDiskFile(let file):
            guard metadata.entry(named: file) != nil else { throw notListed(file, on: volume) }
            let path = directory.diskPath(file)
            journals.removeValue(forKey: path)?.close()
            // Unlisted first: a crash before the removal leaves an unlisted file, never a listed one missing.
            metadata.remove(named: file)
            try directory.save(metadata)
            roles[volume] = .serving(directory, metadata)
            try VolumeFiles.remove(path)
            return metadata
        }
        try directory.save(metadata)
        roles[volume] = .serving(directory, metadata)
        return metadata
    }

    /// Does one redirected journal operation for a node whose direct path is broken.
    ///
    /// The epoch fences here as on a direct path: a journal holding a newer epoch refuses the
    /// open and the append (another node owns the VM now), so a stale owner's redirected write
    /// never lands after the new owner's.
    public func journal(_ operation: JournalOperation, on volume: String) throws(VolumeError) -> JournalPosition {
        let (directory, metadata) = try serving(volume)
        guard let entry = metadata.entry(named: operation.file) else { throw notListed(operation.file, on: volume) }
        guard entry.vm == operation.vm else {
            throw VolumeError(
                .conflict,
                "disk file \"\(operation.file)\" on volume \(volume) belongs to \(entry.vm), not \(operation.vm)")
        }
        let path = directory.diskPath(operation.file)
        switch operation {
        case .open(_, let vm, let epoch):
            journals.removeValue(forKey: path)?.close()
            let journal = try Self.open(path, vm: vm, epoch: epoch)
            journals[path] = journal
            return JournalPosition(journal)
        case .append(_, let vm, let epoch, let sequence, let payload):
            guard payload.count <= JournalFormat.maxPayload else {
                throw VolumeError(
                    .invalid, "a journal payload is at most \(JournalFormat.maxPayload) bytes, got \(payload.count)")
            }
            var journal = journals[path]
            if journal?.nextSequence != sequence || journal.map({ ($0.lastEpoch ?? 0) > epoch }) == true {
                // The owner wrote directly since (or never opened here): replay to see where the file is.
                journals.removeValue(forKey: path)?.close()
                journal = try Self.open(path, vm: vm, epoch: epoch)
                journals[path] = journal
            }
            guard let journal, journal.nextSequence == sequence else {
                throw VolumeError(
                    .conflict,
                    "\(path) continues at seq \(journals[path]?.nextSequence ?? 0), but the record has seq \(sequence); "
                        + "the owner's view of its journal is stale — start the VM again")
            }
            do {
                try journal.append(epoch: epoch, payload: payload)
            } catch {
                journals.removeValue(forKey: path)?.close()
                throw VolumeError(.io, error.description)
            }
            redirectedAppends[volume, default: 0] += 1
            return JournalPosition(journal)
        }
    }

    private static func open(_ path: String, vm: VMID, epoch: Epoch) throws(VolumeError) -> DiskJournal {
        do {
            return try DiskJournal.open(path: path, vm: vm, epoch: epoch)
        } catch {
            throw VolumeError(error.isNewerEpoch || error.damagedOffset != nil ? .conflict : .io, error.description)
        }
    }

    private func serving(_ volume: String) throws(VolumeError) -> (VolumeDirectory, VolumeMetadata) {
        if let fenceReason {
            throw VolumeError(
                .notServing,
                "this node is fenced (\(fenceReason)) and serves no volume; ask again once it holds a lease")
        }
        switch roles[volume] {
        case .serving(let directory, let metadata): return (directory, metadata)
        case .refused(_, let reason): throw VolumeError(.notServing, reason)
        case nil:
            throw VolumeError(
                .notServing,
                "this node does not coordinate volume \(volume) (as far as its applied state says); "
                    + "ask the volume's coordinator (GET /v1/volumes/\(volume))")
        }
    }

    private func notListed(_ file: String, on volume: String) -> VolumeError {
        VolumeError(.notFound, "volume \(volume) lists no disk file \"\(file)\"; create it first")
    }

    private func release(_ volume: String, _ directory: VolumeDirectory) {
        roles[volume] = nil
        for path in journals.keys where path.hasPrefix(directory.path + "/") {
            journals.removeValue(forKey: path)?.close()
        }
    }

    private static func directory(of role: Role) -> VolumeDirectory {
        switch role {
        case .serving(let directory, _), .refused(let directory, _): directory
        }
    }
}
