// A fresh directory per test, removed afterwards.
import Foundation

struct TemporaryDirectory: ~Copyable {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/flotilla-storage-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: made)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
