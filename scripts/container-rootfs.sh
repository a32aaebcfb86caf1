#!/usr/bin/env bash
# Collects a built `flotilla` binary and the shared libraries it links into a root file system
# directory, the content of Flotilla's container image (used by the Dockerfile and by
# scripts/container-image.sh).
#
#   container-rootfs.sh [--without-base] [--with-qemu] BINARY ROOT
#
# Every library `ldd BINARY` resolves is copied to the same absolute path under ROOT, so the
# binary finds it exactly as it does where it was built (its RUNPATH names the Swift runtime's
# directory). By default ROOT is complete on its own: the dynamic loader, glibc, a few /etc
# files; `docker import` can turn it into an image. --without-base leaves out what every Debian
# image already has (the loader, glibc, libgcc_s, libstdc++), for copying onto such an image.
# --with-qemu adds this machine's QEMU for the node's real guests (docs/qemu.md): the
# /usr/bin/qemu-system-x86_64 the node runs, the libraries it links, its TCG accelerator module and
# its firmware (/usr/share/qemu, /usr/share/seabios, /usr/lib/ipxe/qemu when present), links resolved.
# A complete ROOT has the user the node runs as, flotilla (uid and gid 10001, as in the Dockerfile),
# owning /var/lib/flotilla and its data and shared directories, so new volumes mounted there are the
# node's to write (Docker copies a mount point's owner into a new volume); that needs root.
set -euo pipefail

usage() { sed -n '2,18p' "$0" >&2; exit 2; }
with_base=1
with_qemu=0
while [ $# -gt 0 ]; do
  case $1 in
  --without-base) with_base=0 ;;
  --with-qemu) with_qemu=1 ;;
  -*) usage ;;
  *) break ;;
  esac
  shift
done
[ $# -eq 2 ] || usage
binary=$1
root=$2
[ -x "$binary" ] || { echo "container-rootfs: $binary is not an executable; build it first (swift build -c release --product flotilla)" >&2; exit 1; }
command -v ldd >/dev/null || { echo "container-rootfs: ldd is missing; install libc-bin" >&2; exit 1; }
# The path the node runs QEMU from (hard-coded in the node), and TCG's accelerator: Debian builds
# it as a loadable module, without which `-accel tcg` fails ("could not load module for type
# 'tcg-accel-ops'"); a QEMU built without modules has it inside and no such file.
qemu=/usr/bin/qemu-system-x86_64
tcg_module=/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so
if [ "$with_qemu" = 1 ]; then
  [ -x "$qemu" ] || { echo "container-rootfs: --with-qemu, but $qemu is missing; run FLOTILLA_QEMU_DEPS=1 scripts/install-deps.sh" >&2; exit 1; }
  if [ ! -d /usr/share/qemu ] || [ ! -d /usr/share/seabios ]; then
    echo "container-rootfs: --with-qemu, but QEMU's firmware (/usr/share/qemu, /usr/share/seabios) is missing; install qemu-system-data and seabios" >&2
    exit 1
  fi
fi

# Files of the libc6, libgcc-s1 and libstdc++6 packages, present in any Debian-based image.
is_base() {
  case ${1##*/} in
  ld-linux* | libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | libresolv.so* | libgcc_s.so* | libstdc++.so*) return 0 ;;
  *) return 1 ;;
  esac
}

# Prints the absolute paths of the libraries `ldd FILE` resolves, the loader included; fails when
# one is missing.
libraries_of() {
  local listing
  listing=$(ldd "$1") || { echo "container-rootfs: ldd $1 failed; is it a dynamic executable?" >&2; return 1; }
  if grep -q "not found" <<<"$listing"; then
    echo "container-rootfs: $1 needs libraries this machine does not have:" >&2
    grep "not found" <<<"$listing" >&2
    return 1
  fi
  # "name => /path (address)" for a library, "/path (address)" for the loader; the vDSO has no path.
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$listing"
}

# Copies FILE to the same path under ROOT, with the directory's links resolved
# (/lib/x86_64-linux-gnu -> /usr/lib/x86_64-linux-gnu), so nothing is copied over a base image's
# /lib link; the file keeps the name it is asked for by, and its own links are followed.
copy_at_same_path() {
  local directory
  directory=$(readlink -f "$(dirname "$1")")
  mkdir -p "$root$directory"
  cp -L "$1" "$root$directory/$(basename "$1")"
}

# Copies the libraries of every file given to their paths under ROOT.
copy_libraries() {
  local file paths path
  for file in "$@"; do
    paths=$(libraries_of "$file") || exit 1
    for path in $paths; do
      if [ "$with_base" = 0 ] && is_base "$path"; then continue; fi
      copy_at_same_path "$path"
    done
  done
}

mkdir -p "$root/usr/local/bin" "$root/usr/lib" "$root/usr/lib64"
if [ "$with_base" = 1 ]; then
  # Debian's merged /usr: /lib and /lib64 are links, so the loader's fixed path
  # /lib64/ld-linux-x86-64.so.2 and the libraries' /usr/lib/... paths both resolve.
  ln -sfn usr/lib "$root/lib"
  ln -sfn usr/lib64 "$root/lib64"
fi
cp -L "$binary" "$root/usr/local/bin/flotilla"
copy_libraries "$binary"

if [ "$with_qemu" = 1 ]; then
  mkdir -p "$root/usr/bin"
  cp -L "$qemu" "$root$qemu"
  copy_libraries "$qemu"
  if [ -f "$tcg_module" ]; then
    copy_libraries "$tcg_module"
    copy_at_same_path "$tcg_module"
  fi
  # QEMU looks for firmware in ../share/qemu, ../share/seabios and ../lib/ipxe/qemu relative to
  # its binary's directory (`qemu-system-x86_64 -L help`): the BIOS (bios-256k.bin, without which
  # it does not start), option ROMs such as linuxboot_dma.bin for -kernel, and network cards' boot
  # ROMs (unused by the node's guests, which have no network card). -L: Debian links some of these
  # files into other packages' directories; the copies are the files themselves.
  for firmware in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
    [ -d "$firmware" ] || continue
    mkdir -p "$root$firmware"
    cp -rL "$firmware/." "$root$firmware/"
  done
fi

if [ "$with_base" = 1 ]; then
  mkdir -p "$root/etc" "$root/tmp" "$root/var/lib/flotilla/data" "$root/var/lib/flotilla/shared"
  chmod 1777 "$root/tmp"
  # glibc resolves container hostnames (n1, n2, …) through /etc/hosts, then Docker's DNS.
  echo "hosts: files dns" >"$root/etc/nsswitch.conf"
  echo "root:x:0:0:root:/root:/usr/sbin/nologin" >"$root/etc/passwd"
  echo "flotilla:x:10001:10001:Flotilla node:/var/lib/flotilla:/usr/sbin/nologin" >>"$root/etc/passwd"
  echo "root:x:0:" >"$root/etc/group"
  echo "flotilla:x:10001:" >>"$root/etc/group"
  if ! chown 10001:10001 "$root/var/lib/flotilla" "$root/var/lib/flotilla/data" "$root/var/lib/flotilla/shared"; then
    echo "container-rootfs: cannot give /var/lib/flotilla to the node's user (uid 10001); run as root" >&2
    exit 1
  fi
  # Docker mounts its own versions of these over the empty files.
  : >"$root/etc/hosts"
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
fi
