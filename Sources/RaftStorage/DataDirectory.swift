// A node's data directory and the identity file that ties it to one cluster and one node.
public import ClusterModel

/// The directory a node keeps its log, snapshots and identity in.
///
/// The identity file (`identity`, one line: `flotilla-data-dir v1 cluster=<id> node=<n>`, where
/// `v1` is the directory's format version) is
/// written atomically the first time a node starts. Every later start checks it, so a node
/// started with the wrong `--data-dir` (another node's, or an old cluster's) refuses to run
/// instead of joining with a log that belongs elsewhere.
public struct DataDirectory: Sendable {
    public let path: String
    public let clusterID: String
    public let nodeID: String

    static let identityFile = "identity"
    /// The identity file's format: the `v1` after `flotilla-data-dir`. A newer one stops the node.
    public static let formatVersion = 1

    /// Opens `path` for `clusterID`/`nodeID`, creating it and its identity on first use.
    ///
    /// - Returns: the directory, and whether it was created now (a fresh node).
    public static func open(
        _ path: String, clusterID: String, nodeID: String
    ) throws(DataDirectoryError) -> (directory: DataDirectory, isNew: Bool) {
        let expected = "flotilla-data-dir v\(formatVersion) cluster=\(clusterID) node=\(nodeID)\n"
        let identityPath = path + "/" + identityFile
        do {
            try DurableFiles.createDirectory(path)
            if let existing = try DurableFiles.read(identityPath) {
                let text = String(decoding: existing, as: UTF8.self)
                if let version = newerVersion(of: text) {
                    let newer = NewerFormatVersion(
                        subject: "its identity file", format: "data directory format", found: UInt64(version),
                        newest: UInt64(formatVersion))
                    throw DataDirectoryError(
                        path: path, problem: "\(newer.subject) is \(newer.format) \(newer.found)",
                        fix: "this build reads up to \(newer.newest): upgrade this node (docs/operations.md, Upgrades)",
                        newerFormat: newer)
                }
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

    /// The version an identity file declares when it is newer than this build's, else nil.
    static func newerVersion(of identity: String) -> Int? {
        let fields = identity.split(whereSeparator: \.isWhitespace)
        guard fields.count >= 2, fields[0] == "flotilla-data-dir", fields[1].first == "v",
            let version = Int(fields[1].dropFirst()), version > formatVersion
        else { return nil }
        return version
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
    /// Set when the directory was written by a newer build (its identity file's format).
    public var newerFormat: NewerFormatVersion?

    public init(path: String, problem: String, fix: String, newerFormat: NewerFormatVersion? = nil) {
        self.path = path
        self.problem = problem
        self.fix = fix
        self.newerFormat = newerFormat
    }

    public var description: String { "data directory \(path): \(problem); \(fix)" }
}
