// Memory as the cluster speaks of it: a VM's dynamic-memory settings and byte counts for people.

/// A VM's dynamic-memory settings (DESIGN.md §10), in bytes and percent.
public struct MemorySettings: Hashable, Sendable {
    /// What the VM needs to start; admission control counts this.
    public var startup: UInt64
    public var minimum: UInt64
    public var maximum: UInt64
    /// Memory kept above demand, in percent of demand.
    public var bufferPercent: Int
    /// Weight when memory is short: higher keeps closer to its target.
    public var priority: Int

    public static let defaultBufferPercent = 20
    public static let defaultPriority = 50
    public static let bufferPercentRange = 5...2000
    public static let priorityRange = 0...100
    /// 1 PiB: far above any host, low enough that sums of many VMs never overflow 64 bits.
    public static let largestBytes: UInt64 = 1 << 50

    public init(
        startup: UInt64, minimum: UInt64, maximum: UInt64, bufferPercent: Int = defaultBufferPercent,
        priority: Int = defaultPriority
    ) {
        self.startup = startup
        self.minimum = minimum
        self.maximum = maximum
        self.bufferPercent = bufferPercent
        self.priority = priority
    }

    /// Why the settings are inconsistent, or nil when they are not.
    public var problem: String? {
        guard minimum > 0 else { return "minimum memory must be more than 0" }
        guard minimum <= startup, startup <= maximum else {
            return "memory settings need minimum ≤ startup ≤ maximum; got minimum \(ByteCount(minimum)), "
                + "startup \(ByteCount(startup)), maximum \(ByteCount(maximum))"
        }
        guard maximum <= Self.largestBytes else {
            return "maximum memory \(ByteCount(maximum)) is above the limit of \(ByteCount(Self.largestBytes))"
        }
        guard Self.bufferPercentRange.contains(bufferPercent) else {
            return
                "memory buffer must be 5–2000 %, got \(bufferPercent) % (the default is \(Self.defaultBufferPercent))"
        }
        guard Self.priorityRange.contains(priority) else {
            return "memory priority must be 0–100, got \(priority) (the default is \(Self.defaultPriority))"
        }
        return nil
    }
}

/// A byte count as people write it (`512M`, `1.5G`) and read it (`1.0 GiB`, `512M`), in binary
/// units: K = 1024, M = 1024², G = 1024³, T = 1024⁴.
public struct ByteCount: Hashable, Sendable, CustomStringConvertible {
    public var bytes: UInt64

    public init(_ bytes: UInt64) { self.bytes = bytes }

    private static let units: [(suffixes: [String], bytes: UInt64)] = [
        (["", "b"], 1),
        (["k", "kb", "kib"], 1 << 10),
        (["m", "mb", "mib"], 1 << 20),
        (["g", "gb", "gib"], 1 << 30),
        (["t", "tb", "tib"], 1 << 40),
    ]

    /// Parses a number, optionally with up to three decimals, then an optional unit (`512M`, `1G`,
    /// `1.5GiB`, `4096`); nil for anything else or above 2⁶⁴ − 1.
    public init?(parsing text: some StringProtocol) {
        let trimmed = Substring(text.lowercased()).trimmingSpaces
        let number = trimmed.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        let suffix = String(trimmed.dropFirst(number.count).trimmingSpaces)
        guard let unit = Self.units.first(where: { $0.suffixes.contains(suffix) })?.bytes else { return nil }
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), !parts[0].isEmpty, let whole = UInt64(parts[0]) else { return nil }
        let (wholeBytes, overflow) = whole.multipliedReportingOverflow(by: unit)
        guard !overflow else { return nil }
        guard parts.count == 2 else {
            self.bytes = wholeBytes
            return
        }
        // A fraction: up to three digits, rounded down to whole bytes.
        let fraction = parts[1]
        guard (1...3).contains(fraction.count), let digits = UInt64(fraction) else { return nil }
        let scale: UInt64 = [10, 100, 1000][fraction.count - 1]
        let (sum, overflowed) = wholeBytes.addingReportingOverflow(
            unit / scale * digits + unit % scale * digits / scale)
        guard !overflowed else { return nil }
        self.bytes = sum
    }

    /// What a user is told when `text` is not a size; `what` names where it was given.
    public static func problem(_ text: String, what: String) -> String {
        "\(what) \"\(text)\" is not a size; write it like 512M, 1G, 1.5G or a number of bytes"
    }

    /// `1.0 GiB`, `512 MiB`, `1.5 MiB`, `300 bytes`: for messages.
    public var description: String {
        let kib: UInt64 = 1 << 10
        let mib: UInt64 = 1 << 20
        let gib: UInt64 = 1 << 30
        if bytes >= gib { return Self.tenths(bytes, unit: gib, name: " GiB", keepZero: true) }
        if bytes >= mib { return Self.tenths(bytes, unit: mib, name: " MiB", keepZero: false) }
        if bytes >= kib { return Self.tenths(bytes, unit: kib, name: " KiB", keepZero: false) }
        return "\(bytes) bytes"
    }

    /// `4G`, `1.5G`, `512M`, `64K`, `300B`: the short form for tables.
    public var compact: String {
        for (name, unit) in [("T", UInt64(1) << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)] where bytes >= unit
        {
            return Self.tenths(bytes, unit: unit, name: name, keepZero: false)
        }
        return "\(bytes)B"
    }

    /// One decimal, rounded down so a free amount is never overstated.
    private static func tenths(_ bytes: UInt64, unit: UInt64, name: String, keepZero: Bool) -> String {
        let whole = bytes / unit
        let tenth = (bytes % unit) * 10 / unit
        return tenth == 0 && !keepZero ? "\(whole)\(name)" : "\(whole).\(tenth)\(name)"
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs.
    fileprivate var trimmingSpaces: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return self[first...last]
    }
}

