// One volume's directory on the shared root: loading, validating and saving its metadata.
import ClusterState
import Foundation

/// A volume's directory, `<shared root>/<volume path>`, and the metadata file in it.
public struct VolumeDirectory: Hashable, Sendable {
    public var volume: String
    /// The directory's full path.
    public var path: String

    public init(volume: String, sharedRoot: String, volumePath: String) {
        self.volume = volume
        self.path = sharedRoot + "/" + volumePath
    }

    public var metadataPath: String { path + "/" + VolumeMetadata.fileName }

    public func diskPath(_ file: String) -> String { path + "/" + file }

    /// Loads and validates the metadata before a coordinator serves the volume.
    ///
    /// A volume with no directory or no metadata file yet (just created, or laid out before
    /// volumes had coordinators) gets an empty metadata file. Anything else that does not check
    /// out — a file that does not parse, belongs to another volume, lists a name twice or a bad
    /// name, an implausible size, a listed disk file that is missing, not a regular file or longer
    /// than its size — is refused with what is wrong: the coordinator must not build on metadata
    /// it cannot trust, so nothing is repaired automatically.
    public func loadValidated() throws(VolumeError) -> VolumeMetadata {
        try VolumeFiles.makeDirectory(path)
        guard let bytes = try VolumeFiles.read(metadataPath) else {
            let fresh = VolumeMetadata(volume: volume)
            try save(fresh)
            return fresh
        }
        let metadata: VolumeMetadata
        do {
            metadata = try JSONDecoder().decode(VolumeMetadata.self, from: Data(bytes))
        } catch {
            throw broken("it does not parse as volume metadata (\(Self.describe(error)))")
        }
        guard metadata.format == VolumeMetadata.currentFormat else {
            throw broken(
                "its format is \(metadata.format); this build reads format \(VolumeMetadata.currentFormat)")
        }
        guard metadata.volume == volume else {
            throw broken("it belongs to volume \(metadata.volume), not \(volume); two volumes share a directory")
        }
        var seen: Set<String> = []
        for entry in metadata.diskFiles {
            guard seen.insert(entry.name).inserted else { throw broken("it lists disk file \"\(entry.name)\" twice") }
            if let problem = SharedPath.problem(entry.name, what: "disk file name") { throw broken(problem) }
            if let problem = VolumeMetadata.sizeProblem(entry.size, of: entry.name) { throw broken(problem) }
            guard let status = try VolumeFiles.status(diskPath(entry.name)) else {
                throw broken("it lists disk file \"\(entry.name)\" (\(entry.vm)), which does not exist")
            }
            guard status.isRegularFile else {
                throw broken("it lists disk file \"\(entry.name)\" (\(entry.vm)), which is not a regular file")
            }
            guard status.length <= entry.size else {
                throw broken(
                    "disk file \"\(entry.name)\" (\(entry.vm)) is \(status.length) bytes, more than its size "
                        + "\(entry.size); the metadata is stale or the file is not the one it lists")
            }
        }
        return metadata
    }

    /// Writes the metadata atomically (temporary file, fsync, rename, directory fsync).
    public func save(_ metadata: VolumeMetadata) throws(VolumeError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do {
            data = try encoder.encode(metadata)
        } catch {
            throw VolumeError(.io, "encoding the metadata of \(volume) failed: \(error)")
        }
        try VolumeFiles.writeAtomically([UInt8](data) + [0x0A], to: metadataPath)
    }

    private func broken(_ problem: String) -> VolumeError {
        VolumeError(
            .notServing,
            "the metadata of volume \(volume) (\(metadataPath)) cannot be trusted: \(problem); the volume is not "
                + "served until it is fixed — restore the file from a copy or correct it by hand")
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): context.debugDescription
        case DecodingError.keyNotFound(let key, _): "no \"\(key.stringValue)\""
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        default: "\(error)"
        }
    }
}
