// One qemu-system process: started so that it dies with its node, signalled, and waited for.
import CSpawn
import Foundation
import NIOConcurrencyHelpers
import NIOPosix

/// How a process ended.
public enum ProcessExit: Sendable, Hashable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)
    /// It ended, but its status was taken by another waiter.
    case unknown

    /// Decodes a `waitpid` status (the `WIFEXITED`/`WTERMSIG` macros, which Swift does not import).
    init(waitStatus status: Int32) {
        let signal = status & 0x7f
        self = signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
    }

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signalled(let signal): "killed by signal \(signal)"
        case .unknown: "ended (its exit status was taken by another waiter)"
        }
    }
}

/// A child process that never outlives this one: it is started with SIGKILL as its parent-death
/// signal, from a thread that lives as long as the process (the signal is tied to the thread that
/// forked, and the thread pools of Swift concurrency retire idle threads), and in a process group
/// of its own so a terminal's Ctrl-C reaches the node, which stops its guests in order.
public final class BoundProcess: Sendable {
    public let pid: Int32
    private let exit: Task<ProcessExit, Never>
    /// Set, under its lock, just before the child is reaped: a signal sent under the same lock while
    /// it is false reaches this child and never a later process that reused its pid.
    private let reaped: NIOLockedValueBox<Bool>

    private init(pid: Int32) {
        self.pid = pid
        let reaped = NIOLockedValueBox(false)
        self.reaped = reaped
        self.exit = Task {
            await withCheckedContinuation { continuation in
                // One blocked thread per child: waiting is the only exact way to learn its end.
                Thread.detachNewThread {
                    // Wait for the end without reaping (the pid stays this child's), then reap under the lock.
                    var info = siginfo_t()
                    var waited: Int32
                    repeat {
                        waited = waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT)
                    } while waited < 0 && errno == EINTR
                    var status: Int32 = 0
                    var reapedHere: Int32 = -1
                    reaped.withLockedValue { done in
                        done = true
                        repeat { reapedHere = waitpid(pid, &status, 0) } while reapedHere < 0 && errno == EINTR
                    }
                    // Someone else reaped it (ECHILD): it ended, how is not known.
                    continuation.resume(returning: reapedHere == pid ? ProcessExit(waitStatus: status) : .unknown)
                }
            }
        }
    }

    /// The thread every child is started from: one, started once, never stopped.
    private static let spawner: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        return pool
    }()

    /// Starts `executable` with `arguments`, its stdout and stderr appended to `outputPath`.
    public static func start(executable: String, arguments: [String], outputPath: String) async throws
        -> BoundProcess
    {
        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        let pid = try await spawner.runIfActive {
            try withCStrings([executable] + arguments) { argv in
                try withCStrings(environment) { envp in
                    let pid = flotilla_spawn_bound_to_parent(executable, argv, envp, outputPath)
                    guard pid > 0 else {
                        throw SpawnError(executable: executable, reason: String(cString: strerror(-pid)))
                    }
                    return pid
                }
            }
        }
        return BoundProcess(pid: pid)
    }

    /// Sends `signal`; nothing once the process has been reaped (its pid may belong to another by then).
    public func signal(_ signal: Int32) {
        reaped.withLockedValue { done in
            if !done { _ = kill(pid, signal) }
        }
    }

    /// Whether the process has ended and been reaped.
    public var hasExited: Bool { reaped.withLockedValue { $0 } }

    /// Waits until the process has ended and been reaped.
    public func waitForExit() async -> ProcessExit { await exit.value }
}

public struct SpawnError: Error, CustomStringConvertible {
    public var executable: String
    public var reason: String
    public var description: String { "cannot start \(executable): \(reason)" }
}

/// Runs `body` with a NULL-terminated C array of `strings`, freed afterwards.
private func withCStrings<Result>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) throws -> Result)
    rethrows -> Result
{
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for pointer in pointers { free(pointer) } }
    return try body(pointers)
}
