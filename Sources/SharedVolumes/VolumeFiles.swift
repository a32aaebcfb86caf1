// The file operations a coordinator does on a shared volume, each durable before it returns.
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// POSIX file operations with the fsyncs that make them survive a crash.
///
/// A file's contents are durable after `fsync` of the file; its name only after `fsync` of the
/// directory that holds it. Every operation here that creates, renames or removes a name syncs
/// the directory too.
enum VolumeFiles {
    /// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never a
    /// mix: write a temporary file beside it, fsync it, rename it over `path`, fsync the directory.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws(VolumeError) {
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw ioError(temporary, "creating") }
        do throws(VolumeError) {
            try writeAll(bytes, to: descriptor, path: temporary)
            guard fsync(descriptor) == 0 else { throw ioError(temporary, "syncing") }
        } catch {
            _ = close(descriptor)
            _ = unlink(temporary)
            throw error
        }
        _ = close(descriptor)
        guard rename(temporary, path) == 0 else {
            let failure = ioError(path, "renaming \(temporary) to")
            _ = unlink(temporary)
            throw failure
        }
        try syncDirectory(of: path)
    }

    /// The whole file, or nil when it does not exist.
    static func read(_ path: String) throws(VolumeError) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: path) else {
            if FileManager.default.fileExists(atPath: path) { throw ioError(path, "reading") }
            return nil
        }
        return [UInt8](data)
    }

    /// Creates an empty file unless one exists (an earlier create cut off by a crash, or a disk
    /// file made before volumes had coordinators), and makes its name durable.
    static func createFile(_ path: String) throws(VolumeError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw ioError(path, "creating") }
        defer { _ = close(descriptor) }
        guard fsync(descriptor) == 0 else { throw ioError(path, "syncing") }
        try syncDirectory(of: path)
    }

    static func remove(_ path: String) throws(VolumeError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw ioError(path, "removing") }
        try syncDirectory(of: path)
    }

    /// Creates `path` and its missing parents, each made durable in its own parent.
    static func makeDirectory(_ path: String) throws(VolumeError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw VolumeError(
                    .io, "\(path) exists but is not a directory; move it away so the volume can live there")
            }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try makeDirectory(parent) }
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw ioError(path, "creating the directory") }
        try syncDirectory(of: path)
    }

    /// What is at `path`: nil when nothing, else whether it is a regular file and its length.
    static func status(_ path: String) throws(VolumeError) -> (isRegularFile: Bool, length: UInt64)? {
        var information = stat()
        guard stat(path, &information) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw ioError(path, "examining")
        }
        return ((information.st_mode & S_IFMT) == S_IFREG, UInt64(max(0, information.st_size)))
    }

    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32, path: String) throws(VolumeError) {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, bytes.count - written) }
            if result < 0 {
                if errno == EINTR { continue }
                throw ioError(path, "writing")
            }
            written += result
        }
    }

    private static func syncDirectory(of path: String) throws(VolumeError) {
        let directory = (path as NSString).deletingLastPathComponent
        let descriptor = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ioError(directory, "opening the directory") }
        defer { _ = close(descriptor) }
        guard fsync(descriptor) == 0 else { throw ioError(directory, "syncing the directory") }
    }

    private static func ioError(_ path: String, _ operation: String) -> VolumeError {
        let code = errno
        return VolumeError(
            .io,
            "\(operation) \(path) failed (errno \(code): \(String(cString: strerror(code)))); "
                + "check the shared volume is mounted and writable")
    }
}
