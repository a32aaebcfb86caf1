#!/usr/bin/env bash
# Leader loss two ways, Flotilla against etcd in the same run: a 3-member cluster of each whose
# members run on their own hosts (network namespaces on a bridge, scripts/testhosts.sh; one set of
# hosts per system), with bench-etcd.sh's timing (election timeout 500 ms randomized up to 2x,
# heartbeat every 50 ms; PreVote in both):
#   kill:   SIGKILL of the leader's process — its host closes the connections and refuses new ones;
#   vanish: the leader's host drops off the network (its link goes down) — no connection closes,
#           nothing is refused, and only silence tells the followers.
# Each run times the loss to the first write acknowledged through a survivor, with the same probe
# for both (scripts/failover-probe.py: overlapping single writes every 10 ms against every
# survivor); the systems take turns going first. Prints a markdown table. Needs root, iproute2 and
# iptables (without them it says so and measures nothing). Usage: KILLS=10 scripts/bench-leader-loss.sh
set -euo pipefail
cd "$(dirname "$0")/.."

KILLS=${KILLS:-10}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
fprefix=flloss
eprefix=flelos
# `make bench` runs every bench script: without root this one says why it measured nothing.
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! command -v iptables >/dev/null; then
  echo "bench-leader-loss: skipped — needs root, ip and iptables for its network namespaces" >&2
  exit 0
fi
work=$(mktemp -d /tmp/flotilla-bench-loss.XXXXXX)
declare -A fpid epid faddress eaddress
cleanup() {
  for p in "${fpid[@]}" "${epid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/testhosts.sh down "$fprefix" || true
  scripts/testhosts.sh down "$eprefix" || true
  rm -rf "$work"
}
trap cleanup EXIT

bench=bench-leader-loss
source scripts/lib-bench.sh
require_tools "FLOTILLA_BENCH_DEPS=1 scripts/install-deps.sh" etcd etcdctl python3 curl
build_release flotilla
flotilla="$(cd "$scratch/release" && pwd)/flotilla"

for prefix in "$fprefix" "$eprefix"; do
  scripts/testhosts.sh down "$prefix"
  scripts/testhosts.sh up "$prefix" 3
done
for i in 1 2 3; do
  faddress[$i]=$(scripts/testhosts.sh addr "$fprefix" "$i")
  eaddress[$i]=$(scripts/testhosts.sh addr "$eprefix" "$i")
done

# ---- Flotilla ----
cat >"$work/cluster.json" <<JSON
{"cluster-id": "loss", "data-dir": "$work/{node}", "tick-ms": 50, "election-ticks": 10, "heartbeat-ticks": 1,
 "members": [{"id": "n1", "peer": "${faddress[1]}:7201", "client": "${faddress[1]}:7101"},
             {"id": "n2", "peer": "${faddress[2]}:7201", "client": "${faddress[2]}:7101"},
             {"id": "n3", "peer": "${faddress[3]}:7201", "client": "${faddress[3]}:7101"}]}
JSON
flotilla_start() { # member
  ip netns exec "$fprefix-$1" "$flotilla" node --config "$work/cluster.json" --node-id "n$1" >>"$work/n$1.log" 2>&1 &
  fpid[$1]=$!
}
flotilla_leader() { # the leader every reachable member names, if they agree
  local named="" i answer
  for i in 1 2 3; do
    answer=$(curl -s --max-time 0.3 "http://${faddress[$i]}:7101/v1/status?stale=true" | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["leader"][1:])
except Exception: pass' || true)
    [ -n "$answer" ] || continue
    if [ -z "$named" ]; then named=$answer; elif [ "$named" != "$answer" ]; then return; fi
  done
  echo "$named"
}

