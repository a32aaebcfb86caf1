// A fresh directory for one test, removed when the value goes away.
import Foundation

/// A new, empty directory under the system's temporary directory.
public struct TemporaryDirectory: ~Copyable {
    public let path: String

    public init() throws {
        var template = Array((NSTemporaryDirectory() + "/flotilla-test-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: made)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
