// Why a volume operation failed, with a kind the HTTP layers map to a status code.

/// A failed volume operation: what was wrong, with the input, and what to do.
public struct VolumeError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Hashable, Sendable, Codable {
        /// The request breaks a rule on its own (a bad file name, an implausible size): 400.
        case invalid
        /// It names a disk file the volume does not list: 404.
        case notFound
        /// It does not fit the volume's metadata (the file belongs to another VM, a shrink below its length): 409.
        case conflict
        /// This node does not serve the volume now: not its coordinator, fenced, or its metadata
        /// failed validation (the detail says which): 503, try again once the coordinator serves it.
        case notServing
        /// A file operation on the shared volume failed: 500.
        case io
        /// The coordinator could not be reached: 503.
        case unreachable
    }

    public var kind: Kind
    public var detail: String

    public init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    /// The HTTP status a peer or client answer carries for this kind.
    public var httpStatus: Int {
        switch kind {
        case .invalid: 400
        case .notFound: 404
        case .conflict: 409
        case .notServing, .unreachable: 503
        case .io: 500
        }
    }

    public var description: String { detail }
}
