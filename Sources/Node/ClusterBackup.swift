// Backup and restore of the replicated state: `flotilla snapshot save|restore|status` (etcd's `snapshot` commands).
import ClusterModel
import ClusterState
import Foundation
import RaftCore
public import RaftStorage

/// A backup that cannot be taken, read or restored: what is wrong and what to do.
public struct BackupError: Error, Hashable, Sendable, CustomStringConvertible {
    public var problem: String
    public var fix: String

    init(_ problem: String, fix: String) {
        self.problem = problem
        self.fix = fix
    }

    public var description: String { fix.isEmpty ? problem : "\(problem); \(fix)" }
}

/// What a snapshot file holds, for `flotilla snapshot status` and for the checks before a restore.
public struct SnapshotSummary: Hashable, Sendable, Encodable {
    public var index: UInt64
    public var term: UInt64
    /// When the leader took it, in milliseconds since 1970.
    public var takenAtMilliseconds: UInt64
    public var clusterID: String
    /// The snapshot file format and the cluster state's snapshot format inside it.
    public var fileFormat: UInt32
    public var stateFormat: UInt8
    /// The membership of the cluster it was taken from.
    public var voters: [String]
    public var learners: [String]
    public var settings: Int
    public var nodes: Int
    public var volumes: Int
    public var vms: Int
    public var migrations: Int
    public var events: Int
    /// The whole file's size, and whether its checksums held (a file that fails them has no summary).
    public var bytes: Int
    public var checksumOK: Bool

    enum CodingKeys: String, CodingKey {
        case index, term, clusterID = "cluster", fileFormat = "file-format", stateFormat = "state-format", voters,
            learners, settings, nodes, volumes, vms, migrations, events, bytes, checksumOK = "checksum-ok"
        case takenAtMilliseconds = "taken-at-ms"
    }

    /// The lines `flotilla snapshot status` prints.
    public var text: String {
        let taken = Date(timeIntervalSince1970: Double(takenAtMilliseconds) / 1000)
        let members =
            voters.joined(separator: " ") + (learners.isEmpty ? "" : "; learners " + learners.joined(separator: " "))
        return """
            snapshot of cluster \(clusterID) at index \(index), term \(term)
            taken     \(taken.ISO8601Format())
            checksum  \(checksumOK ? "ok" : "FAILED") (\(bytes) bytes, file format \(fileFormat), state format \(stateFormat))
            members   \(members)
            contents  \(settings) settings, \(nodes) nodes, \(volumes) volumes, \(vms) VMs, \(migrations) migrations, \(events) events
            """
    }
}

/// Taking, checking and restoring snapshot files of the cluster's replicated state.
///
/// The file (`SnapshotFile`, RaftStorage) carries Raft's snapshot metadata and `ClusterState`'s
/// snapshot bytes — the same two things a node's own snapshots hold — so a restore is a node's
/// ordinary start from a stored snapshot, with the new cluster's membership written into it.
public enum ClusterBackup {
    /// The file for a snapshot the leader took (`RaftDriver.consistentSnapshot`).
    static func file(of snapshot: Snapshot, clusterID: String, takenAtMilliseconds: UInt64) -> SnapshotFile {
        SnapshotFile(
            index: snapshot.metadata.index.rawValue, term: snapshot.metadata.term.rawValue,
            takenAtMilliseconds: takenAtMilliseconds, clusterID: clusterID, metadata: snapshot.metadata.wireBytes,
            data: snapshot.data)
    }

    /// The file's Raft metadata and cluster state, decoded; refuses what this build cannot read.
    static func contents(of file: SnapshotFile) throws(BackupError) -> (SnapshotMetadata, ClusterState) {
        let metadata: SnapshotMetadata
        do {
            metadata = try SnapshotMetadata(wireBytes: file.metadata)
        } catch {
            throw BackupError(
                "the snapshot's Raft metadata does not decode (\(error))",
                fix: "its checksum held, so a newer release wrote it: restore it with that release")
        }
        guard metadata.index.rawValue == file.index, metadata.term.rawValue == file.term else {
            throw BackupError(
                "the snapshot's header says index \(file.index) term \(file.term) but its Raft metadata says \(metadata.index) \(metadata.term)",
                fix: "the file was not written by `flotilla snapshot save`; use one that was")
        }
        do {
            return (metadata, try ClusterState(snapshot: file.data))
        } catch {
            throw BackupError(
                "the snapshot's cluster state does not decode: \(error)",
                fix: "restore it with the Flotilla release that saved it, or a newer one")
        }
    }

    /// What the file holds; throws if it cannot be restored by this build.
    public static func summary(of file: SnapshotFile) throws(BackupError) -> SnapshotSummary {
        let (metadata, state) = try contents(of: file)
        return SnapshotSummary(
            index: file.index, term: file.term, takenAtMilliseconds: file.takenAtMilliseconds,
            clusterID: file.clusterID, fileFormat: SnapshotFile.formatVersion, stateFormat: file.data.first ?? 0,
            voters: metadata.membership.voters.sorted().map(\.description),
            learners: metadata.membership.learners.sorted().map(\.description), settings: state.settings.count,
            nodes: state.nodes.count, volumes: state.volumes.count, vms: state.vms.count,
            migrations: state.migrations.count, events: state.events.count, bytes: file.encoded.count,
            checksumOK: true)
    }

