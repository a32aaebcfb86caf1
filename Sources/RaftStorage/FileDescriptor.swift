// Thin, throwing wrappers over the POSIX file calls the log and snapshot files need.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An open file, closed when the value is dropped. Every call retries on EINTR and throws a
/// `StorageError` naming the operation and the path.
struct FileDescriptor: ~Copyable {
    let path: String
    private let fd: Int32

    init(path: String, flags: Int32, mode: mode_t = 0o644) throws(StorageError) {
        let fd = open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .system("open", path: path, errno: errno) }
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }

    /// Writes all of `bytes` at `offset`, leaving the file offset where it was.
    func writeAll(_ bytes: [UInt8], at offset: Int) throws(StorageError) {
        let failure = bytes.withUnsafeBytes { buffer -> Int32 in
            var written = 0
            while written < buffer.count {
                let result = pwrite(fd, buffer.baseAddress! + written, buffer.count - written, off_t(offset + written))
                if result < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                written += result
            }
            return 0
        }
        if failure != 0 { throw .system("pwrite", path: path, errno: failure) }
    }

    /// Flushes the file's data and metadata to stable storage.
    func sync() throws(StorageError) {
        while fsync(fd) != 0 {
            if errno != EINTR { throw .system("fsync", path: path, errno: errno) }
        }
    }

    /// Flushes the file's data, and the metadata needed to read it back (its size, its blocks), to
    /// stable storage; timestamps may stay behind. Where the blocks were allocated beforehand
    /// (`allocate`), no metadata changes, and the filesystem need not commit its journal.
    func syncData() throws(StorageError) {
        while fdatasync(fd) != 0 {
            if errno != EINTR { throw .system("fdatasync", path: path, errno: errno) }
        }
    }

    /// Makes the file at least `length` bytes long, with the blocks allocated on disk: bytes
    /// beyond the old end read as zeros. Durable with the next `sync` or `syncData`.
    func allocate(length: Int) throws(StorageError) {
        let result = posix_fallocate(fd, 0, off_t(length))
        if result != 0 { throw .system("posix_fallocate", path: path, errno: result) }
    }

    /// The file's size in bytes.
    func size() throws(StorageError) -> Int {
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw .system("fstat", path: path, errno: errno) }
        return Int(status.st_size)
    }

    func truncate(to length: Int) throws(StorageError) {
        guard ftruncate(fd, off_t(length)) == 0 else { throw .system("ftruncate", path: path, errno: errno) }
    }

    /// Reads the whole file from the start (as long as it was when the read began), straight into
    /// one buffer of its size.
    func readAll() throws(StorageError) -> [UInt8] {
        var contents = [UInt8](repeating: 0, count: try size())
        var length = 0
        while length < contents.count {
            let count = contents.withUnsafeMutableBytes {
                pread(fd, $0.baseAddress! + length, $0.count - length, off_t(length))
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw .system("read", path: path, errno: errno)
            }
            if count == 0 {
                contents.removeLast(contents.count - length)
                break
            }
            length += count
        }
        return contents
    }
}

/// Durable-file operations on paths.
public enum DurableFiles {
    /// Flushes a directory so that a file created, renamed or removed in it survives a crash.
    public static func syncDirectory(_ path: String) throws(StorageError) {
        let directory = try FileDescriptor(path: path, flags: O_RDONLY | O_DIRECTORY)
        try directory.sync()
    }

    /// Replaces `path` with `bytes` so that after a crash the file holds either the old or the new
    /// contents, never a mix: write a temporary file, fsync it, rename it over, fsync the directory.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws(StorageError) {
        let temporary = path + ".tmp"
        do {
            let file = try FileDescriptor(path: temporary, flags: O_WRONLY | O_CREAT | O_TRUNC)
            try file.writeAll(bytes, at: 0)
            try file.sync()
        }
        guard rename(temporary, path) == 0 else { throw .system("rename", path: temporary, errno: errno) }
        try syncDirectory(directoryName(of: path))
    }

    /// Reads a whole file; nil when it does not exist.
    public static func read(_ path: String) throws(StorageError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw .system("open", path: path, errno: errno)
        }
        close(fd)
        return try FileDescriptor(path: path, flags: O_RDONLY).readAll()
    }

    /// Creates `path` and any missing parents (like `mkdir -p`).
    public static func createDirectory(_ path: String) throws(StorageError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component + "/"
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw .system("mkdir", path: prefix, errno: errno)
            }
        }
    }

    /// The names in a directory, without `.` and `..`.
    static func list(_ path: String) throws(StorageError) -> [String] {
        guard let directory = opendir(path) else { throw .system("opendir", path: path, errno: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func remove(_ path: String) throws(StorageError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw .system("unlink", path: path, errno: errno) }
    }

    static func directoryName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
