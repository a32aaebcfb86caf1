#!/usr/bin/env bash
# Builds the small Linux guest that Flotilla's QEMU tests and benchmarks boot: the host's Debian
# kernel and an initramfs holding a static busybox, the virtio modules and an /init script.
#
#   build-test-guest.sh OUT_DIR
#
# Writes OUT_DIR/vmlinuz and OUT_DIR/initramfs.cpio.gz (newc, gzip). Boot them with, e.g.
#   qemu-system-x86_64 -accel tcg -m 256 -nographic -nodefaults -kernel OUT_DIR/vmlinuz
#     -initrd OUT_DIR/initramfs.cpio.gz -append "console=ttyS0 quiet flotilla.vm=NAME ..."
#     -serial file:LOG -device virtio-balloon-pci,id=balloon0
#
# Why a guest of its own: a real guest gives the cluster real QEMU processes to start, balloon,
# migrate and kill, with memory use the balloon's statistics report and pages a live migration
# has to copy. The guest's /init reads from the kernel command line:
#   flotilla.vm=NAME           the name it reports
#   flotilla.epoch=N           a number it reports (the cluster's placement epoch)
#   flotilla.fill=MIB          MiB of memory it keeps filled (a file in a tmpfs on /dev/shm)
#   flotilla.dirty=MIB_PER_S   MiB of that fill it rewrites every second (0: idle)
#   flotilla.id=N              its VM's id (the number in vmN), for its journal's header
#   flotilla.journal=MS        appends an epoch-stamped record to its disk (/dev/vda) every MS
#                              milliseconds (scripts/test-guest/journal.c: Flotilla's journal
#                              format, each record flushed before the console reports it as
#                              "flotilla-journal: acked vm=ID epoch=E seq=N"); 0 or absent: none
# It prints "flotilla-guest: up" on ttyS0 once its modules are loaded, "flotilla-guest: filled
# MIB MiB" once the fill is written, then every second
# "flotilla-guest: vm=NAME epoch=N uptime=SECONDS mem=KIBkB" (MemTotal: it follows the balloon),
# SECONDS counting from /init's start, so a
# test can tell a guest that carried on across a migration from one that was restarted.
# The fill cannot be swapped or reclaimed: ballooning a 256 MiB guest below about fill + 80 MiB
# (Debian 6.1, measured) makes the guest's OOM killer give up and the kernel panic, unless the
# balloon device has deflate-on-oom=on (then the balloon stops short of its target).
#
# The journal writer is compiled here (a C compiler and a static libc: gcc and libc6-dev).
# The kernel is the newest /boot/vmlinuz-* (FLOTILLA_GUEST_KERNEL names another; its modules
# are those in /lib/modules/VERSION, VERSION taken from the file name after "vmlinuz-", or
# FLOTILLA_GUEST_KERNEL_VERSION). Does nothing when both outputs are newer than the kernel and
# this script and OUT_DIR/vmlinuz is that kernel. scripts/install-deps.sh with
# FLOTILLA_QEMU_DEPS=1 installs what this needs (linux-image-amd64, busybox-static) and QEMU.
set -euo pipefail