    /// Reads and checks the file at `path`: frame, version, checksums, and that its contents decode.
    public static func read(path: String) throws(BackupError) -> (file: SnapshotFile, summary: SnapshotSummary) {
        let file: SnapshotFile
        do {
            file = try SnapshotFile.read(path: path)
        } catch {
            throw BackupError(error.description, fix: "")
        }
        return (file, try summary(of: file))
    }

    /// Checks a snapshot the API sent and writes it to `path` durably (temporary file, fsync,
    /// rename, directory fsync). Nothing is written unless every check passes.
    public static func save(_ bytes: [UInt8], to path: String) throws(BackupError) -> SnapshotSummary {
        let file: SnapshotFile
        do {
            file = try SnapshotFile(decoding: bytes)
        } catch {
            throw BackupError("the node sent a snapshot that fails its checks: \(error.description)", fix: "")
        }
        let summary = try summary(of: file)
        do {
            try file.write(to: path)
        } catch {
            throw BackupError("cannot write the snapshot to \(path): \(error)", fix: "")
        }
        return summary
    }

    /// The snapshot every member of a new cluster starts from: the file's state at its index and
    /// term, with `members` as the only voters and their addresses in place of the old ones.
    static func seed(from file: SnapshotFile, members: [MemberAddress]) throws(BackupError) -> Snapshot {
        let (metadata, state) = try contents(of: file)
        guard !members.isEmpty else {
            throw BackupError(
                "the cluster config names no members",
                fix: "list the new cluster's members in its \"members\", as in cluster-config/local-3.json")
        }
        let addresses = Dictionary(
            uniqueKeysWithValues: members.map { ($0.id, MemberAddresses(peer: $0.peer, client: $0.client)) })
        let seeded = SnapshotMetadata(
            index: metadata.index, term: metadata.term, membership: Membership(voters: Set(members.map(\.id))),
            appliedRequests: metadata.appliedRequests)
        return Snapshot(metadata: seeded, data: state.movedTo(memberAddresses: addresses).snapshot)
    }

    /// The member data directories a restore writes: `<directory>/<node id>` for each member.
    public struct Restored: Sendable {
        public var clusterID: String
        public var directories: [(node: String, path: String)]
        public var summary: SnapshotSummary
    }

    /// Seeds the data directories of a new cluster from the snapshot file at `snapshotPath`: one
    /// under `directory` for each member of the cluster config at `configPath`, bound to that
    /// config's cluster id, whose storage starts from the snapshot with the new membership.
    ///
    /// Everything is checked before anything is written (the file, the config, that no member's
    /// directory holds anything); a failure while writing removes the directories it made.
    public static func restore(
        snapshotPath: String, into directory: String, clusterConfigPath: String
    ) throws(BackupError) -> Restored {
        let (file, summary) = try read(path: snapshotPath)
        guard let contents = FileManager.default.contents(atPath: clusterConfigPath) else {
            throw BackupError("cannot read the cluster config \(clusterConfigPath)", fix: "check the path")
        }
        let config: ConfigFile.Document
        do {
            config = try ConfigFile.parse(contents, path: clusterConfigPath)
        } catch {
            throw BackupError(error.description, fix: "")
        }
        let clusterID = config.settings[.clusterID] ?? "flotilla"
        let snapshot = try seed(from: file, members: config.members)
        let targets = config.members.map { (node: $0.id.description, path: directory + "/" + $0.id.description) }
        for target in targets {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: target.path, isDirectory: &isDirectory) else { continue }
            let held = isDirectory.boolValue ? (try? FileManager.default.contentsOfDirectory(atPath: target.path)) : nil
            guard let held, held.isEmpty else {
                throw BackupError(
                    "\(target.path) is not empty"
                        + (held.map { " (it holds \($0.sorted().prefix(3).joined(separator: ", ")))" } ?? ""),
                    fix:
                        "a restore seeds new data directories only: remove or move it aside, or restore into another --dir"
                )
            }
        }
        var made: [String] = []
        do {
            for target in targets {
                made.append(target.path)
                try seedDirectory(target.path, clusterID: clusterID, node: target.node, snapshot: snapshot)
            }
        } catch {
            for path in made { try? FileManager.default.removeItem(atPath: path) }
            throw error
        }
        return Restored(clusterID: clusterID, directories: targets, summary: summary)
    }

    /// One member's data directory: its identity, then its Raft storage holding only the snapshot
    /// (written as a leader's InstallSnapshot is: the file, then a log reset, one fsync), read back.
    private static func seedDirectory(
        _ path: String, clusterID: String, node: String, snapshot: Snapshot
    ) throws(BackupError) {
        do {
            let (directory, isNew) = try DataDirectory.open(path, clusterID: clusterID, nodeID: node)
            guard isNew else {
                throw BackupError("\(path) already holds a node's data", fix: "restore into new directories")
            }
            let raft = directory.path + "/raft"
            do {
                let (storage, _) = try RaftDiskStorage.open(directory: raft)
                try storage.persist(
                    hardState: HardState(term: snapshot.metadata.term, vote: nil, commit: snapshot.metadata.index),
                    entries: [], snapshot: snapshot)
            }
            let (_, recovered) = try RaftDiskStorage.open(directory: raft)
            guard recovered.snapshot == snapshot, recovered.entries.isEmpty else {
                throw BackupError("\(raft) does not read back the snapshot just written", fix: "check the disk")
            }
        } catch let error as BackupError {
            throw error
        } catch {
            throw BackupError("cannot seed \(path): \(error)", fix: "")
        }
    }
}