/// How a VM's memory stands, as Hyper-V Manager shows it.
public enum MemoryStatus: String, Hashable, Sendable, CaseIterable {
    /// Assigned at least its target: its buffer is met.
    case ok
    /// Assigned its demand but not its buffer.
    case low
    /// Assigned less than it demands: the guest pages.
    case warning
    /// Starting, or arriving, and its startup memory is not free yet.
    case waiting
}

/// What a node says of one VM's memory in its heartbeats: soft facts, never in the log.
public struct VMMemoryFacts: Hashable, Sendable {
    public var vm: VMID
    public var assigned: UInt64
    public var demand: UInt64
    public var status: MemoryStatus
    /// What the guest demands beyond its assignment and so pages inside itself.
    public var pagingBytes: UInt64

    public init(vm: VMID, assigned: UInt64, demand: UInt64, status: MemoryStatus, pagingBytes: UInt64) {
        self.vm = vm
        self.assigned = assigned
        self.demand = demand
        self.status = status
        self.pagingBytes = pagingBytes
    }
}

/// What a node says of its memory in its heartbeats: what it offers VMs, what it has assigned
/// them, and each VM it runs.
public struct NodeMemoryFacts: Hashable, Sendable {
    public var usable: UInt64
    /// The sum of its VMs' assignments (never above `usable`).
    public var assigned: UInt64
    public var vms: [VMMemoryFacts]

    public init(usable: UInt64, assigned: UInt64, vms: [VMMemoryFacts]) {
        self.usable = usable
        self.assigned = assigned
        self.vms = vms
    }

    /// Memory no VM holds.
    public var free: UInt64 { usable > assigned ? usable - assigned : 0 }

    public func encode(into writer: inout ByteWriter) {
        writer.writeVarint(usable)
        writer.writeVarint(assigned)
        writer.writeVarint(vms.count)
        for vm in vms {
            writer.writeVarint(vm.vm.rawValue)
            writer.writeVarint(vm.assigned)
            writer.writeVarint(vm.demand)
            writer.write(UInt8(MemoryStatus.allCases.firstIndex(of: vm.status)!))
            writer.writeVarint(vm.pagingBytes)
        }
    }

    public init(from reader: inout ByteReader) throws(WireFormatError) {
        usable = try reader.readVarint()
        assigned = try reader.readVarint()
        var vms: [VMMemoryFacts] = []
        for _ in 0..<(try reader.readCount(elementBytes: 5)) {
            let vm = VMID(try reader.readVarint())
            let assigned = try reader.readVarint()
            let demand = try reader.readVarint()
            let status = Int(try reader.readByte())
            guard status < MemoryStatus.allCases.count else {
                throw WireFormatError("memory status \(status) is not known")
            }
            vms.append(
                VMMemoryFacts(
                    vm: vm, assigned: assigned, demand: demand, status: MemoryStatus.allCases[status],
                    pagingBytes: try reader.readVarint()))
        }
        self.vms = vms
    }
}
