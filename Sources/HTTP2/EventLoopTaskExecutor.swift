// A TaskExecutor that runs jobs on a NIO event loop, so a handler task starts on its connection's thread.
import NIOCore

/// Runs Swift tasks on one `EventLoop`.
///
/// Handler tasks prefer this executor (`Task(executorPreference:)`): a handler that does not suspend
/// runs start to finish on the connection's event loop, and its response is submitted without waking
/// another thread. Each request otherwise costs two cross-thread hops (loop → cooperative pool → loop),
/// which on a 2-core machine halves throughput. A handler that awaits an actor or I/O hops away and
/// back as usual; a handler must not block, exactly as on the cooperative pool.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
