// A node's data directory and the identity file that ties it to one cluster and one node.

/// The directory a node keeps its log, snapshots and identity in.
///
/// The identity file (`identity`, one line: `flotilla-data-dir v1 cluster=<id> node=<n>`) is
/// written atomically the first time a node starts. Every later start checks it, so a node
/// started with the wrong `--data-dir` (another node's, or an old cluster's) refuses to run
/// instead of joining with a log that belongs elsewhere.
public struct DataDirectory: Sendable {
    public let path: String
    public let clusterID: String
    public let nodeID: String

    static let identityFile = "identity"

    /// Opens `path` for `clusterID`/`nodeID`, creating it and its identity on first use.
    ///
    /// - Returns: the directory, and whether it was created now (a fresh node).
    public static func open(
        _ path: String, clusterID: String, nodeID: String
    ) throws(DataDirectoryError) -> (directory: DataDirectory, isNew: Bool) {
        let expected = "flotilla-data-dir v1 cluster=\(clusterID) node=\(nodeID)\n"
        let identityPath = path + "/" + identityFile
        do {
            try DurableFiles.createDirectory(path)
            if let existing = try DurableFiles.read(identityPath) {
                let text = String(decoding: existing, as: UTF8.self)
                guard text == expected else {
                    throw DataDirectoryError(
                        path: path,
                        problem: "it belongs to \(describe(text)), not to cluster \(clusterID) node \(nodeID)",
                        fix: "start this node with its own --data-dir, or move the directory aside to start it afresh")
                }
                return (DataDirectory(path: path, clusterID: clusterID, nodeID: nodeID), false)
            }
            let leftovers = try DurableFiles.list(path).filter { $0 != identityFile + ".tmp" }
            guard leftovers.isEmpty else {
                throw DataDirectoryError(
                    path: path,
                    problem:
                        "it holds files (\(leftovers.sorted().prefix(3).joined(separator: ", "))) but no identity file",
                    fix: "point --data-dir at an empty or new directory")
            }
            try DurableFiles.writeAtomically(Array(expected.utf8), to: identityPath)
        } catch let error as StorageError {
            throw DataDirectoryError(path: path, problem: error.description, fix: "check the path and its permissions")
        } catch let error as DataDirectoryError {
            throw error
        } catch {
            throw DataDirectoryError(path: path, problem: "\(error)", fix: "check the path and its permissions")
        }
        return (DataDirectory(path: path, clusterID: clusterID, nodeID: nodeID), true)
    }

    private static func describe(_ identity: String) -> String {
        let fields = identity.split(whereSeparator: \.isWhitespace)
        guard fields.first == "flotilla-data-dir", fields.count == 4,
            let cluster = fields[2].split(separator: "=", maxSplits: 1).last,
            let node = fields[3].split(separator: "=", maxSplits: 1).last
        else {
            return "something else (its identity file is not Flotilla's)"
        }
        return "cluster \(cluster) node \(node)"
    }
}

/// A data directory a node must not use, with what to do.
public struct DataDirectoryError: Error, Hashable, Sendable, CustomStringConvertible {
    public var path: String
    public var problem: String
    public var fix: String

    public var description: String { "data directory \(path): \(problem); \(fix)" }
}