# ---- etcd ----
etcd_cluster="e1=http://${eaddress[1]}:2380,e2=http://${eaddress[2]}:2380,e3=http://${eaddress[3]}:2380"
etcd_start() { # member
  local i=$1 state=${2:-new}
  ip netns exec "$eprefix-$i" etcd --name "e$i" --data-dir "$work/etcd-$i" \
    --listen-client-urls "http://${eaddress[$i]}:2379" --advertise-client-urls "http://${eaddress[$i]}:2379" \
    --listen-peer-urls "http://${eaddress[$i]}:2380" --initial-advertise-peer-urls "http://${eaddress[$i]}:2380" \
    --initial-cluster "$etcd_cluster" --initial-cluster-state "$state" --initial-cluster-token loss \
    --heartbeat-interval 50 --election-timeout 500 --pre-vote --log-level error >>"$work/etcd-$i.log" 2>&1 &
  epid[$i]=$!
}
etcd_leader() { # the member number of the leader the reachable members agree on
  local endpoints="" i
  for i in 1 2 3; do endpoints+="${endpoints:+,}http://${eaddress[$i]}:2379"; done
  etcdctl --endpoints "$endpoints" --dial-timeout 300ms --command-timeout 300ms endpoint status -w json 2>/dev/null |
    python3 -c '
import json, sys
try:
    rows = json.load(sys.stdin)
except Exception:
    sys.exit()
# A member without a leader (an election in progress) leaves the field out.
leaders = {row["Status"].get("leader") for row in rows}
if len(leaders) == 1 and None not in leaders:
    for row in rows:
        if row["Status"]["header"]["member_id"] == row["Status"]["leader"]:
            print(row["Endpoint"].split("//")[1].split(":")[0].split(".")[-1])' || true
}

wait_for_leader() { # system
  local found
  for _ in $(seq 1 300); do
    found=$("$1"_leader)
    if [ -n "$found" ]; then echo "$found"; return; fi
    sleep 0.1
  done
  echo "bench-leader-loss: $1 has no leader within 30 s" >&2
  exit 1
}
for i in 1 2 3; do flotilla_start "$i"; etcd_start "$i"; done
wait_for_leader flotilla >/dev/null
wait_for_leader etcd >/dev/null
sleep 1

loss() { # system kill|vanish; sets loss_ms
  local system=$1 mode=$2 old i targets=() action
  old=$(wait_for_leader "$system")
  for i in 1 2 3; do
    [ "$i" = "$old" ] && continue
    if [ "$system" = flotilla ]; then targets+=("${faddress[$i]}:7101"); else targets+=("${eaddress[$i]}:2379"); fi
  done
  if [ "$mode" = kill ]; then
    if [ "$system" = flotilla ]; then action="kill:${fpid[$old]}"; else action="kill:${epid[$old]}"; fi
  else
    if [ "$system" = flotilla ]; then action="cut:$fprefix:$old"; else action="cut:$eprefix:$old"; fi
  fi
  loss_ms=$(scripts/failover-probe.py "$system" "$action" "${targets[@]}")
  if [ "$mode" = kill ]; then
    if [ "$system" = flotilla ]; then
      wait "${fpid[$old]}" 2>/dev/null || true
      flotilla_start "$old"
    else
      wait "${epid[$old]}" 2>/dev/null || true
      etcd_start "$old" existing
    fi
  else
    if [ "$system" = flotilla ]; then scripts/testhosts.sh heal "$fprefix" "$old"; else scripts/testhosts.sh heal "$eprefix" "$old"; fi
  fi
  wait_for_leader "$system" >/dev/null
  sleep 1
}
declare -A runs=()
for run in $(seq 1 "$KILLS"); do
  order="flotilla etcd"
  if [ $(( run % 2 )) -eq 0 ]; then order="etcd flotilla"; fi
  for mode in kill vanish; do
    for system in $order; do
      loss "$system" "$mode"
      runs[$system-$mode]+="$loss_ms "
    done
  done
done
python3 - "${runs[etcd-kill]}" "${runs[flotilla-kill]}" "${runs[etcd-vanish]}" "${runs[flotilla-vanish]}" <<'PY'
import statistics, sys
def cell(raw):
    values = [int(x) for x in raw.split()]
    return statistics.median(values), f"{statistics.median(values):.0f} ms ({min(values)}–{max(values)})", len(values)
print("| leader lost by | runs | etcd 3.4, median (min–max) | Flotilla, median (min–max) | Flotilla / etcd |")
print("|---|---|---|---|---|")
for name, etcd, flotilla in (
    ("SIGKILL of its process (connections close, reconnect refused)", sys.argv[1], sys.argv[2]),
    ("its host leaving the network (its link goes down; nothing closes)", sys.argv[3], sys.argv[4]),
):
    (e, e_text, n), (f, f_text, _) = cell(etcd), cell(flotilla)
    print(f"| {name} | {n} | {e_text} | {f_text} | {f / e:.2f}x |")
PY
