#!/usr/bin/env bash
# Where a single client's request spends its time on a 3-node Flotilla cluster (release build):
# one client, one stream (h2load -c1 -m1) against the leader, for
#   healthz      the HTTP/2 floor (no Raft),
#   stale read   the local copy (no Raft),
#   read         a linearizable read (ReadIndex: one heartbeat round to the followers, no fsync),
#   write        a settings write (replication and the followers' fsync; the leader's runs beside).
# The gap between read and healthz is one peer round trip; between write and read, the fsyncs.
# Prints a markdown table of medians over ROUNDS interleaved rounds. Usage: scripts/bench-latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
N=${N:-2000}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
work=$(mktemp -d /tmp/flotilla-bench-latency.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

bench=bench-latency
source scripts/lib-bench.sh
require_tools scripts/install-deps.sh h2load curl python3
require_free_ports 28101 28102 28103 28201 28202 28203
build_release flotilla

local_cluster_config "$work/cluster.json" latency "$work/{node}" 28100 28200
for i in 1 2 3; do
  "$scratch/release/flotilla" node --config "$work/cluster.json" --node-id "n$i" >"$work/n$i.log" 2>&1 &
  pids+=($!)
done
leader=""
for _ in $(seq 1 300); do
  leader=$(curl -s --max-time 1 "http://127.0.0.1:28101/v1/status?stale=true" | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["leader"][1:])
except Exception: pass' || true)
  [ -n "$leader" ] && break
  sleep 0.1
done
[ -n "$leader" ] || { echo "bench-latency: no leader within 30 s" >&2; exit 1; }
base="http://127.0.0.1:2810$leader"
printf '{"value": "%s"}' "$(python3 -c 'print("v" * 256)')" >"$work/put.json"
curl -sf -X PUT -d @"$work/put.json" "$base/v1/config/latency-key" >/dev/null

measure() { # name h2load-arguments... → appends "name p50 p90" to results
  local name=$1; shift
  rm -f "$work/h2load.log"
  h2load -n "$N" -c 1 -m 1 --log-file="$work/h2load.log" "$@" >"$work/h2load.out" 2>&1
  grep -q "status codes: $N 2xx" "$work/h2load.out" || { echo "bench-latency: $name: not every request succeeded" >&2; cat "$work/h2load.out" >&2; exit 1; }
  python3 - "$work/h2load.log" "$name" >>"$work/results" <<'PY'
import sys
latencies = sorted(float(line.split()[2]) / 1000 for line in open(sys.argv[1]) if line.strip())
print(sys.argv[2].replace(" ", "_"), latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.9)])
PY
}
for round in $(seq 1 "$ROUNDS"); do
  measure healthz "$base/healthz"
  measure "stale read" "$base/v1/config/latency-key?stale=true"
  measure read "$base/v1/config/latency-key"
  measure write -d "$work/put.json" -H ':method: PUT' -H 'content-type: application/json' "$base/v1/config/latency-key"
  echo "round $round done" >&2
done

python3 - "$work/results" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, p50, p90 = line.split()
    rows[name].append((float(p50), float(p90)))
print("| request (1 client x 1 stream, leader) | p50 | p90 |")
print("|---|---|---|")
for name in ("healthz", "stale_read", "read", "write"):
    values = rows[name]
    print(f"| {name.replace('_', ' ')} | {statistics.median(v[0] for v in values):.3f} ms | "
          f"{statistics.median(v[1] for v in values):.3f} ms |")
PY
