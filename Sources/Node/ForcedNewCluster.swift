// `flotilla node --force-new-cluster`: a survivor of a lost quorum keeps its committed state as a cluster of one.
public import ClusterModel
import ClusterState
public import Logging
public import RaftCore
public import RaftStorage

/// The rewrite of a node's log that makes it the only voter (etcd's `--force-new-cluster`).
///
/// When a majority of the voters is gone for good, no entry can commit again and no leader can be
/// elected. The survivor keeps what it saw committed, drops the entries after its commit index
/// (they may never have committed; the operator is told which), and commits a membership entry
/// naming itself alone, decided locally rather than by a quorum: safe only because no other voter
/// will ever come back with the old configuration. Others then join it as learners.
public struct ForcedNewCluster: Hashable, Sendable {
    /// The entry that makes `local` the only voter, at the index after the commit.
    public var membershipEntry: Entry
    /// The hard state that commits it.
    public var hardState: HardState
    /// Entries the node had after its commit index: they may have been committed by the lost
    /// majority (and acknowledged to clients), or never; they are not kept.
    public var discarded: [Entry]
    /// The membership in force before the rewrite.
    public var previousMembership: Membership

    /// Plans the rewrite from what the node's storage recovered; refuses an empty data directory.
    ///
    /// `bootstrapMembership` is the configured membership, in force when the log holds no
    /// snapshot and no membership entry.
    public static func plan(
        recovered: RecoveredRaftState, local: NodeID, bootstrapMembership: Membership
    ) throws(ForcedNewClusterError) -> ForcedNewCluster {
        guard !recovered.isEmpty else {
            throw ForcedNewClusterError(
                "the data directory holds no log: there is no committed state to keep",
                fix: "start this node without --force-new-cluster to found a new, empty cluster")
        }
        let commit = recovered.hardState.commit
        let kept = recovered.entries.filter { $0.index <= commit }
        let discarded = recovered.entries.filter { $0.index > commit }
        let base = recovered.snapshot?.metadata
        guard (kept.last?.index ?? base?.index ?? 0) == commit else {
            throw ForcedNewClusterError(
                "the stored commit index \(commit) is beyond the stored log", fix: "the data directory is damaged")
        }
        var previous = base?.membership ?? bootstrapMembership
        for entry in kept {
            if case .membership(let membership) = entry.payload { previous = membership }
        }
        let term = max(recovered.hardState.term, recovered.entries.map(\.term).max() ?? 0, base?.term ?? 0)
        let entry = Entry(
            term: term, index: commit + 1, payload: .membership(Membership(voters: [local])))
        let vote = term == recovered.hardState.term ? recovered.hardState.vote : nil
        return ForcedNewCluster(
            membershipEntry: entry, hardState: HardState(term: term, vote: vote, commit: entry.index),
            discarded: discarded, previousMembership: previous)
    }

    /// One line for each entry that may have been lost, saying what it was.
    public var lostEntries: [String] {
        discarded.map { entry in
            let what: String
            switch entry.payload {
            case .noop: what = "a new leader's empty entry"
            case .membership(let membership): what = "membership change to \(membership)"
            case .command(let bytes):
                if let envelope = try? CommandEnvelope(decoding: bytes) {
                    what = "command \(envelope.command.kind)"
                } else {
                    what = "a command this build does not read (\(bytes.count) bytes)"
                }
            }
            return "entry \(entry.index) (term \(entry.term)): \(what)"
        }
    }

    /// Applies the rewrite to the Raft storage in `directory` (fsynced), logging what it keeps
    /// and what may have been lost. Called before the node opens its storage to start.
    public static func rewrite(
        raftDirectory directory: String, local: NodeID, bootstrapMembership: Membership, logger: Logger
    ) throws -> ForcedNewCluster {
        let (storage, recovered) = try RaftDiskStorage.open(directory: directory)
        let plan = try plan(recovered: recovered, local: local, bootstrapMembership: bootstrapMembership)
        // The entry replaces the stored suffix from its index on: the uncommitted tail is gone.
        try storage.persist(hardState: plan.hardState, entries: [plan.membershipEntry], snapshot: nil)
        logger.warning(
            "--force-new-cluster: \(local) is now the only voter; it keeps the committed state up to index \(plan.hardState.commit.rawValue - 1)",
            metadata: [
                "previous-membership": "\(plan.previousMembership)",
                "membership-entry": "\(plan.membershipEntry.index)",
                "term": "\(plan.hardState.term)", "discarded": "\(plan.discarded.count)",
            ])
        if plan.discarded.isEmpty {
            logger.warning("--force-new-cluster: no entry was discarded (the log held nothing after its commit index)")
        } else {
            logger.warning(
                "--force-new-cluster: \(plan.discarded.count) entries this node had but had not seen committed were discarded; they may have been lost (if the lost majority committed them, clients were told they succeeded):"
            )
            for line in plan.lostEntries { logger.warning("  may have been lost: \(line)") }
        }
        logger.warning(
            "--force-new-cluster: add members back as learners (flotilla members add), start them with --join true and empty data directories, then promote them; start this node without the flag from now on"
        )
        return plan
    }
}

/// Why `--force-new-cluster` cannot rewrite a data directory.
public struct ForcedNewClusterError: Error, Hashable, Sendable, CustomStringConvertible {
    public var problem: String
    public var fix: String

    init(_ problem: String, fix: String) {
        self.problem = problem
        self.fix = fix
    }

    public var description: String { "--force-new-cluster: \(problem); \(fix)" }
}
