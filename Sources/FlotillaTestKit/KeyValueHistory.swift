// The simulated clients' key-value operations and the history of what they saw.

/// One client operation on the replicated key-value store: a register per key.
public enum KeyValueOperation: Hashable, Sendable, CustomStringConvertible {
    case put(key: UInt32, value: UInt64)
    case get(key: UInt32)

    public var key: UInt32 {
        switch self {
        case .put(let key, _), .get(let key): key
        }
    }

    public var description: String {
        switch self {
        case .put(let key, let value): "put k\(key)=\(value)"
        case .get(let key): "get k\(key)"
        }
    }
}

/// What a client was told when an operation finished.
public enum KeyValueResult: Hashable, Sendable, CustomStringConvertible {
    /// A put was committed and applied.
    case written
    /// A get read this value (nil: the key was never written).
    case read(UInt64?)

    public var description: String {
        switch self {
        case .written: "ok"
        case .read(let value?): "→\(value)"
        case .read(nil): "→nil"
        }
    }
}

/// One operation in a client history, from invocation to response.
///
/// Times are positions in the simulation's total order of events, so no two are equal. An
/// operation without a response is pending: it may or may not have taken effect (the client
/// gave up, or the run ended first), and the checker may place it anywhere after its invocation
/// or nowhere at all.
public struct HistoryOperation: Hashable, Sendable, CustomStringConvertible {
    public var client: UInt64
    public var operation: KeyValueOperation
    public var invokedAt: UInt64
    public var returnedAt: UInt64?
    public var result: KeyValueResult?

    public init(
        client: UInt64, operation: KeyValueOperation, invokedAt: UInt64, returnedAt: UInt64? = nil,
        result: KeyValueResult? = nil
    ) {
        self.client = client
        self.operation = operation
        self.invokedAt = invokedAt
        self.returnedAt = returnedAt
        self.result = result
    }

    public var isPending: Bool { returnedAt == nil }

    public var description: String {
        let end = returnedAt.map { "\($0)" } ?? "∞"
        return "c\(client) [\(invokedAt), \(end)] \(operation) \(result.map { "\($0)" } ?? "pending")"
    }
}

/// Records what every client invoked and what it was told, in event order.
public struct KeyValueHistory: Sendable {
    public private(set) var operations: [HistoryOperation] = []

    public init() {}

    /// Records an invocation; returns a handle for `complete`.
    public mutating func invoke(client: UInt64, operation: KeyValueOperation, at time: UInt64) -> Int {
        operations.append(HistoryOperation(client: client, operation: operation, invokedAt: time))
        return operations.count - 1
    }

    /// Records the response to the invocation `handle`.
    public mutating func complete(_ handle: Int, result: KeyValueResult, at time: UInt64) {
        precondition(operations[handle].returnedAt == nil, "operation \(operations[handle]) completed twice")
        precondition(time > operations[handle].invokedAt, "operation \(operations[handle]) returned before it began")
        operations[handle].returnedAt = time
        operations[handle].result = result
    }

    public var completedCount: Int { operations.count { !$0.isPending } }
}

/// The commands the simulated state machine applies, encoded for the Raft log.
///
/// The encoding is short ASCII, `P<key>=<value>` (at most 32 bytes), so that the core's own
/// descriptions of entries and messages read well in a failure's trace.
public enum KeyValueCommand: Hashable, Sendable {
    case put(key: UInt32, value: UInt64)

    public var encoded: [UInt8] {
        switch self {
        case .put(let key, let value): Array("P\(key)=\(value)".utf8)
        }
    }

    /// Decodes a command; nil when the bytes are not one (the caller reports what it got).
    public init?(decoding bytes: some Collection<UInt8>) {
        guard bytes.first == UInt8(ascii: "P"), let separator = bytes.firstIndex(of: UInt8(ascii: "=")) else {
            return nil
        }
        let keyDigits = bytes[bytes.index(after: bytes.startIndex)..<separator]
        let valueDigits = bytes[bytes.index(after: separator)...]
        guard let key = UInt32(decimal: keyDigits), let value = UInt64(decimal: valueDigits) else { return nil }
        self = .put(key: key, value: value)
    }
}

extension FixedWidthInteger where Self: UnsignedInteger {
    /// Parses plain ASCII decimal digits (no sign, no spaces); nil on anything else or overflow.
    fileprivate init?(decimal digits: some Collection<UInt8>) {
        guard !digits.isEmpty, digits.count <= 20 else { return nil }
        var value: Self = 0
        for digit in digits {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, carry) = shifted.addingReportingOverflow(Self(digit - UInt8(ascii: "0")))
            guard !overflow, !carry else { return nil }
            value = sum
        }
        self = value
    }
}
