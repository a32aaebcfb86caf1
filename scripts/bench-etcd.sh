#!/usr/bin/env bash
# Flotilla's replicated settings against etcd, side by side on this machine (issue: durable storage
# and the node daemon). Both are 3-member clusters on 127.0.0.1 with the same election timeout
# (500 ms base, randomized up to 2x by both; heartbeats every 50 ms; PreVote and CheckQuorum on in
# both — etcd 3.4 needs --pre-vote for it), data on the same disk, and the
# same load generator (h2load) writing a 10-byte key with a 256-byte value:
#   etcd:     gRPC /etcdserverpb.KV/Put on the leader
#   Flotilla: PUT /v1/config/<key> on the leader (JSON body), over h2c
# Also linearizable reads of the key by one client (etcd: KV/Range, its default linearizable read;
# Flotilla: GET /v1/config/<key>, a ReadIndex read on the leader).
# Then the time from SIGKILL of the leader to the first acknowledged write, KILLS runs each, probed
# the same way for both (scripts/failover-probe.py: overlapping single writes every 10 ms against
# every survivor). The two systems take turns going first, round by round. Prints a markdown table
# (medians of ROUNDS rounds), and nothing but the reason when any request of a round failed (h2load's
# failed, errored or non-2xx streams; for etcd also a revision that moved by less than the requests).
# Usage: scripts/bench-etcd.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
N_MANY=${N_MANY:-40000}
N_ONE=${N_ONE:-3000}
KILLS=${KILLS:-5}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
work=$(mktemp -d /tmp/flotilla-bench-etcd.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

bench=bench-etcd
source scripts/lib-bench.sh
require_tools "FLOTILLA_BENCH_DEPS=1 scripts/install-deps.sh" etcd etcdctl h2load python3
require_free_ports 23791 23792 23793 23801 23802 23803 27101 27102 27103 27201 27202 27203
build_release flotilla
flotilla="$scratch/release/flotilla"
# Flotilla's nodes run with the malloc counter preloaded and show its count on /metrics, for the
# allocations per request (etcd's Go runtime allocates outside malloc: not counted).
shim=$(malloc_counter)

value=$(python3 -c 'print("v" * 256)')
# etcd's gRPC body: 0 (no compression), 4-byte big-endian length, PutRequest{1: key, 2: value}.
python3 - "$work/etcd-put.bin" "$value" <<'PY'
import sys, struct
key, value = b"bench-key1", sys.argv[2].encode()
def field(number, data): return bytes([number << 3 | 2]) + bytes([len(data)]) if len(data) < 128 else None
def varint(n):
    out = b""
    while n >= 0x80: out += bytes([n & 0x7F | 0x80]); n >>= 7
    return out + bytes([n])
message = bytes([0x0A]) + varint(len(key)) + key + bytes([0x12]) + varint(len(value)) + value
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
# And a linearizable read of the key: RangeRequest{1: key} (serializable false, etcd's default).
message = bytes([0x0A]) + varint(len(key)) + key
open(sys.argv[1].replace("put", "range"), "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
PY
printf '{"value": "%s"}' "$value" >"$work/flotilla-put.json"

# ---- etcd ----
etcd_start() { # member number 1..3
  local i=$1
  etcd --name "e$i" --data-dir "$work/etcd-$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803" \
    --initial-cluster-state new --initial-cluster-token bench \
    --heartbeat-interval 50 --election-timeout 500 --pre-vote --log-level error >"$work/etcd-$i.log" 2>&1 &
  etcd_pid[$i]=$!
  pids+=($!)
}
etcd_endpoints="127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793"
etcd_leader() { # prints the leader's member number
  etcdctl --endpoints "$etcd_endpoints" endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
rows = json.load(sys.stdin)
for row in rows:
    if row["Status"].get("leader") == row["Status"]["header"]["member_id"]:
        print(row["Endpoint"][-1]); break'
}
etcd_revision() {
  etcdctl --endpoints "127.0.0.1:2379$1" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'
}
declare -A etcd_pid
for i in 1 2 3; do etcd_start "$i"; done

# ---- Flotilla ----
local_cluster_config "$work/flotilla.json" bench "$work/flotilla-{node}" 27100 27200
declare -A flotilla_pid
flotilla_start() {
  LD_PRELOAD="$shim" "$flotilla" node --config "$work/flotilla.json" --node-id "n$1" >>"$work/flotilla-n$1.log" 2>&1 &
  flotilla_pid[$1]=$!
  pids+=($!)
}
flotilla_leader() {
  for i in 1 2 3; do
    leader=$(curl -s --max-time 1 "http://127.0.0.1:2710$i/v1/status?stale=true" | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["leader"][1:])
except Exception: pass' || true)
    if [ -n "$leader" ]; then echo "$leader"; return; fi
  done
}
for i in 1 2 3; do flotilla_start "$i"; done

wait_for() { # command... : retries for up to 30 s
  for _ in $(seq 1 300); do if "$@" >/dev/null 2>&1 && [ -n "$("$@")" ]; then return 0; fi; sleep 0.1; done
  echo "bench-etcd: timed out waiting for: $*" >&2; return 1
}
wait_for etcd_leader
wait_for flotilla_leader

# CPU time (user + system, clock ticks) the three members of $1 have used so far, all their threads.
cpu_ticks() { # system
  local i total=0 pid stat
  for i in 1 2 3; do
    if [ "$1" = etcd ]; then pid=${etcd_pid[$i]}; else pid=${flotilla_pid[$i]}; fi
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    stat=${stat##*) }  # the fields after the command name
    read -r -a fields <<<"$stat"
    total=$(( total + fields[11] + fields[12] ))  # utime, stime (fields 14 and 15 of the line)
  done
  echo "$total"
}
ticks_per_second=$(getconf CLK_TCK)

# Heap allocations of Flotilla's three members so far (their /metrics, from the preloaded counter).
flotilla_allocations() {
  local i total=0 count
  for i in 1 2 3; do
    count=$(curl -s --max-time 2 "http://127.0.0.1:2710$i/metrics" |
      awk '/^flotilla_process_heap_allocations_total/ { print $2 }')
    [ -n "$count" ] || { echo "bench-etcd: n$i shows no allocation count on /metrics" >&2; return 1; }
    total=$(( total + count ))
  done
  echo "$total"
}

# h2load run → "requests/s p50_ms p99_ms cpu_us_per_request allocations_per_request" (-1: not
# counted); fails (with the reason) unless every request succeeded. CPU and allocations per
# request: what the three members used during the run, ÷ the requests.
# op: put (a write of the key) or get (a linearizable read of it: etcd's Range, Flotilla's GET,
# which goes through ReadIndex).
load() { # system clients streams requests [op]
  local system=$1 c=$2 m=$3 n=$4 op=${5:-put} log="$work/h2load-$1-$2-$3-${5:-put}.log"
  local leader url before cpu_before allocations_before=0
  rm -f "$log"  # h2load appends to its log file
  cpu_before=$(cpu_ticks "$system")
  if [ "$system" = flotilla ]; then allocations_before=$(flotilla_allocations); fi
  if [ "$op" = get ]; then
    if [ "$system" = etcd ]; then
      leader=$(etcd_leader)
      h2load -n "$n" -c "$c" -m "$m" -d "$work/etcd-range.bin" -H 'content-type: application/grpc' \
        -H 'te: trailers' --log-file="$log" "http://127.0.0.1:2379$leader/etcdserverpb.KV/Range" >"$work/h2load.out" 2>&1
    else
      leader=$(flotilla_leader)
      h2load -n "$n" -c "$c" -m "$m" --log-file="$log" "http://127.0.0.1:2710$leader/v1/config/bench-key1" \
        >"$work/h2load.out" 2>&1
    fi
  elif [ "$system" = etcd ]; then
    leader=$(etcd_leader); before=$(etcd_revision "$leader")
    h2load -n "$n" -c "$c" -m "$m" -d "$work/etcd-put.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
      --log-file="$log" "http://127.0.0.1:2379$leader/etcdserverpb.KV/Put" >"$work/h2load.out" 2>&1
    local after; after=$(etcd_revision "$leader")
    if [ $(( after - before )) -ne "$n" ]; then
      echo "bench-etcd: etcd: $n writes at $c x $m, but its revision moved by $(( after - before ))" >&2
      return 1
    fi
  else
    leader=$(flotilla_leader)
    h2load -n "$n" -c "$c" -m "$m" -d "$work/flotilla-put.json" -H ':method: PUT' -H 'content-type: application/json' \
      --log-file="$log" "http://127.0.0.1:2710$leader/v1/config/bench-key1" >"$work/h2load.out" 2>&1
  fi
  # Every request must have succeeded, with a 2xx status, or the round (and the run) fails.
  if ! grep -q "requests: $n total, $n started, $n done, $n succeeded, 0 failed, 0 errored" "$work/h2load.out" ||
    ! grep -q "status codes: $n 2xx" "$work/h2load.out"; then
    echo "bench-etcd: $system: not every one of $n ${op}s at $c x $m succeeded:" >&2
    grep -E "^requests:|^status codes:" "$work/h2load.out" >&2
    return 1
  fi
  local cpu_us=$(( ($(cpu_ticks "$system") - cpu_before) * 1000000 / ticks_per_second / n )) allocations=-1
  if [ "$system" = flotilla ]; then allocations=$(( ($(flotilla_allocations) - allocations_before) / n )); fi
  python3 - "$log" "$cpu_us" "$allocations" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
starts = [float(r[0]) for r in rows]; ends = [float(r[0]) + float(r[2]) for r in rows]
latencies = sorted(float(r[2]) / 1000 for r in rows)
span = (max(ends) - min(starts)) / 1e6
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
print(f"{len(rows) / span:.0f} {pick(0.50):.2f} {pick(0.99):.2f} {sys.argv[2]} {sys.argv[3]}")
PY
}

declare -A results
for round in $(seq 1 "$ROUNDS"); do
  order="etcd flotilla"
  if [ $(( round % 2 )) -eq 0 ]; then order="flotilla etcd"; fi
  for system in $order; do
    results["$system many $round"]=$(load "$system" 8 16 "$N_MANY")
    results["$system one $round"]=$(load "$system" 1 1 "$N_ONE")
    results["$system read $round"]=$(load "$system" 1 1 "$N_ONE" get)
    echo "round $round $system: ${results["$system many $round"]} | ${results["$system one $round"]} | reads ${results["$system read $round"]}" >&2
  done
done

# The client ports of the members other than $2, with prefix $1 (2379 or 2710).
survivor_ports() { for i in 1 2 3; do [ "$i" = "$2" ] || echo "$1$i"; done; }

# SIGKILL the leader; time to the first acknowledged write through another member. Sets
# failover_ms (not printed: a $(…) subshell would lose the restarted member's pid).
failover() { # system
  local system=$1 leader
  if [ "$system" = etcd ]; then
    leader=$(etcd_leader)
    failover_ms=$(scripts/failover-probe.py etcd "kill:${etcd_pid[$leader]}" $(survivor_ports 2379 "$leader"))
    wait "${etcd_pid[$leader]}" 2>/dev/null || true
    etcd_start "$leader"; wait_for etcd_leader; sleep 1
  else
    leader=$(flotilla_leader)
    failover_ms=$(scripts/failover-probe.py flotilla "kill:${flotilla_pid[$leader]}" $(survivor_ports 2710 "$leader"))
    wait "${flotilla_pid[$leader]}" 2>/dev/null || true
    flotilla_start "$leader"; wait_for flotilla_leader; sleep 1
  fi
}
etcd_failovers=(); flotilla_failovers=()
for kill in $(seq 1 "$KILLS"); do
  order="etcd flotilla"
  if [ $(( kill % 2 )) -eq 0 ]; then order="flotilla etcd"; fi
  for system in $order; do
    failover "$system"
    if [ "$system" = etcd ]; then etcd_failovers+=("$failover_ms"); else flotilla_failovers+=("$failover_ms"); fi
  done
done

python3 - "$ROUNDS" "${etcd_failovers[*]}" "${flotilla_failovers[*]}" <<PY
import statistics, sys
rounds = int(sys.argv[1])
raw = {$(for key in "${!results[@]}"; do printf '"%s": "%s", ' "$key" "${results[$key]}"; done)}
def median(system, load, column):
    return statistics.median(float(raw[f"{system} {load} {r}"].split()[column]) for r in range(1, rounds + 1))
print("| load | measure | etcd 3.4 | Flotilla | Flotilla / etcd |")
print("|---|---|---|---|---|")
for load, name, what in (
    ("many", "writes, 8 clients x 16 streams", "write"), ("one", "writes, 1 client x 1 stream", "write"),
    ("read", "linearizable reads, 1 client x 1 stream", "read"),
):
    for column, measure, unit in ((0, f"{what}s/s", ""), (1, "p50", " ms"), (2, "p99", " ms"), (3, f"CPU per {what}, 3 members", " µs")):
        e, f = median("etcd", load, column), median("flotilla", load, column)
        print(f"| {name} | {measure} | {e:,.2f}{unit} | {f:,.2f}{unit} | {f / e:.2f}x |")
    f = median("flotilla", load, 4)
    print(f"| {name} | heap allocations per {what}, 3 members | not counted (Go) | {f:,.0f} | — |")
e = [int(x) for x in sys.argv[2].split()]; f = [int(x) for x in sys.argv[3].split()]
print(f"| leader SIGKILL → first acknowledged write | median (min–max) of {len(e)} | {statistics.median(e):.0f} ms ({min(e)}–{max(e)}) | {statistics.median(f):.0f} ms ({min(f)}–{max(f)}) | {statistics.median(f) / statistics.median(e):.2f}x |")
PY
