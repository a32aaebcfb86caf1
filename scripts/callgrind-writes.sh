#!/usr/bin/env bash
# Counts the CPU instructions per settings write of a local 3-node cluster, every member under
# valgrind's callgrind: repeatable where writes/s and CPU time on a shared machine are not (the
# same build gives the same count to within a few per cent, run after run, however loaded the
# machine is). Compares builds side by side, taking turns.
#
# Per build and round: three `flotilla node` processes under callgrind (instrumentation off while
# they start and elect), 500 writes to warm up, then instrumentation on in all three, WRITES writes
# of a 256-byte value at 8 clients x 16 streams on the leader (h2load), instrumentation off, the
# counters dumped. Per write: the leader's instructions, each follower's, and the three together
# (user space only: the kernel's socket and disk work is not counted). Ticks of 100 ms and
# elections of 40 ticks keep the slowed-down members from electing while they are measured.
#
# Usage: scripts/callgrind-writes.sh [NAME=BINARY ...]; without arguments the working tree's
# release build. Environment: WRITES (2000), ROUNDS (2), SCRATCH (.build).
set -euo pipefail
cd "$(dirname "$0")/.."

WRITES=${WRITES:-2000}
ROUNDS=${ROUNDS:-2}
scratch=${SCRATCH:-.build}
bench=callgrind-writes
source scripts/lib-bench.sh
require_tools "run FLOTILLA_BENCH_DEPS=1 scripts/install-deps.sh" h2load valgrind callgrind_control curl python3 strip
work=$(mktemp -d /tmp/flotilla-callgrind-writes.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
if [ $# -eq 0 ]; then
  build_release flotilla
  set -- "tree=$scratch/release/flotilla"
fi

printf '{"value":"%s"}' "$(head -c 256 /dev/zero | tr '\0' 'v')" >"$work/put.json"
require_free_ports 29101 29102 29103 29201 29202 29203

# One round of one build: sets `measured` to "leader follower follower" instructions per write.
# Runs in this shell (not a $(…) subshell), so `cleanup` sees the nodes it started.
measure() { # binary
  local run="$work/run" i leader="" status ir counts=()
  rm -rf "$run" && mkdir -p "$run"
  # Valgrind needs a copy without debug info and the sigsuspend shim (scripts/lib-bench.sh).
  cp "$(valgrind_ready "$1" flotilla-measured)" "$run/flotilla"
  local_cluster_config "$run/cluster.json" callgrind "$run/{node}" 29100 29200 100 40
  pids=()
  for i in 1 2 3; do
    LD_PRELOAD="$work/sigsuspend-copy.so" valgrind --tool=callgrind --instr-atstart=no \
      --callgrind-out-file="$run/n$i.callgrind" "$run/flotilla" node --config "$run/cluster.json" --node-id "n$i" \
      >"$run/n$i.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 1 240); do
    for i in 1 2 3; do
      status=$(curl -s --max-time 2 "http://127.0.0.1:2910$i/v1/status?stale=true" || true)
      leader=$(python3 -c 'import json, sys
try: print(json.loads(sys.argv[1]).get("leader", "")[1:])
except Exception: pass' "$status")
      [ -z "$leader" ] || break 2
    done
    sleep 0.5
  done
  [ -n "$leader" ] || { echo "$bench: no leader within 2 minutes (logs: $run)" >&2; tail -5 "$run"/n*.log >&2; exit 1; }
  local url="http://127.0.0.1:2910$leader/v1/config/bench-key1"
  writes() { # count
    local out
    out=$(h2load -n "$1" -c 8 -m 16 -d "$work/put.json" -H ':method: PUT' -H 'content-type: application/json' "$url" 2>&1) || true
    grep -q "requests: $1 total, $1 started, $1 done, $1 succeeded, 0 failed, 0 errored" <<<"$out" &&
      grep -q "status codes: $1 2xx" <<<"$out" ||
      { echo "$bench: not every one of $1 writes succeeded:" >&2; grep -E "^requests:|^status codes:" <<<"$out" >&2; exit 1; }
  }
  writes 500
  for pid in "${pids[@]}"; do callgrind_control -i on "$pid" >/dev/null 2>&1; done
  writes "$WRITES"
  for pid in "${pids[@]}"; do callgrind_control -i off "$pid" >/dev/null 2>&1; done
  for pid in "${pids[@]}"; do callgrind_control -d "$pid" >/dev/null 2>&1; done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  # The leader first, then the followers in id order.
  for i in "$leader" $(for j in 1 2 3; do [ "$j" = "$leader" ] || echo "$j"; done); do
    ir=$(cat "$run/n$i.callgrind"* | awk '/^totals:/ { total += $2 } END { printf "%.0f\n", total }')
    [ "$ir" -gt 0 ] || { echo "$bench: n$i counted nothing (log: $run/n$i.log)" >&2; exit 1; }
    counts+=($(( ir / WRITES )))
  done
  measured="${counts[*]}"
}

declare -A results
names=()
for variant in "$@"; do names+=("${variant%%=*}"); done
for round in $(seq 1 "$ROUNDS"); do
  order=("$@")
  if [ $(( round % 2 )) -eq 0 ]; then
    order=(); for (( k=$#; k>=1; k-- )); do order+=("${!k}"); done
  fi
  for variant in "${order[@]}"; do
    name=${variant%%=*}
    measure "${variant#*=}"
    results["$name $round"]=$measured
    echo "round $round $name: ${results["$name $round"]} (leader, followers)" >&2
  done
done

echo "| build | leader | follower | follower | 3 members | instructions per write (user space, callgrind), $WRITES writes at 8 x 16, median of $ROUNDS |"
echo "|---|---|---|---|---|---|"
for name in "${names[@]}"; do
  rows=""
  for round in $(seq 1 "$ROUNDS"); do rows+="${results["$name $round"]}"$'\n'; done
  python3 - "$name" <<PY
import statistics, sys
rows = [[int(x) for x in line.split()] for line in """$rows""".splitlines() if line.strip()]
columns = [statistics.median(column) for column in zip(*rows)]
print(f"| {sys.argv[1]} | " + " | ".join(f"{c:,.0f}" for c in columns) + f" | {sum(columns):,.0f} | |")
PY
done
