#!/usr/bin/env bash
# A real guest's live migration (QEMU, software emulation here), two tables:
# 1. QEMU's stream carried over HTTP/2 as between two nodes, against the same through a plain relay
#    process (socat) and QEMU migrating straight to its target over TCP, the routes taking turns;
# 2. through a 3-node cluster of real nodes (the whole protocol, the switchover committed through
#    the log), a real guest and a simulated guest of the same size taking turns.
# Release build. Prints the tables with the command and the load average, and nothing but the
# reason when anything failed.
# Usage: scripts/bench-qemu-migration.sh   (SIZES=256M,1G DIRTY=0,8 MIGRATIONS=6 by default)
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-256M,1G}
DIRTY=${DIRTY:-0,8}
MIGRATIONS=${MIGRATIONS:-6}
scratch=${FLOTILLA_BENCH_SCRATCH:-.build}
work=$(mktemp -d /tmp/flotilla-bench-qemu.XXXXXX)
trap 'rm -rf "$work"' EXIT

bench=bench-qemu-migration
source scripts/lib-bench.sh
FLOTILLA_QEMU_DEPS=1 FLOTILLA_BENCH_DEPS=1 ./scripts/install-deps.sh
./scripts/build-test-guest.sh "$scratch/test-guest" >&2
guest=$(cd "$scratch/test-guest" && pwd)
build_release flotilla flotilla-bench

started_load=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
if ! "$scratch/release/flotilla-bench" qemu-migration --kernel "$guest/vmlinuz" --initrd "$guest/initramfs.cpio.gz" \
  --sizes "$SIZES" --dirty "$DIRTY" --migrations "$MIGRATIONS" >"$work/table.md"; then
  echo "$bench: flotilla-bench qemu-migration failed" >&2
  exit 1
fi
if ! "$scratch/release/flotilla-bench" real-migration --flotilla "$scratch/release/flotilla" --kernel "$guest/vmlinuz" \
  --initrd "$guest/initramfs.cpio.gz" --sizes "$SIZES" --dirty "$DIRTY" --migrations "$MIGRATIONS" >"$work/cluster.md"; then
  echo "$bench: flotilla-bench real-migration failed" >&2
  exit 1
fi
commit=$(git rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
echo "$started_at, \`SIZES=$SIZES DIRTY=$DIRTY MIGRATIONS=$MIGRATIONS scripts/bench-qemu-migration.sh\` (commit $commit)"
echo
cat "$work/table.md"
echo
echo "Through a cluster (the switchover committed through the log), real and simulated guests taking turns:"
echo
cat "$work/cluster.md"
echo
echo "load average at the start: $started_load; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
