// Strings from bytes that must be UTF-8, on the paths every write takes (the log's commands, a
// setting's JSON body).

/// `bytes` as a String when they are valid UTF-8, nil otherwise.
///
/// ASCII — keys, names and most values — is recognised eight bytes at a time and decoded without
/// the standard library's validating initializer, which is generic and looked type metadata up at
/// run time on every call (perf of a leader under load); anything else goes to that initializer.
public func validatedUTF8String(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
    if isASCII(bytes) { return String(decoding: bytes, as: UTF8.self) }
    return String(validating: bytes, as: UTF8.self)
}

/// Every byte is below 0x80.
func isASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    guard let base = bytes.baseAddress else { return true }
    let raw = UnsafeRawPointer(base)
    var offset = 0
    while offset + 8 <= bytes.count {
        if raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 { return false }
        offset += 8
    }
    while offset < bytes.count {
        if bytes[offset] >= 0x80 { return false }
        offset += 1
    }
    return true
}
