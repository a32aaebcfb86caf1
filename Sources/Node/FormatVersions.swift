// The format versions this build writes and reads, as `flotilla --version` and the start log say them.
import ClusterState
import RaftRuntime
import RaftStorage

/// Every versioned format a node writes, with the version this build writes: it reads that
/// version and every older one (docs/operations.md, "Formats and versions").
public enum FormatVersions {
    /// `name=version` pairs in the table's order, e.g. `wal=1 raft-snapshot=1 entry=9 …`.
    public static let summary: String =
        [
            ("data-dir", UInt64(DataDirectory.formatVersion)),
            ("wal", UInt64(WriteAheadLog.formatVersion)),
            ("raft-snapshot", UInt64(SnapshotStore.formatVersion)),
            ("entry", UInt64(CommandEnvelope.formatVersion)),
            ("state", UInt64(ClusterState.snapshotVersion)),
            ("result", UInt64(CommandResult.formatVersion)),
            ("peer-stream", PeerStreamFormat.current),
            ("backup", UInt64(SnapshotFile.formatVersion)),
        ].map { "\($0.0)=\($0.1)" }.joined(separator: " ")
}