usage() { sed -n '2,31p' "$0" >&2; exit 2; }
[ $# -eq 1 ] || usage
out_dir=$1

# The modules the guest loads: the virtio PCI transport, the balloon (memory statistics and
# resizing) and the block driver (a raw disk appears as /dev/vda; block devices themselves are
# built into Debian's kernel, so no file system or further module is needed to read or write
# it). Their dependencies are added, in load order, from modinfo.
wanted_modules=(virtio_pci virtio_balloon virtio_blk)

busybox=/bin/busybox

fail() {
  echo "build-test-guest: $1" >&2
  exit 1
}
# A missing package: says so, and what installs it.
missing() {
  echo "build-test-guest: $1" >&2
  fail "FLOTILLA_QEMU_DEPS=1 scripts/install-deps.sh installs what the test guest needs"
}

# The kernel and its modules.
if [ -n "${FLOTILLA_GUEST_KERNEL:-}" ]; then
  kernel=$FLOTILLA_GUEST_KERNEL
  [ -f "$kernel" ] || fail "FLOTILLA_GUEST_KERNEL=$kernel: no such file"
else
  kernel=$(compgen -G '/boot/vmlinuz-*' | sort -V | tail -n 1 || true)
  [ -n "$kernel" ] || missing "no kernel: /boot/vmlinuz-* is missing (Debian package linux-image-amd64)"
fi
[ -r "$kernel" ] || fail "cannot read the kernel $kernel (run as root, or make it readable)"
kernel_version=${FLOTILLA_GUEST_KERNEL_VERSION:-}
if [ -z "$kernel_version" ]; then
  base=$(basename "$kernel")
  [[ $base == vmlinuz-?* ]] ||
    fail "cannot tell the version of $kernel from its name; set FLOTILLA_GUEST_KERNEL_VERSION"
  kernel_version=${base#vmlinuz-}
fi
module_dir=/lib/modules/$kernel_version
[ -d "$module_dir" ] || missing "no modules for kernel $kernel_version: $module_dir is missing (Debian package linux-image-amd64)"

journal_source=$(dirname "$0")/test-guest/journal.c
[ -f "$journal_source" ] || fail "$journal_source is missing"
# Nothing to do when the outputs are up to date.
kernel_out=$out_dir/vmlinuz
initramfs_out=$out_dir/initramfs.cpio.gz
if [ -f "$kernel_out" ] && [ -f "$initramfs_out" ] &&
   [ "$kernel_out" -nt "$kernel" ] && [ "$initramfs_out" -nt "$kernel" ] &&
   [ "$kernel_out" -nt "$0" ] && [ "$initramfs_out" -nt "$0" ] &&
   [ "$initramfs_out" -nt "$journal_source" ] &&
   cmp -s "$kernel" "$kernel_out"; then
  exit 0
fi

# The tools.
[ -x "$busybox" ] || missing "no busybox: $busybox is missing (Debian package busybox-static)"
if command -v ldd >/dev/null 2>&1; then
  linkage=$(LC_ALL=C ldd "$busybox" 2>&1 || true)
  [[ $linkage == *"not a dynamic executable"* || $linkage == *"statically linked"* ]] ||
    missing "$busybox is dynamically linked and cannot run in the guest (Debian package busybox-static, not busybox)"
fi
modinfo=$(PATH=$PATH:/usr/sbin:/sbin command -v modinfo || true)
[ -n "$modinfo" ] || missing "no modinfo (Debian package kmod)"

# The wanted modules and their dependencies, each after what it depends on.
module_order=()
declare -A module_seen=()
add_module() {
  local name=$1 deps dep
  [ -z "${module_seen[$name]:-}" ] || return 0
  module_seen[$name]=1
  deps=$("$modinfo" -k "$kernel_version" -F depends "$name" 2>/dev/null) ||
    fail "kernel $kernel_version has no module $name"
  for dep in ${deps//,/ }; do
    add_module "$dep"
  done
  module_order+=("$name")
}
for name in "${wanted_modules[@]}"; do
  add_module "$name"
done

# Build in a temporary directory next to the outputs, so the final renames are atomic.
mkdir -p "$out_dir"
work=$(mktemp -d "$out_dir/.build-test-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,lib/modules}

cp "$busybox" "$root/bin/busybox"
compiler=$(command -v cc || command -v gcc || true)
[ -n "$compiler" ] || missing "no C compiler for the journal writer (Debian package gcc)"
"$compiler" -static -O2 -Wall -Werror -o "$root/bin/flotilla-journal" "$journal_source" ||
  missing "cannot build $journal_source statically (Debian packages gcc and libc6-dev)"
# Every applet as a symlink where busybox would install it (bin/sh, sbin/insmod, usr/bin/awk …).
while read -r applet; do
  [ -n "$applet" ] && [ "$applet" != bin/busybox ] || continue
  mkdir -p "$root/$(dirname "$applet")"
  ln -sf /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)

# The modules, uncompressed (Debian 12 ships them as plain .ko; newer kernels may compress
# them, and an uncompressed file loads with any insmod), and the order to load them in.
: >"$root/lib/modules/order"
for name in "${module_order[@]}"; do
  file=$("$modinfo" -k "$kernel_version" -n "$name")
  if [ "$file" = "(builtin)" ]; then
    continue
  fi
  dest=$root/lib/modules/$name.ko
  case $file in
    *.ko) cp "$file" "$dest" ;;
    *.ko.xz)
      if command -v xz >/dev/null 2>&1; then xz -dc "$file" >"$dest"; else "$busybox" xzcat "$file" >"$dest"; fi ;;
    *.ko.gz) "$busybox" zcat "$file" >"$dest" ;;
    *.ko.zst)
      command -v zstd >/dev/null 2>&1 || missing "module $file is zstd-compressed and zstd is missing (Debian package zstd)"
      zstd -q -dc "$file" >"$dest" ;;
    *) fail "module $name: unexpected file $file" ;;
  esac
  echo "$name" >>"$root/lib/modules/order"
