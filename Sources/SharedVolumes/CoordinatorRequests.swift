// What nodes ask a volume's coordinator: metadata operations and redirected journal I/O.
public import ClusterModel
import Guests

/// A change to a volume's metadata; only the coordinator applies one (DESIGN.md §11).
public enum MetadataOperation: Codable, Hashable, Sendable {
    /// Creates the disk file (empty; its VM's journal writes the header) and lists it. Creating
    /// a file the volume already lists for the same VM answers the metadata unchanged.
    case createDiskFile(file: String, vm: VMID, size: UInt64)
    /// Changes a listed disk file's size; never below what the file already holds.
    case resizeDiskFile(file: String, size: UInt64)
    /// Unlists the disk file and removes it.
    case deleteDiskFile(file: String)
}

/// Journal I/O a node whose direct path is broken sends to the coordinator.
public enum JournalOperation: Codable, Hashable, Sendable {
    /// Opens and replays the journal under `epoch` (as `DiskJournal.open`); answers its position.
    case open(file: String, vm: VMID, epoch: Epoch)
    /// Appends one record (fsynced before the answer); answers the position after it.
    case append(file: String, vm: VMID, epoch: Epoch, sequence: UInt64, payload: [UInt8])

    public var file: String {
        switch self {
        case .open(let file, _, _), .append(let file, _, _, _, _): file
        }
    }

    public var vm: VMID {
        switch self {
        case .open(_, let vm, _), .append(_, let vm, _, _, _): vm
        }
    }

    public var epoch: Epoch {
        switch self {
        case .open(_, _, let epoch), .append(_, _, let epoch, _, _): epoch
        }
    }
}
