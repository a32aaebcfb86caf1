#!/usr/bin/env bash
# Leader loss two ways, on a 3-node cluster whose nodes run on their own hosts (network namespaces on
# a bridge, scripts/testhosts.sh), with bench-etcd.sh's timing (50 ms ticks, election timeout 10
# ticks randomized up to 2x, heartbeat every tick):
#   kill:   SIGKILL of the leader's process — its host closes the connections and refuses new ones,
#           so the followers notice at once (docs/raft.md, "a dead leader noticed at once");
#   vanish: the leader's host drops off the network (its link goes down) — no connection closes,
#           nothing is refused, and only the election timeout finds the loss.
# Each run times SIGKILL / link-down to the first write acknowledged through another node.
# Prints a markdown table. Needs root and iproute2/iptables. Usage: KILLS=10 scripts/bench-leader-loss.sh
set -euo pipefail
cd "$(dirname "$0")/.."

KILLS=${KILLS:-10}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
prefix=flloss
# `make bench` runs every bench script: without root this one says why it measured nothing.
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! command -v iptables >/dev/null; then
  echo "bench-leader-loss: skipped — needs root, ip and iptables for its network namespaces" >&2
  exit 0
fi
work=$(mktemp -d /tmp/flotilla-bench-loss.XXXXXX)
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/testhosts.sh down "$prefix" || true
  rm -rf "$work"
}
trap cleanup EXIT

bench=bench-leader-loss
source scripts/lib-bench.sh
build_release flotilla
flotilla="$(cd "$scratch/release" && pwd)/flotilla"

scripts/testhosts.sh down "$prefix"
scripts/testhosts.sh up "$prefix" 3
declare -A address
for i in 1 2 3; do address[$i]=$(scripts/testhosts.sh addr "$prefix" "$i"); done
cat >"$work/cluster.json" <<JSON
{"cluster-id": "loss", "data-dir": "$work/{node}", "tick-ms": 50, "election-ticks": 10, "heartbeat-ticks": 1,
 "members": [{"id": "n1", "peer": "${address[1]}:7201", "client": "${address[1]}:7101"},
             {"id": "n2", "peer": "${address[2]}:7201", "client": "${address[2]}:7101"},
             {"id": "n3", "peer": "${address[3]}:7201", "client": "${address[3]}:7101"}]}
JSON
start() { # node
  ip netns exec "$prefix-$1" "$flotilla" node --config "$work/cluster.json" --node-id "n$1" >>"$work/n$1.log" 2>&1 &
  pid[$1]=$!
}
leader() { # the leader every reachable node names, if they agree
  local named=""
  for i in 1 2 3; do
    local answer
    answer=$(curl -s --max-time 0.3 "http://${address[$i]}:7101/v1/status?stale=true" | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["leader"][1:])
except Exception: pass' || true)
    [ -n "$answer" ] || continue
    if [ -z "$named" ]; then named=$answer; elif [ "$named" != "$answer" ]; then return; fi
  done
  echo "$named"
}
wait_for_leader() {
  for _ in $(seq 1 300); do
    local found; found=$(leader)
    if [ -n "$found" ]; then echo "$found"; return; fi
    sleep 0.1
  done
  echo "bench-leader-loss: no leader within 30 s" >&2; exit 1
}
for i in 1 2 3; do start "$i"; done
wait_for_leader >/dev/null
sleep 1

loss() { # kill|vanish; sets loss_ms
  local mode=$1 old other started
  old=$(wait_for_leader); other=$(( old % 3 + 1 ))
  started=$(date +%s%N)
  if [ "$mode" = kill ]; then
    kill -9 "${pid[$old]}"; wait "${pid[$old]}" 2>/dev/null || true
  else
    scripts/testhosts.sh cut "$prefix" "$old"
  fi
  until curl -sf --max-time 0.5 -X PUT -d '{"value":"x"}' "http://${address[$other]}:7101/v1/config/loss" >/dev/null; do :; done
  loss_ms=$(( ($(date +%s%N) - started) / 1000000 ))
  if [ "$mode" = kill ]; then start "$old"; else scripts/testhosts.sh heal "$prefix" "$old"; fi
  wait_for_leader >/dev/null
  sleep 1
}
kills=(); vanishes=()
for _ in $(seq 1 "$KILLS"); do
  loss kill; kills+=("$loss_ms")
  loss vanish; vanishes+=("$loss_ms")
done
python3 - "${kills[*]}" "${vanishes[*]}" <<'PY'
import statistics, sys
print("| leader lost by | runs | loss → first acknowledged write, median (min–max) |")
print("|---|---|---|")
for name, raw in (("SIGKILL of its process (connections close, reconnect refused)", sys.argv[1]),
                  ("its host leaving the network (its link goes down; nothing closes)", sys.argv[2])):
    values = [int(x) for x in raw.split()]
    print(f"| {name} | {len(values)} | {statistics.median(values):.0f} ms ({min(values)}–{max(values)}) |")
PY
