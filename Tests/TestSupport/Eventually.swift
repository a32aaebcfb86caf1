// Waiting for a condition in a test: poll until it holds, or record an issue saying what never happened.
public import Testing

/// Polls `condition` every `poll` until it holds; records an issue naming `what` if it does not
/// within `limit`. The limit is generous (a busy 2-core machine is slow): it bounds a failing
/// test, it does not time a passing one.
public func eventually(
    _ what: String, within limit: Duration = .seconds(20), poll: Duration = .milliseconds(20),
    sourceLocation: SourceLocation = #_sourceLocation, _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + limit
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("not within \(limit): \(what)", sourceLocation: sourceLocation)
            return
        }
        try await Task.sleep(for: poll)
    }
}
