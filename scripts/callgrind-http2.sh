#!/usr/bin/env bash
# Counts the CPU instructions and heap allocations per request of our HTTP2Server (async and
# immediate handlers) and of nghttpd under valgrind's callgrind: repeatable where requests/s on a
# shared machine are not. Run as `CALLGRIND=1 scripts/bench-http2.sh` or directly.
#
# Each server runs on one thread (ours --threads 1, nghttpd 1 worker) under callgrind. h2load first
# sends WARMUP requests (connections made, caches and pools filled), the counters are zeroed, h2load
# sends REQUESTS more (-c 4 -m 32, 1 KB body), and the counters are dumped. Per request: instructions
# (user space only: the kernel's socket work is not counted, for either server), calls to
# malloc/calloc/realloc/posix_memalign/aligned_alloc, and swift_retain/swift_release calls.
#
# Environment: REQUESTS (20000), WARMUP (2000), SCRATCH (.build), SERVERS ("async immediate nghttpd"),
# BENCH_BIN (a flotilla-bench binary to count instead of building one, e.g. a copy of the base
# build's for a before/after comparison), KEEP (a path prefix: each server's dump is kept as
# KEEP.<server>, for callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-2000}
SCRATCH=${SCRATCH:-.build}
SERVERS=${SERVERS:-async immediate nghttpd}

for tool in h2load nghttpd valgrind callgrind_control python3 strip; do
  command -v "$tool" >/dev/null || { echo "callgrind-http2: $tool is missing; run FLOTILLA_BENCH_DEPS=1 scripts/install-deps.sh" >&2; exit 1; }
done

if [ -n "${BENCH_BIN:-}" ]; then
  bench_bin=$BENCH_BIN
else
  echo "callgrind-http2: building flotilla-bench (release)" >&2
  swift build -c release --product flotilla-bench --scratch-path "$SCRATCH" >&2
  bench_bin="$SCRATCH/release/flotilla-bench"
fi

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
head -c 1024 /dev/zero | tr '\0' 'x' >"$work/1k"

# A copy without debug info, and the sigsuspend shim (scripts/lib-bench.sh, valgrind_ready).
bench=callgrind-http2
source scripts/lib-bench.sh
bench_bin=$(valgrind_ready "$bench_bin" flotilla-bench)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs h2load; fails loudly unless every request succeeded.
run_h2load() { # url requests
  local out
  out=$(timeout 600 h2load -n "$2" -c 4 -m 32 "$1")
  if ! grep -q "$2 succeeded" <<<"$out"; then
    echo "callgrind-http2: h2load against $1 did not succeed:" >&2
    echo "$out" >&2
    exit 1
  fi
}

# Sums, from a callgrind output file, the calls to the named functions (callgrind names a function
# "fn=(id) name" or "cfn=(id) name" the first time and by "(id)" alone after; a callee's "cfn=" line
# is followed by "calls=count ...").
count_calls() { # file name...
  python3 - "$@" <<'PY'
import re, sys
path, names = sys.argv[1], set(sys.argv[2:])
ids, total, callee = {}, 0, None
with open(path) as f:
    for line in f:
        if line.startswith("fn=") or line.startswith("cfn="):
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
            if m.group(2) is not None:
                ids[m.group(1)] = m.group(2)
            callee = ids.get(m.group(1)) if line.startswith("cfn=") else None
        elif line.startswith("calls=") and callee is not None:
            if callee in names:
                total += int(line.split()[0][6:])
            callee = None
print(total)
PY
}

# Starts `$@` under callgrind, waits for its URL to answer, warms up, zeroes, measures, dumps;
# prints "instructions allocations retains releases" per request.
measure() { # label url-path port command...
  local label=$1 path=$2 port=$3 out="$work/callgrind.out"
  shift 3
  rm -f "$out"*
  LD_PRELOAD="$work/sigsuspend-copy.so" valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$work/$label.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    if h2load -n 1 -c 1 "http://127.0.0.1:$port$path" 2>/dev/null | grep -q "1 succeeded"; then break; fi
    kill -0 "$pid" 2>/dev/null || { echo "callgrind-http2: $label did not start: $(cat "$work/$label.log")" >&2; exit 1; }
    sleep 0.2
  done
  run_h2load "http://127.0.0.1:$port$path" "$WARMUP"
  callgrind_control -z "$pid" >/dev/null 2>&1
  run_h2load "http://127.0.0.1:$port$path" "$REQUESTS"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
  # The dump after zeroing is the last numbered file; its "summary:" line is the instruction total.
  local dump
  dump=$(ls -v "$out".* | tail -1)
  local instructions allocations retains releases
  instructions=$(sed -n 's/^summary: //p' "$dump" | awk '{ print $1 }')
  allocations=$(count_calls "$dump" malloc calloc realloc posix_memalign aligned_alloc memalign)
  retains=$(count_calls "$dump" swift_retain swift_retain_n swift_bridgeObjectRetain swift_bridgeObjectRetain_n)
  releases=$(count_calls "$dump" swift_release swift_release_n swift_bridgeObjectRelease swift_bridgeObjectRelease_n)
  awk -v i="$instructions" -v a="$allocations" -v r="$retains" -v l="$releases" -v n="$REQUESTS" \
    'BEGIN { printf "%.0f %.1f %.1f %.1f\n", i / n, a / n, r / n, l / n }'
  if [ -n "${KEEP:-}" ]; then cp "$dump" "$KEEP.$label"; fi
}

rows=()
for server in $SERVERS; do
  port=$(free_port)
  case $server in
    async) result=$(measure async /1k "$port" "$bench_bin" http2-server --port "$port" --body-size 1024 --threads 1) ;;
    immediate) result=$(measure immediate /1k "$port" "$bench_bin" http2-server --port "$port" --body-size 1024 --threads 1 --immediate) ;;
    nghttpd) result=$(measure nghttpd /1k "$port" nghttpd --no-tls --address=127.0.0.1 --workers=1 -d "$work" "$port") ;;
    *) echo "callgrind-http2: unknown server '$server' (async, immediate or nghttpd)" >&2; exit 1 ;;
  esac
  read -r instructions allocations retains releases <<<"$result"
  rows+=("| $server | $instructions | $allocations | $retains | $releases |")
done

echo "| server, 1 thread (h2load -n $REQUESTS -c 4 -m 32, 1 KB body, after $WARMUP) | instructions per request | allocations per request | swift_retain per request | swift_release per request |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
