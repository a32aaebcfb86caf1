// A volume's metadata file: written atomically, validated before a coordinator serves the volume.
import ClusterModel
import FlotillaTestKit
import Foundation
import Guests
import Logging
import SharedVolumes
import Testing

private let quiet = Logger(label: "flotilla.test", factory: { _ in SwiftLogNoOpLogHandler() })

@Suite final class VolumeMetadataTests {
    let root: TemporaryDirectory
    let directory: VolumeDirectory

    init() throws {
        root = try TemporaryDirectory()
        directory = VolumeDirectory(volume: "csv1", sharedRoot: root.path, volumePath: "volumes/csv1")
    }

    private func writeMetadata(_ text: String) throws {
        try text.write(toFile: directory.metadataPath, atomically: false, encoding: .utf8)
    }

    private func refusal(_ sourceLocation: SourceLocation = #_sourceLocation) -> String {
        do {
            _ = try directory.loadValidated()
            Issue.record("the metadata was accepted", sourceLocation: sourceLocation)
            return ""
        } catch {
            #expect(error.kind == .notServing, sourceLocation: sourceLocation)
            return error.detail
        }
    }

    @Test func aNewVolumeGetsAnEmptyMetadataFileThatRoundTrips() throws {
        #expect(try directory.loadValidated() == VolumeMetadata(volume: "csv1"))
        #expect(FileManager.default.fileExists(atPath: directory.metadataPath))
        // Written atomically: no temporary file is left beside it.
        #expect(!FileManager.default.fileExists(atPath: directory.metadataPath + ".tmp"))
        #expect(FileManager.default.createFile(atPath: directory.diskPath("finance.vhdx"), contents: Data([1, 2, 3])))
        let metadata = VolumeMetadata(
            volume: "csv1", diskFiles: [DiskFileEntry(name: "finance.vhdx", vm: 1, size: 1 << 30)])
        try directory.save(metadata)
        #expect(try directory.loadValidated() == metadata)
        // Saving again replaces the file whole.
        try directory.save(VolumeMetadata(volume: "csv1"))
        #expect(try directory.loadValidated().diskFiles.isEmpty)
    }

    @Test func brokenMetadataIsRefusedWithWhatIsWrong() throws {
        _ = try directory.loadValidated()
        try writeMetadata("{\"format\": 1, \"volume\": \"csv1\", \"diskFi")
        #expect(refusal().contains("does not parse as volume metadata"))
        #expect(refusal().contains(directory.metadataPath))
        #expect(refusal().contains("restore the file from a copy"))

        try writeMetadata(#"{"format": 2, "volume": "csv1", "diskFiles": []}"#)
        #expect(refusal().contains("its format is 2"))
        try writeMetadata(#"{"format": 1, "volume": "csv2", "diskFiles": []}"#)
        #expect(refusal().contains("belongs to volume csv2, not csv1"))

        try writeMetadata(
            #"{"format": 1, "volume": "csv1", "diskFiles": [{"name": "gone.vhdx", "vm": 3, "size": 1073741824}]}"#)
        #expect(refusal().contains("lists disk file \"gone.vhdx\" (vm3), which does not exist"))

        #expect(FileManager.default.createFile(atPath: directory.diskPath("a.vhdx"), contents: Data(count: 4096)))
        try writeMetadata(#"{"format": 1, "volume": "csv1", "diskFiles": [{"name": "a.vhdx", "vm": 1, "size": 12}]}"#)
        #expect(refusal().contains("the size of disk file \"a.vhdx\" must be 1 MiB"))
        try writeMetadata(
            #"{"format": 1, "volume": "csv1", "diskFiles": [{"name": "../a.vhdx", "vm": 1, "size": 1048576}]}"#)
        #expect(refusal().contains("'..'"))
        try writeMetadata(
            #"{"format": 1, "volume": "csv1", "diskFiles": [{"name": "a.vhdx", "vm": 1, "size": 1048576}, "#
                + #"{"name": "a.vhdx", "vm": 2, "size": 1048576}]}"#)
        #expect(refusal().contains("lists disk file \"a.vhdx\" twice"))

        #expect(
            FileManager.default.createFile(atPath: directory.diskPath("big.vhdx"), contents: Data(count: (1 << 20) + 1))
        )
        try writeMetadata(
            #"{"format": 1, "volume": "csv1", "diskFiles": [{"name": "big.vhdx", "vm": 1, "size": 1048576}]}"#)
        #expect(refusal().contains("is 1048577 bytes, more than its size 1048576"))

        try FileManager.default.createDirectory(
            atPath: directory.diskPath("dir.vhdx"), withIntermediateDirectories: true)
        try writeMetadata(
            #"{"format": 1, "volume": "csv1", "diskFiles": [{"name": "dir.vhdx", "vm": 1, "size": 1048576}]}"#)
        #expect(refusal().contains("which is not a regular file"))
    }
}
