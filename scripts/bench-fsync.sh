#!/usr/bin/env bash
# What one durable append costs on this machine's disk, the way the WAL syncs (docs/raft.md):
# 200-byte records appended and synced one at a time, by a small C program, in four ways —
#   append + fsync          the file grows with every sync (the WAL before 2026-12-07)
#   append + fdatasync      the same with fdatasync: the size still changes, so the journal commits
#   allocated + fdatasync   into space posix_fallocate reserved beforehand (the WAL now)
#   written + fdatasync     into zeros written beforehand (blocks that are not even "unwritten")
# — by one process alone and by three at once on the same filesystem (a local 3-node cluster),
# taking turns. Prints a markdown table (p50 and p90 of SYNCS syncs per process) with the load
# average at the start and the end; a failed write or sync fails the run with no table.
# Environment: SYNCS (1000), ROUNDS (2), DIR (where the files go: .build, on the disk the nodes use).
set -euo pipefail
cd "$(dirname "$0")/.."
SYNCS=${SYNCS:-1000}
ROUNDS=${ROUNDS:-2}
DIR=${DIR:-.build}
cc=$(command -v cc || command -v gcc || command -v clang) || { echo "bench-fsync: no C compiler" >&2; exit 1; }
mkdir -p "$DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f "$DIR"/bench-fsync-*.dat' EXIT
cat >"$work/sync.c" <<'C'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static int compare(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
  const char *mode = argv[1], *path = argv[2]; int n = atoi(argv[3]);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) { perror("open"); return 1; }
  if (!strcmp(mode, "allocated") && posix_fallocate(fd, 0, 16 << 20) != 0) { fprintf(stderr, "posix_fallocate failed\n"); return 1; }
  if (!strcmp(mode, "written")) {
    static char zeros[1 << 16];
    for (int i = 0; i < 256; i++) if (write(fd, zeros, sizeof zeros) != sizeof zeros) { perror("write"); return 1; }
    if (lseek(fd, 0, SEEK_SET) != 0) { perror("lseek"); return 1; }
  }
  if (fsync(fd) != 0) { perror("fsync"); return 1; }
  char record[200]; memset(record, 'x', sizeof record);
  double *took = malloc(sizeof(double) * n);
  for (int i = 0; i < n; i++) {
    double start = now();
    if (write(fd, record, sizeof record) != sizeof record) { perror("write"); return 1; }
    if ((!strcmp(mode, "fsync") ? fsync(fd) : fdatasync(fd)) != 0) { perror("sync"); return 1; }
    took[i] = now() - start;
  }
  qsort(took, n, sizeof(double), compare);
  printf("%.0f %.0f\n", took[n / 2], took[n * 9 / 10]);
  return 0;
}
C
"$cc" -O2 -o "$work/sync" "$work/sync.c"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A results
modes="fsync fdatasync allocated written"
for round in $(seq 1 "$ROUNDS"); do
  order=$modes
  if [ $(( round % 2 )) -eq 0 ]; then order=$(echo $modes | tr ' ' '\n' | tac | tr '\n' ' '); fi
  for mode in $order; do
    results["$mode 1 $round"]=$("$work/sync" "$mode" "$DIR/bench-fsync-$mode-a.dat" "$SYNCS")
    pids=()
    for copy in a b c; do
      "$work/sync" "$mode" "$DIR/bench-fsync-$mode-$copy.dat" "$SYNCS" >"$work/$mode-$copy.out" & pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done  # set -e: a failed process fails the run
    results["$mode 3 $round"]=$(cat "$work/$mode-a.out" "$work/$mode-b.out" "$work/$mode-c.out" | sort -n | sed -n 2p)
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A names=([fsync]="append + fsync" [fdatasync]="append + fdatasync" [allocated]="allocated + fdatasync (the WAL)" [written]="written zeros + fdatasync")
echo "| sync | alone: p50 / p90 (µs), per round | three at once: the middle process's p50 / p90 (µs), per round |"
echo "|---|---|---|"
for mode in $modes; do
  alone=""; three=""
  for round in $(seq 1 "$ROUNDS"); do
    read -r a b <<<"${results["$mode 1 $round"]}"; alone+="${alone:+; }$a / $b"
    read -r a b <<<"${results["$mode 3 $round"]}"; three+="${three:+; }$a / $b"
  done
  echo "| ${names[$mode]} | $alone | $three |"
done
echo
echo "\`scripts/bench-fsync.sh\` (SYNCS=$SYNCS, ROUNDS=$ROUNDS, files in $DIR: $(df -T "$DIR" | awk 'NR==2 {print $2}')); load average $load_start at the start, $load_end at the end."
