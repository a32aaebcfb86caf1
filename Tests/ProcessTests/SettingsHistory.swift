// The settings history process tests record from their clients, for the linearizability checker.
import FlotillaClient
import FlotillaTestKit
import Node
import Synchronization

/// The order of invocations and responses across all client tasks (a logical clock).
final class HistoryRecorder: Sendable {
    private let state = Mutex<(clock: UInt64, history: KeyValueHistory, void: Set<Int>)>((0, KeyValueHistory(), []))

    func invoke(client: UInt64, _ operation: KeyValueOperation) -> Int {
        state.withLock { state in
            state.clock += 1
            return state.history.invoke(client: client, operation: operation, at: state.clock)
        }
    }

    func complete(_ handle: Int, _ result: KeyValueResult) {
        state.withLock { state in
            state.clock += 1
            state.history.complete(handle, result: result, at: state.clock)
        }
    }

    /// Forgets an operation that certainly had no effect (refused before it was proposed).
    func discard(_ handle: Int) { _ = state.withLock { $0.void.insert(handle) } }

    var operations: [HistoryOperation] {
        state.withLock { state in
            state.history.operations.enumerated().filter { !state.void.contains($0.offset) }.map(\.element)
        }
    }

    var acknowledgedWrites: Int { state.withLock { $0.history.operations.count { $0.result == .written } } }
}

/// A linearizable read of setting `k<key>`: its value, `.read(nil)` when it was never written, nil on failure.
func readSetting(_ api: APIClient, _ key: UInt32) async -> KeyValueResult? {
    do {
        return .read(try await api.setting("k\(key)").flatMap { UInt64($0) })
    } catch let error as APIError where error.status == 404 {
        return .read(nil)
    } catch {
        return nil
    }
}
