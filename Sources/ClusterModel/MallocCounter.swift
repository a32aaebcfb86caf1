// The heap allocations of this process, when the benchmarks' malloc counter is preloaded.
#if canImport(Glibc)
    import Glibc
#endif

/// Reads the counter of the malloc shim that the bench scripts preload (scripts/lib-bench.sh
/// builds it), if present: the benchmarks read it in their own process, and a node shows it on
/// `/metrics` for a benchmark to read from outside.
package enum MallocCounter {
    /// Heap allocations so far, or nil when the shim is not loaded.
    package static var count: UInt64? {
        #if canImport(Glibc)
            guard let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "flotilla_malloc_count") else {
                return nil
            }
            let read = unsafeBitCast(symbol, to: (@convention(c) () -> UInt64).self)
            return read()
        #else
            return nil
        #endif
    }
}
