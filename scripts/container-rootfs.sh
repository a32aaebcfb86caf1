#!/usr/bin/env bash
# Collects a built `flotilla` binary and the shared libraries it links into a root file system
# directory, the content of Flotilla's container image (used by the Dockerfile and by
# scripts/container-image.sh).
#
#   container-rootfs.sh [--without-base] BINARY ROOT
#
# Every library `ldd BINARY` resolves is copied to the same absolute path under ROOT, so the
# binary finds it exactly as it does where it was built (its RUNPATH names the Swift runtime's
# directory). By default ROOT is complete on its own: the dynamic loader, glibc, a few /etc
# files; `docker import` can turn it into an image. --without-base leaves out what every Debian
# image already has (the loader, glibc, libgcc_s, libstdc++), for copying onto such an image.
set -euo pipefail

usage() { sed -n '2,12p' "$0" >&2; exit 2; }
with_base=1
if [ "${1:-}" = --without-base ]; then
  with_base=0
  shift
fi
[ $# -eq 2 ] || usage
binary=$1
root=$2
[ -x "$binary" ] || { echo "container-rootfs: $binary is not an executable; build it first (swift build -c release --product flotilla)" >&2; exit 1; }
command -v ldd >/dev/null || { echo "container-rootfs: ldd is missing; install libc-bin" >&2; exit 1; }

# Files of the libc6, libgcc-s1 and libstdc++6 packages, present in any Debian-based image.
is_base() {
  case ${1##*/} in
  ld-linux* | libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | libresolv.so* | libgcc_s.so* | libstdc++.so*) return 0 ;;
  *) return 1 ;;
  esac
}

libraries=$(ldd "$binary") || { echo "container-rootfs: ldd $binary failed; is it a dynamic executable?" >&2; exit 1; }
if grep -q "not found" <<<"$libraries"; then
  echo "container-rootfs: $binary needs libraries this machine does not have:" >&2
  grep "not found" <<<"$libraries" >&2
  exit 1
fi

mkdir -p "$root/usr/local/bin" "$root/usr/lib" "$root/usr/lib64"
if [ "$with_base" = 1 ]; then
  # Debian's merged /usr: /lib and /lib64 are links, so the loader's fixed path
  # /lib64/ld-linux-x86-64.so.2 and the libraries' /usr/lib/... paths both resolve.
  ln -sfn usr/lib "$root/lib"
  ln -sfn usr/lib64 "$root/lib64"
fi
cp -L "$binary" "$root/usr/local/bin/flotilla"
# "name => /path (address)" for a library, "/path (address)" for the loader; the vDSO has no path.
for path in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libraries"); do
  if [ "$with_base" = 0 ] && is_base "$path"; then continue; fi
  # The directory with its links resolved (/lib/x86_64-linux-gnu -> /usr/lib/x86_64-linux-gnu), so
  # nothing is copied over a base image's /lib link; the file keeps the name the binary asks for.
  directory=$(readlink -f "$(dirname "$path")")
  mkdir -p "$root$directory"
  cp -L "$path" "$root$directory/$(basename "$path")"
done

if [ "$with_base" = 1 ]; then
  mkdir -p "$root/etc" "$root/tmp" "$root/var/lib/flotilla/data" "$root/var/lib/flotilla/shared"
  chmod 1777 "$root/tmp"
  # glibc resolves container hostnames (n1, n2, …) through /etc/hosts, then Docker's DNS.
  echo "hosts: files dns" >"$root/etc/nsswitch.conf"
  echo "root:x:0:0:root:/root:/usr/sbin/nologin" >"$root/etc/passwd"
  echo "root:x:0:" >"$root/etc/group"
  # Docker mounts its own versions of these over the empty files.
  : >"$root/etc/hosts"
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
fi
