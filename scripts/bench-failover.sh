#!/usr/bin/env bash
# Failover time: from SIGKILL of a node to all of its VMs running on the survivors, as the
# survivors' agents report them (GET /v1/agent, a newer epoch, running). A local 3-node cluster
# on 127.0.0.1 (release build), 4 VMs on the victim, KILLS kills of a follower's node and KILLS of
# the leader's, once with the default lease and once with an aggressive one.
# Prints a markdown table. Usage: scripts/bench-failover.sh   (KILLS=20 by default)
set -euo pipefail
cd "$(dirname "$0")/.."

KILLS=${KILLS:-20}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
mkdir -p "$scratch"
bench=bench-failover
work=$scratch  # only the build log goes there
source scripts/lib-bench.sh
build_release flotilla flotilla-bench

echo "| node killed | lease | heartbeat | election timeout | kills | median | p99 | range | p99 within lease + 1 s |"
echo "|---|---|---|---|---|---|---|---|---|"
# The node's defaults: 50 ms ticks, elections after 10-20 ticks, heartbeats every 200 ms, a 2 s lease.
"$scratch/release/flotilla-bench" failover --flotilla "$scratch/release/flotilla" --kills "$KILLS" \
  --tick-ms 50 --election-ticks 10 --heartbeat-ms 200 --lease-ms 2000
# Aggressive: 20 ms ticks, elections after 15-30 ticks, heartbeats every 100 ms, a 500 ms lease.
"$scratch/release/flotilla-bench" failover --flotilla "$scratch/release/flotilla" --kills "$KILLS" \
  --tick-ms 20 --election-ticks 15 --heartbeat-ms 100 --lease-ms 500
