# What the bench scripts share, sourced by them: the checks before a run and the release build.
# A script sets `bench` (its name, for messages) before sourcing, and `work` and `scratch` before
# calling build_release.

# Fails unless every tool is installed; `hint` says where to get them.
require_tools() { # hint tool...
  local hint=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$bench: $tool is missing ($hint)" >&2; exit 1; }
  done
}

# Fails if anything answers on one of the loopback ports.
require_free_ports() { # port...
  local port
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$bench: port $port is in use (a previous run left a process?); free it first" >&2
      exit 1
    fi
  done
}

# Builds the products in release mode into $scratch; shows the build log only when it fails.
build_release() { # product...
  local product
  echo "building $* (release)…" >&2
  for product in "$@"; do
    swift build -c release --product "$product" --scratch-path "$scratch" >"$work/build.log" 2>&1 ||
      { cat "$work/build.log" >&2; exit 1; }
  done
}

# Builds the malloc counter (a shim that counts heap allocations; `MallocCounter` in FlotillaTestKit
# reads it) into $scratch once, and prints its absolute path for LD_PRELOAD.
malloc_counter() {
  local shim cc
  shim="$(cd "$scratch" && pwd)/malloc-counter.so"
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
    "$cc" -O2 -shared -fPIC -o "$shim" "$scratch/malloc-counter.c" >&2
  fi
  echo "$shim"
}

# What running a Swift binary under valgrind (3.19, Debian 12) takes, made in $work: a copy of the
# binary without its debug info, which valgrind cannot read and gives up on (the symbol table, which
# names the functions, stays), printed; and $work/sigsuspend-copy.so to preload, because valgrind
# writes into the mask passed to sigsuspend and libdispatch (which parks the main thread of an async
# `main` there) passes a read-only one.
valgrind_ready() { # binary copy-name
  strip --strip-debug -o "$work/$2" "$1"
  if [ ! -f "$work/sigsuspend-copy.so" ]; then
    cat >"$work/sigsuspend-copy.c" <<'C'
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
int sigsuspend(const sigset_t *mask) { sigset_t copy = *mask; return syscall(SYS_rt_sigsuspend, &copy, 8); }
C
    local cc
    cc=$(command -v clang || command -v cc || command -v gcc)
    "$cc" -O2 -shared -fPIC -o "$work/sigsuspend-copy.so" "$work/sigsuspend-copy.c"
  fi
  echo "$work/$2"
}

# Writes the configuration of a local 3-node cluster on 127.0.0.1 into `file`: members n1–n3 with
# client ports client-base+1… and peer ports peer-base+1…, heartbeats every tick.
local_cluster_config() { # file cluster-id data-dir client-base peer-base [tick-ms [election-ticks]]
  local file=$1 id=$2 data=$3 client=$4 peer=$5 tick=${6:-50} election=${7:-10}
  cat >"$file" <<JSON
{"cluster-id": "$id", "data-dir": "$data", "tick-ms": $tick, "election-ticks": $election, "heartbeat-ticks": 1,
 "members": [{"id": "n1", "peer": "127.0.0.1:$((peer + 1))", "client": "127.0.0.1:$((client + 1))"},
             {"id": "n2", "peer": "127.0.0.1:$((peer + 2))", "client": "127.0.0.1:$((client + 2))"},
             {"id": "n3", "peer": "127.0.0.1:$((peer + 3))", "client": "127.0.0.1:$((client + 3))"}]}
JSON
}
