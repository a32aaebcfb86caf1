// The version a node's own storage files carry in the last byte of their 8-byte magic.
import ClusterModel

/// The magic of a write-ahead log segment (`FLOTWAL1`) or of a snapshot file (`FLOTSNP1`): seven
/// bytes naming the kind of file, then the format version as one ASCII digit.
///
/// Files written before versions were spelled out are version 1: the digit was always `1`. A
/// reader compares the eight bytes at once (the common case, no allocation); only a file whose
/// magic differs is looked at again, to tell a newer version (`2`…`9` after the right seven
/// bytes) from damage.
struct MagicVersion: Sendable {
    /// The seven bytes before the version digit.
    let stem: [UInt8]
    /// The version this build writes and the newest it reads.
    let current: UInt8
    /// The format's name in errors and docs.
    let format: String

    init(_ stem: String, current: UInt8, format: String) {
        precondition(stem.utf8.count == 7 && (1...9).contains(current), "magic \(stem) version \(current)")
        self.stem = Array(stem.utf8)
        self.current = current
        self.format = format
    }

    /// The eight bytes written today.
    var magic: [UInt8] { stem + [UInt8(ascii: "0") + current] }

    /// The version a file starting with `bytes` declares when it is newer than `current`, else nil
    /// (the magic is then current, or damaged).
    func newerVersion(in bytes: some Collection<UInt8>) -> UInt8? {
        guard bytes.count >= 8, bytes.prefix(7).elementsEqual(stem) else { return nil }
        let digit = bytes[bytes.index(bytes.startIndex, offsetBy: 7)]
        guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else { return nil }
        let version = digit - UInt8(ascii: "0")
        return version > current ? version : nil
    }

    /// The error for a file at `path` whose magic declares a newer version, or nil.
    func newerFormatError(in bytes: some Collection<UInt8>, path: String, subject: String) -> StorageError? {
        guard let version = newerVersion(in: bytes) else { return nil }
        return .newerFormat(
            path: path,
            NewerFormatVersion(subject: subject, format: format, found: UInt64(version), newest: UInt64(current)))
    }
}
