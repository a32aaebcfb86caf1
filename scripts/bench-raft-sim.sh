#!/usr/bin/env bash
# Benchmarks the Raft core inside the simulator (release build): committed entries per second of a
# 3-node cluster on a free network and disk, and heap allocations per committed entry.
#
# Allocations are counted by a tiny malloc shim that scripts/lib-bench.sh builds and this preloads;
# without it the benchmark still reports throughput. Usage: scripts/bench-raft-sim.sh [entries]   (default 200000)
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
entries=${1:-200000}
mkdir -p "$scratch"

bench=bench-raft-sim
source scripts/lib-bench.sh
shim=$(malloc_counter)

if ! swift build -c release --product flotilla-bench --scratch-path "$scratch" >"$scratch/build.log" 2>&1; then
  cat "$scratch/build.log"
  exit 1
fi
LD_PRELOAD="$shim" "$scratch/release/flotilla-bench" raft-sim "$entries"
