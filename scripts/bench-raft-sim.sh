#!/usr/bin/env bash
# Benchmarks the Raft core inside the simulator (release build): committed entries per second of a
# 3-node cluster on a free network and disk, and heap allocations per committed entry.
#
# Allocations are counted by a tiny malloc shim built here and preloaded; without it the benchmark
# still reports throughput. Usage: scripts/bench-raft-sim.sh [entries]   (default 200000)
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
entries=${1:-200000}
mkdir -p "$scratch"

shim="$scratch/malloc-counter.so"
if [ ! -f "$shim" ]; then
  cat >"$scratch/malloc-counter.c" <<'C'
/* Counts heap allocations; forwards to glibc's allocator. Read with flotilla_malloc_count(). */
#include <stddef.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static unsigned long allocations;
static void counted(void) { __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED); }
unsigned long flotilla_malloc_count(void) { return __atomic_load_n(&allocations, __ATOMIC_RELAXED); }
void *malloc(size_t size) { counted(); return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { counted(); return __libc_calloc(count, size); }
void *realloc(void *pointer, size_t size) { counted(); return __libc_realloc(pointer, size); }
void *memalign(size_t alignment, size_t size) { counted(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { counted(); return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    counted();
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return 12; /* ENOMEM */
    *out = pointer;
    return 0;
}
C
  cc=$(command -v clang || command -v cc || command -v gcc)
  "$cc" -O2 -shared -fPIC -o "$shim" "$scratch/malloc-counter.c"
fi

if ! swift build -c release --product flotilla-bench --scratch-path "$scratch" >"$scratch/build.log" 2>&1; then
  cat "$scratch/build.log"
  exit 1
fi
LD_PRELOAD="$PWD/$shim" "$scratch/release/flotilla-bench" raft-sim "$entries"
