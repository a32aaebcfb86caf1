#!/usr/bin/env bash
# Side-by-side write benchmark of two or more flotilla builds (an A/B for a change to the write path).
# Each variant is NAME=BINARY[,VAR=VALUE...] (environment for its nodes); every variant runs its own
# 3-node cluster on 127.0.0.1 at the same time, and the load alternates between them, round by
# round, so a busy machine slows all of them alike:
#   one   1 client x 1 stream, N_ONE settings writes on the leader (latency)
#   many  8 clients x 16 streams, N_MANY settings writes on the leader (throughput)
# Besides latency and rate, the CPU time and the context switches of the variant's three nodes per
# write (all threads, from /proc): a busy machine stretches latencies, but hardly what a write costs.
# Prints the medians of ROUNDS rounds per variant, and each round's numbers to stderr.
# Usage: scripts/bench-ab.sh base=/tmp/flotilla-base new=.build-new/release/flotilla,NIO_SINGLETON_GROUP_LOOP_COUNT=1
# Without variants (as `make bench` runs it): the last commit (built in a git worktree at
# $FLOTILLA_BENCH_SCRATCH/ab-head, .build/ab-head by default) against the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
N_ONE=${N_ONE:-2000}
N_MANY=${N_MANY:-20000}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
[ $# -ne 1 ] || { echo "usage: $0 [NAME=BINARY[,VAR=VALUE...] NAME=BINARY[,VAR=VALUE...] ...]" >&2; exit 2; }
bench=bench-ab
source scripts/lib-bench.sh
require_tools scripts/install-deps.sh h2load curl python3
work=$(mktemp -d /tmp/flotilla-bench-ab.XXXXXX)
if [ $# -eq 0 ]; then
  head_tree=$scratch/ab-head
  if [ -d "$head_tree" ]; then
    git -C "$head_tree" checkout -q --detach "$(git rev-parse HEAD)"
  else
    git worktree prune  # a worktree whose directory was deleted (make clean) is still registered
    git worktree add -q --detach "$head_tree" HEAD
  fi
  echo "building the last commit, $(git rev-parse --short HEAD), in $head_tree (release)…" >&2
  (cd "$head_tree" && swift build -c release --product flotilla >"$work/head-build.log" 2>&1) ||
    { cat "$work/head-build.log" >&2; exit 1; }
  build_release flotilla
  set -- "head=$head_tree/.build/release/flotilla" "tree=$scratch/release/flotilla"
fi
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

names=()
declare -A leader_url node_pids
variant=0
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}
  IFS=, read -r -a parts <<<"$rest"
  binary=${parts[0]}; environment=("${parts[@]:1}")
  [ -x "$binary" ] || { echo "bench-ab: $name: $binary is not an executable" >&2; exit 1; }
  variant=$((variant + 1))
  client=$((29000 + variant * 10)); peer=$((29500 + variant * 10))
  require_free_ports $((client + 1)) $((client + 2)) $((client + 3)) $((peer + 1)) $((peer + 2)) $((peer + 3))
  local_cluster_config "$work/$name.json" "ab-$name" "$work/$name-{node}" "$client" "$peer"
  for i in 1 2 3; do
    env "${environment[@]}" "$binary" node --config "$work/$name.json" --node-id "n$i" >"$work/$name-n$i.log" 2>&1 &
    pids+=($!)
    node_pids[$name]="${node_pids[$name]:-} $!"
  done
  leader=""
  for _ in $(seq 1 300); do
    leader=$(curl -s --max-time 1 "http://127.0.0.1:$((client + 1))/v1/status?stale=true" | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["leader"][1:])
except Exception: pass' || true)
    [ -n "$leader" ] && break
    sleep 0.1
  done
  [ -n "$leader" ] || { echo "bench-ab: $name: no leader within 30 s" >&2; exit 1; }
  leader_url[$name]="http://127.0.0.1:$((client + leader))/v1/config/ab-key"
  names+=("$name")
done
printf '{"value": "%s"}' "$(python3 -c 'print("v" * 256)')" >"$work/put.json"

# CPU time (ticks) and context switches of a variant's three nodes, all threads: "ticks switches".
node_usage() {
  local ticks=0 switches=0 pid task
  for pid in ${node_pids[$1]}; do
    read -r -a stat <"/proc/$pid/stat"
    ticks=$((ticks + stat[13] + stat[14]))
    for task in /proc/"$pid"/task/*; do
      switches=$((switches + $(awk '/ctxt_switches/ { sum += $2 } END { print sum }' "$task/status" 2>/dev/null || echo 0)))
    done
  done
  echo "$ticks $switches"
}

measure() { # variant load clients streams requests → appends "variant load writes/s p50 p99 cpu-us/write switches/write"
  local name=$1 load=$2 c=$3 m=$4 n=$5
  rm -f "$work/h2load.log"
  local before after
  before=$(node_usage "$name")
  h2load -n "$n" -c "$c" -m "$m" -d "$work/put.json" -H ':method: PUT' -H 'content-type: application/json' \
    --log-file="$work/h2load.log" "${leader_url[$name]}" >"$work/h2load.out" 2>&1
  after=$(node_usage "$name")
  grep -q "status codes: $n 2xx" "$work/h2load.out" || { echo "bench-ab: $name $load: not every write succeeded" >&2; cat "$work/h2load.out" >&2; exit 1; }
  python3 - "$work/h2load.log" "$name" "$load" "$before" "$after" "$(getconf CLK_TCK)" <<'PY' | tee -a "$work/results" >&2
import sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
starts = [float(r[0]) for r in rows]; ends = [float(r[0]) + float(r[2]) for r in rows]
latencies = sorted(float(r[2]) / 1000 for r in rows)
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
(t0, s0), (t1, s1), hz = map(int, sys.argv[4].split()), map(int, sys.argv[5].split()), int(sys.argv[6])
print(sys.argv[2], sys.argv[3], f"{len(rows) / ((max(ends) - min(starts)) / 1e6):.0f}", f"{pick(0.5):.3f}", f"{pick(0.99):.3f}",
      f"{(t1 - t0) / hz * 1e6 / len(rows):.0f}", f"{(s1 - s0) / len(rows):.1f}")
PY
}
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq 1 "$ROUNDS"); do
  # Alternate which variant goes first, so neither always follows the other's load.
  order=("${names[@]}")
  if [ $((round % 2)) -eq 0 ]; then order=(); for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[$i]}"); done; fi
  for name in "${order[@]}"; do
    measure "$name" one 1 1 "$N_ONE"
    measure "$name" many 8 16 "$N_MANY"
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$work/results" "${names[@]}" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, load, *values = line.split()
    rows[(name, load)].append(tuple(map(float, values)))
print("| variant | 1x1 p50 | 1x1 p99 | 1x1 CPU/write | 1x1 switches/write | 8x16 writes/s | 8x16 p50 | 8x16 p99 | 8x16 CPU/write | 8x16 switches/write |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in sys.argv[2:]:
    one, many = rows[(name, "one")], rows[(name, "many")]
    med = lambda values, column: statistics.median(v[column] for v in values)
    print(f"| {name} | {med(one, 1):.3f} ms | {med(one, 2):.3f} ms | {med(one, 3):.0f} µs | {med(one, 4):.1f} | "
          f"{med(many, 0):,.0f} | {med(many, 1):.2f} ms | {med(many, 2):.2f} ms | {med(many, 3):.0f} µs | {med(many, 4):.1f} |")
PY
