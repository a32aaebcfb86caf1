// A volume's metadata file: the disk files it holds, written only by its coordinator.
public import ClusterModel
import ClusterState

/// The contents of `<volume>/.flotilla-volume.json` (DESIGN.md §11).
///
/// Only the volume's coordinator writes it, always atomically (`VolumeFiles.writeAtomically`), so
/// a crash leaves the old or the new file, never a mix. A new coordinator validates it before it
/// serves the volume (`VolumeMetadata.validated`): a file it cannot trust is refused, not repaired.
public struct VolumeMetadata: Codable, Hashable, Sendable {
    public static let fileName = ".flotilla-volume.json"
    /// The layout written today; a file of a later version is refused rather than misread.
    public static let currentFormat = 1
    /// Disk sizes a disk file may be given: 1 MiB to 64 TiB (the largest VHDX).
    public static let sizeRange: ClosedRange<UInt64> = (1 << 20)...(64 << 40)
    /// The size a disk file gets when its creator names none.
    public static let defaultDiskSize: UInt64 = 64 << 30

    public var format: Int
    /// The volume id the file belongs to (`csv1`).
    public var volume: String
    /// Sorted by name; a name appears once.
    public var diskFiles: [DiskFileEntry]

    public init(volume: String, diskFiles: [DiskFileEntry] = []) {
        self.format = Self.currentFormat
        self.volume = volume
        self.diskFiles = diskFiles.sorted { $0.name < $1.name }
    }

    public func entry(named name: String) -> DiskFileEntry? { diskFiles.first { $0.name == name } }

    /// Adds or replaces the entry of the same name, keeping the list sorted.
    mutating func put(_ entry: DiskFileEntry) {
        diskFiles.removeAll { $0.name == entry.name }
        diskFiles.append(entry)
        diskFiles.sort { $0.name < $1.name }
    }

    mutating func remove(named name: String) { diskFiles.removeAll { $0.name == name } }

    /// Why a size is not one a disk file may have, or nil.
    static func sizeProblem(_ size: UInt64, of file: String) -> String? {
        guard sizeRange.contains(size) else {
            return "the size of disk file \"\(file)\" must be \(ByteCount(sizeRange.lowerBound))–"
                + "\(ByteCount(sizeRange.upperBound)), got \(size) bytes"
        }
        return nil
    }
}

/// One disk file a volume holds.
public struct DiskFileEntry: Codable, Hashable, Sendable {
    /// The file's name relative to the volume's directory (`finance.vhdx`).
    public var name: String
    /// The id number of the VM whose disk it is (`vm3` is 3).
    public var vm: VMID
    /// The disk's size in bytes; the file (a journal) never grows beyond it.
    public var size: UInt64

    public init(name: String, vm: VMID, size: UInt64) {
        self.name = name
        self.vm = vm
        self.size = size
    }
}
