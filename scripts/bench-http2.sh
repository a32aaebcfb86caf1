#!/usr/bin/env bash
# Benchmarks our HTTP2Server against nghttpd (the reference C server) with h2load, side by side in one run.
#
# Both serve the same 1 KB and 64 KiB bodies on loopback. Ours runs in its default configuration
# (one event loop per core) twice: with an immediate handler (answers inline on the event loop) and
# with an ordinary async handler (one task per request). nghttpd runs with its default single worker
# and with as many workers as ours has loops, so neither side is compared only at its weak setting.
# h2load runs `-n 200000 -c 4 -m 32` against each, interleaved for ROUNDS rounds; medians, the ratios
# and the 64 KiB-body throughput are printed as a markdown table.
#
# Environment: ROUNDS (3), REQUESTS (200000), LARGE_REQUESTS (20000), SCRATCH (.build), THREADS (cores).
# CALLGRIND=1 counts instructions and allocations per request under valgrind instead (repeatable on
# a busy machine, where requests/s are not): see scripts/callgrind-http2.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CALLGRIND:-0}" = 1 ]; then exec scripts/callgrind-http2.sh; fi

ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-200000}
LARGE_REQUESTS=${LARGE_REQUESTS:-20000}
SCRATCH=${SCRATCH:-.build}
THREADS=${THREADS:-$(nproc)}
H2LOAD_TIMEOUT=120

for tool in h2load nghttpd; do
  command -v "$tool" >/dev/null || { echo "bench-http2: $tool is missing; run scripts/install-deps.sh" >&2; exit 1; }
done

echo "bench-http2: building flotilla-bench (release)" >&2
swift build -c release --product flotilla-bench --scratch-path "$SCRATCH" >&2
bench_bin="$SCRATCH/release/flotilla-bench"

# nghttpd serves bodies only from files (it has no in-memory responses); they lie in a tmpfs
# (/dev/shm when there is one), so its reads never wait for a disk, though it still opens and reads
# a file per request where ours answers from memory.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then work=$(mktemp -d /dev/shm/flotilla-bench-http2.XXXXXX); else work=$(mktemp -d); fi
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

head -c 1024 /dev/zero | tr '\0' 'x' >"$work/1k"
head -c 65536 /dev/zero | tr '\0' 'x' >"$work/64k"

# Starts our server (extra flags after the size) and stores its port (from its "listening on" line)
# in the variable named by $1. Called directly, not in $(...), so the pid reaches the cleanup trap.
start_ours() {
  local var=$1 size=$2 log port
  shift 2
  log="$work/ours-$var.log"
  "$bench_bin" http2-server --port 0 --body-size "$size" --threads "$THREADS" "$@" >"$log" 2>&1 &
  pids+=($!)
  printf -v "${var}_pid" '%s' "$!"
  for _ in $(seq 1 100); do
    if grep -q "listening on" "$log"; then
      port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$log" | head -1)
      printf -v "$var" '%s' "$port"
      return
    fi
    sleep 0.05
  done
  echo "bench-http2: our server did not start: $(cat "$log")" >&2
  exit 1
}

# A free loopback port for nghttpd, which cannot report an ephemeral one.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts nghttpd with $2 workers on a free port and stores the port in the variable named by $1.
start_nghttpd() {
  local var=$1 workers=$2 port
  port=$(free_port)
  nghttpd --no-tls --address=127.0.0.1 --workers="$workers" -d "$work" "$port" >"$work/nghttpd-$workers.log" 2>&1 &
  pids+=($!)
  printf -v "${var}_pid" '%s' "$!"
  for _ in $(seq 1 100); do
    if h2load -n 1 -c 1 "http://127.0.0.1:$port/1k" 2>/dev/null | grep -q "1 succeeded"; then
      printf -v "$var" '%s' "$port"
      return
    fi
    sleep 0.05
  done
  echo "bench-http2: nghttpd did not start: $(cat "$work/nghttpd-$workers.log")" >&2
  exit 1
}

start_ours immediate_small 1024 --immediate
start_ours async_small 1024
start_ours ours_large 65536 --immediate
start_nghttpd ng1 1
start_nghttpd ngn "$THREADS"