done

cat >"$root/init" <<'EOF'
#!/bin/sh
# Flotilla's test guest (built by scripts/build-test-guest.sh). Runs as PID 1 and never exits:
# if it did, the kernel would panic.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Everything goes to the first serial port, whatever console= says.
if [ -c /dev/ttyS0 ]; then
  exec </dev/null >/dev/ttyS0 2>&1
else
  exec </dev/null >/dev/console 2>&1
fi
read -r start _ </proc/uptime
start=${start%.*}

while read -r module; do
  if ! err=$(insmod "/lib/modules/$module.ko" 2>&1); then
    echo "flotilla-guest: cannot load module $module: $err"
  fi
done </lib/modules/order
echo "flotilla-guest: up"

vm=unnamed epoch=0 fill=0 dirty=0 id=0 journal=0
for arg in $(cat /proc/cmdline); do
  case $arg in
    flotilla.vm=*) vm=${arg#*=} ;;
    flotilla.epoch=*) epoch=${arg#*=} ;;
    flotilla.fill=*) fill=${arg#*=} ;;
    flotilla.dirty=*) dirty=${arg#*=} ;;
    flotilla.id=*) id=${arg#*=} ;;
    flotilla.journal=*) journal=${arg#*=} ;;
  esac
done
for name in epoch fill dirty id journal; do
  eval "value=\$$name"
  case $value in
    '' | *[!0-9]*)
      echo "flotilla-guest: flotilla.$name=$value is not a whole number; using 0"
      eval "$name=0" ;;
  esac
done

# The fill: a file of random data (not zeros, which a migration sends for almost nothing) in
# a tmpfs just big enough for it, so the memory stays in use and the balloon statistics show it.
if [ "$fill" -gt 0 ]; then
  mkdir -p /dev/shm
  mount -t tmpfs -o size=$((fill + 1))m tmpfs /dev/shm
  dd if=/dev/urandom of=/tmp/chunk0 bs=1024 count=1024 2>/dev/null
  dd if=/dev/urandom of=/tmp/chunk1 bs=1024 count=1024 2>/dev/null
  i=0
  while [ "$i" -lt "$fill" ]; do
    cat /tmp/chunk0
    i=$((i + 1))
  done >/dev/shm/fill
  echo "flotilla-guest: filled $fill MiB"
fi
# The dirtier: rewrites DIRTY MiB of the fill, then sleeps a second, so the rate is about
# DIRTY MiB/s (less when the writes themselves take a while). Each pass over the fill writes
# the other chunk, so the pages' content really changes, not only their dirty bits.
if [ "$dirty" -gt 0 ] && [ "$fill" -gt 0 ]; then
  (
    offset=0 pass=1
    while :; do
      i=0
      while [ "$i" -lt "$dirty" ]; do
        dd if=/tmp/chunk$pass of=/dev/shm/fill bs=1048576 seek=$offset conv=notrunc 2>/dev/null
        offset=$((offset + 1))
        if [ "$offset" -ge "$fill" ]; then
          offset=0 pass=$((1 - pass))
        fi
        i=$((i + 1))
      done
      sleep 1
    done
  ) &
elif [ "$dirty" -gt 0 ]; then
  echo "flotilla-guest: flotilla.dirty=$dirty without flotilla.fill: nothing to dirty"
fi

# The journal on the VM's disk.
if [ "$journal" -gt 0 ]; then
  if [ -b /dev/vda ] && [ "$id" -gt 0 ]; then
    flotilla-journal /dev/vda "$id" "$epoch" "$journal" &
  else
    echo "flotilla-guest: flotilla.journal=$journal needs a disk (/dev/vda) and flotilla.id; no journal"
  fi
fi

while :; do
  read -r now _ </proc/uptime
  # MemTotal falls and rises as the balloon takes and gives back memory.
  while read -r key value _; do [ "$key" = MemTotal: ] && break; done </proc/meminfo
  echo "flotilla-guest: vm=$vm epoch=$epoch uptime=$((${now%.*} - start)) mem=${value}kB"
  sleep 1
done
EOF
chmod 755 "$root/init"

# The archive: entries owned by root, in a stable order.
(cd "$root" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort |
  "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9 -n >"$work/initramfs.cpio.gz"
cp "$kernel" "$work/vmlinuz"
mv -f "$work/initramfs.cpio.gz" "$initramfs_out"
mv -f "$work/vmlinuz" "$kernel_out"
echo "build-test-guest: $kernel_out and $initramfs_out (kernel $kernel_version, modules: ${module_order[*]})"
