#!/usr/bin/env bash
# Live migration between real nodes (release build): downtime (p50, p99), total time, rounds and
# bytes sent ÷ memory for guests of 256 MiB and 1 GiB whose memory all holds data, at dirty rates of
# 0, 1, 10 and 50 % of the bandwidth measured at 0 %; and the rounds' transfer rate against a plain
# TCP copy of one full round's bytes between two processes on the same loopback, taking turns.
# Prints a markdown table with the command and the load average at the start and the end, and
# nothing but the reason when any request or migration failed.
# Usage: scripts/bench-migration.sh [NAME=FLOTILLA_BINARY ...]
#   MIGRATIONS=10 per case, SIZES=256M,1G, DIRTY=0,1,10,50. With binaries given, each runs its own
#   cluster and they take turns (before/after side by side); without, the release build of this tree.
set -euo pipefail
cd "$(dirname "$0")/.."

MIGRATIONS=${MIGRATIONS:-10}
SIZES=${SIZES:-256M,1G}
DIRTY=${DIRTY:-0,1,10,50}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
work=$(mktemp -d /tmp/flotilla-bench-migration.XXXXXX)
trap 'rm -rf "$work"' EXIT

bench=bench-migration
source scripts/lib-bench.sh
build_release flotilla flotilla-bench

builds=()
if [ $# -eq 0 ]; then
  builds=(--flotilla "$scratch/release/flotilla")
else
  for build in "$@"; do builds+=(--flotilla "$build"); done
fi

command="MIGRATIONS=$MIGRATIONS SIZES=$SIZES DIRTY=$DIRTY scripts/bench-migration.sh $*"
started_load=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
if ! "$scratch/release/flotilla-bench" migration "${builds[@]}" --sizes "$SIZES" --dirty "$DIRTY" \
  --migrations "$MIGRATIONS" >"$work/table.md"; then
  echo "$bench: flotilla-bench migration failed" >&2
  exit 1
fi
if commit="commit $(git rev-parse --short HEAD 2>/dev/null)"; then
  git diff --quiet HEAD || commit="$commit, with uncommitted changes"
else
  commit="not a git checkout"
fi
echo "$started_at, \`$command\` ($commit)"
echo
cat "$work/table.md"
echo
echo "load average at the start: $started_load; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