# CPU time (user + system, all threads) the process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# Runs h2load against the server with pid $3 and prints "requests_per_second cpu_us_per_request"
# (the server's CPU, kernel included: what a request costs it, which a busy machine hardly
# changes, where it does change the rate). Fails loudly if any request failed.
run_h2load() {
  local url=$1 requests=$2 pid=$3 out before rate
  before=$(cpu_ticks "$pid")
  out=$(timeout "$H2LOAD_TIMEOUT" h2load -n "$requests" -c 4 -m 32 "$url")
  if ! grep -q "$requests succeeded" <<<"$out"; then
    echo "bench-http2: h2load against $url did not succeed:" >&2
    echo "$out" >&2
    exit 1
  fi
  rate=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  awk -v r="$rate" -v t="$(($(cpu_ticks "$pid") - before))" -v hz="$ticks_per_second" -v n="$requests" \
    'BEGIN { printf "%s %.2f\n", r, t / hz * 1e6 / n }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

immediate_rps=() async_rps=() ng1_rps=() ngn_rps=() ours_large_rps=() ng1_large_rps=()
immediate_cpu=() async_cpu=() ng1_cpu=() ngn_cpu=()
# Runs h2load against server $1 (its port and pid variables) and appends the rate to the array
# named $2 and, when $4 names one, the CPU per request to that array.
measure() {
  local server=$1 rates=$2 requests=$3 cpus=${4:-} port pid pid_var rate cpu
  port=${!server}
  pid_var="${server}_pid"
  pid=${!pid_var}
  read -r rate cpu <<<"$(run_h2load "http://127.0.0.1:$port/$5" "$requests" "$pid")"
  eval "$rates+=(\"\$rate\")"
  if [ -n "$cpus" ]; then eval "$cpus+=(\"\$cpu\")"; fi
}
for round in $(seq 1 "$ROUNDS"); do
  echo "bench-http2: round $round/$ROUNDS" >&2
  measure immediate_small immediate_rps "$REQUESTS" immediate_cpu 1k
  measure ng1 ng1_rps "$REQUESTS" ng1_cpu 1k
  measure async_small async_rps "$REQUESTS" async_cpu 1k
  measure ngn ngn_rps "$REQUESTS" ngn_cpu 1k
  measure ours_large ours_large_rps "$LARGE_REQUESTS" "" 64k
  measure ng1 ng1_large_rps "$LARGE_REQUESTS" "" 64k
done

med() { printf '%s\n' "$@" | median; }
immediate_med=$(med "${immediate_rps[@]}")
async_med=$(med "${async_rps[@]}")
ng1_med=$(med "${ng1_rps[@]}")
ngn_med=$(med "${ngn_rps[@]}")
ours_large_med=$(med "${ours_large_rps[@]}")
ng1_large_med=$(med "${ng1_large_rps[@]}")
best_ng=$(awk -v a="$ng1_med" -v b="$ngn_med" 'BEGIN { print (a > b) ? a : b }')
immediate_cpu_med=$(med "${immediate_cpu[@]}")
async_cpu_med=$(med "${async_cpu[@]}")
ng1_cpu_med=$(med "${ng1_cpu[@]}")
ngn_cpu_med=$(med "${ngn_cpu[@]}")
least_ng_cpu=$(awk -v a="$ng1_cpu_med" -v b="$ngn_cpu_med" 'BEGIN { print (a < b) ? a : b }')

gbps() { awk -v r="$1" 'BEGIN { printf "%.2f", r * 65536 / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
rps() { printf '%.0f' "$1"; }

cat <<EOF
| server (h2load -n $REQUESTS -c 4 -m 32, 1 KB body) | req/s, median of $ROUNDS | vs best nghttpd | server CPU per request (µs), median | nghttpd's least ÷ this |
|---|---|---|---|---|
| Flotilla HTTP2Server, immediate handler, $THREADS loops | $(rps "$immediate_med") | $(ratio "$immediate_med" "$best_ng") | $immediate_cpu_med | $(ratio "$least_ng_cpu" "$immediate_cpu_med") |
| Flotilla HTTP2Server, async handler, $THREADS loops | $(rps "$async_med") | $(ratio "$async_med" "$best_ng") | $async_cpu_med | $(ratio "$least_ng_cpu" "$async_cpu_med") |
| nghttpd 1.52 --no-tls, 1 worker (default) | $(rps "$ng1_med") | $(ratio "$ng1_med" "$best_ng") | $ng1_cpu_med | $(ratio "$least_ng_cpu" "$ng1_cpu_med") |
| nghttpd 1.52 --no-tls, $THREADS workers | $(rps "$ngn_med") | $(ratio "$ngn_med" "$best_ng") | $ngn_cpu_med | $(ratio "$least_ng_cpu" "$ngn_cpu_med") |

| 64 KiB body (h2load -n $LARGE_REQUESTS -c 4 -m 32) | GB/s of body, median of $ROUNDS |
|---|---|
| Flotilla HTTP2Server, $THREADS loops | $(gbps "$ours_large_med") |
| nghttpd 1.52, 1 worker | $(gbps "$ng1_large_med") |

Runs (req/s): immediate ${immediate_rps[*]}; async ${async_rps[*]}; nghttpd-1 ${ng1_rps[*]}; nghttpd-$THREADS ${ngn_rps[*]}
Runs (server CPU µs per request): immediate ${immediate_cpu[*]}; async ${async_cpu[*]}; nghttpd-1 ${ng1_cpu[*]}; nghttpd-$THREADS ${ngn_cpu[*]}
EOF
