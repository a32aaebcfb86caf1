#!/usr/bin/env bash
# Leader kills on a busy machine: a 3-node cluster on 127.0.0.1 with bench-etcd.sh's timing (50 ms
# ticks, election timeout 10 ticks randomized up to 2x, heartbeat every tick), and BUSY processes
# spinning on the CPU meanwhile (default 2, one per core here). KILLS times: SIGKILL of the leader
# to the first write acknowledged through another node, then the killed node restarts and the next
# round waits for a leader and 1 s. A slow round means the followers missed that the leader's
# process was gone and waited out an election timeout (their logs say why: KEEP=1 keeps them).
# Prints each round and a summary. Usage: KILLS=15 BUSY=2 scripts/bench-kill-loop.sh
set -euo pipefail
cd "$(dirname "$0")/.."

KILLS=${KILLS:-15}
BUSY=${BUSY:-2}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
bench=bench-kill-loop
source scripts/lib-bench.sh
require_tools scripts/install-deps.sh curl python3
require_free_ports 27201 27202 27203 27301 27302 27303
work=$(mktemp -d /tmp/flotilla-bench-kills.XXXXXX)
declare -A pid
busy=()
cleanup() {
  for p in "${pid[@]}" "${busy[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

build_release flotilla
flotilla="$(cd "$scratch/release" && pwd)/flotilla"

local_cluster_config "$work/cluster.json" kills "$work/{node}" 27200 27300
start() {
  echo "=== start $(date +%T.%N)" >>"$work/n$1.log"
  "$flotilla" node --config "$work/cluster.json" --node-id "n$1" >>"$work/n$1.log" 2>&1 &
  pid[$1]=$!
}
leader() {
  for i in 1 2 3; do
    local id
    id=$(curl -s --max-time 0.5 "http://127.0.0.1:2720$i/v1/status?stale=true" | python3 -c 'import json,sys
try:
    leader = json.load(sys.stdin).get("leader")
    print(leader[1:] if leader else "")
except Exception:
    pass' || true)
    if [ -n "$id" ]; then echo "$id"; return; fi
  done
}
wait_for_leader() {
  for _ in $(seq 1 300); do [ -n "$(leader)" ] && return; sleep 0.1; done
  echo "bench-kill-loop: no leader within 30 s" >&2; exit 1
}

for i in 1 2 3; do start "$i"; done
wait_for_leader; sleep 1
for _ in $(seq 1 "$BUSY"); do (while :; do :; done) & busy+=($!); done
times=()
for round in $(seq 1 "$KILLS"); do
  victim=$(leader); other=$(( victim % 3 + 1 ))
  for i in 1 2 3; do echo "=== kill n$victim $(date +%T.%N)" >>"$work/n$i.log"; done
  began=$(date +%s%N)
  kill -9 "${pid[$victim]}"; wait "${pid[$victim]}" 2>/dev/null || true
  until curl -sf --max-time 0.5 -X PUT -d '{"value":"x"}' "http://127.0.0.1:2720$other/v1/config/failover" >/dev/null; do :; done
  took=$(( ($(date +%s%N) - began) / 1000000 ))
  times+=("$took")
  echo "round $round: leader n$victim killed, a write through n$other acknowledged after $took ms"
  start "$victim"; wait_for_leader; sleep 1
done
python3 - "${times[@]}" <<'PY'
import statistics, sys
times = sorted(int(t) for t in sys.argv[1:])
print(f"{len(times)} kills: median {statistics.median(times):.0f} ms, min {times[0]} ms, max {times[-1]} ms, "
      f"{sum(t >= 500 for t in times)} at 500 ms or more (an election timeout)")
PY
