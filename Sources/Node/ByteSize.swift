// Memory sizes as people write them ("512M", "1.5G") and as tables show them, in binary units.
import Foundation

/// Parses and prints byte counts with binary units: K = 1024, M = 1024², G = 1024³, T = 1024⁴.
public enum ByteSize {
    private static let units: [(suffixes: [String], bytes: UInt64)] = [
        (["", "b"], 1),
        (["k", "kb", "kib"], 1 << 10),
        (["m", "mb", "mib"], 1 << 20),
        (["g", "gb", "gib"], 1 << 30),
        (["t", "tb", "tib"], 1 << 40),
    ]

    /// The byte count `text` names: a number, optionally with up to three decimals, then an
    /// optional unit (`512M`, `1G`, `1.5GiB`, `4096`); nil for anything else or above 2⁶⁴ − 1.
    public static func parse(_ text: String) -> UInt64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        let number = trimmed.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        let suffix = trimmed.dropFirst(number.count).trimmingCharacters(in: .whitespaces)
        guard let unit = units.first(where: { $0.suffixes.contains(suffix) })?.bytes else { return nil }
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), !parts[0].isEmpty, let whole = UInt64(parts[0]) else { return nil }
        let (wholeBytes, overflow) = whole.multipliedReportingOverflow(by: unit)
        guard !overflow else { return nil }
        guard parts.count == 2 else { return wholeBytes }
        // A fraction: up to three digits, rounded down to whole bytes.
        let fraction = parts[1]
        guard (1...3).contains(fraction.count), let digits = UInt64(fraction) else { return nil }
        let scale: UInt64 = [10, 100, 1000][fraction.count - 1]
        let (sum, overflowed) = wholeBytes.addingReportingOverflow(
            unit / scale * digits + unit % scale * digits / scale)
        return overflowed ? nil : sum
    }

    /// What a user is told when `text` is not a size.
    public static func problem(_ text: String, what: String) -> String {
        "\(what) \"\(text)\" is not a size; write it like 512M, 1G, 1.5G or a number of bytes"
    }

    /// A short form for tables: `4G`, `1.5G`, `512M`, `64K`, `300B` (one decimal, rounded down).
    public static func compact(_ bytes: UInt64) -> String {
        for (name, unit) in [("T", UInt64(1) << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)] where bytes >= unit
        {
            let whole = bytes / unit
            let tenth = (bytes % unit) * 10 / unit
            return tenth == 0 ? "\(whole)\(name)" : "\(whole).\(tenth)\(name)"
        }
        return "\(bytes)B"
    }
}
