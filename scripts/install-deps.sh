#!/usr/bin/env bash
# Installs the system packages Flotilla's build, tests and benchmarks need; does nothing when
# they are all present, so `make run` / `make test` can call it every time.
set -euo pipefail

# The Debian packages, and what shows each is installed: a command, a path (a glob matches
# when any file does), or static:PATH, a statically linked executable at PATH.
packages=(
  "libnghttp2-dev:/usr/include/nghttp2/nghttp2.h"
  "pkg-config:pkg-config"
  "nghttp2-client:h2load"
  "nghttp2-server:nghttpd"
  "curl:curl"
  "jq:jq"
  "iproute2:ip"
  "iptables:iptables"
)
if [ "${FLOTILLA_BENCH_DEPS:-0}" = 1 ]; then
  packages+=("etcd-server:etcd" "etcd-client:etcdctl" "socat:socat" "valgrind:valgrind")
fi
# The container cluster and its test (scripts/cluster.sh, scripts/test-containers.sh): Debian's
# Docker 20.10 and the v1 docker-compose. Probed by dockerd, not docker: a client alone is not enough.
if [ "${FLOTILLA_CONTAINER_DEPS:-0}" = 1 ]; then
  packages+=("docker.io:dockerd" "docker-compose:docker-compose")
fi
# Real QEMU guests (scripts/build-test-guest.sh): QEMU, a kernel with its modules, a static
# busybox for the guest's initramfs, a C compiler with a static libc for its journal writer, and
# qemu-img for the tests' qcow2 images.
# The busybox package installs a dynamically linked /bin/busybox, hence the static probe;
# busybox-static replaces it.
if [ "${FLOTILLA_QEMU_DEPS:-0}" = 1 ]; then
  packages+=("qemu-system-x86:qemu-system-x86_64" "busybox-static:static:/bin/busybox"
    "linux-image-amd64:/boot/vmlinuz-*" "gcc:gcc" "libc6-dev:/usr/lib/x86_64-linux-gnu/libc.a"
    "qemu-utils:qemu-img")
fi

# Validating the Kubernetes manifests (scripts/validate-kubernetes.sh): kubernetes-validate from
# PyPI, which carries the Kubernetes API schemas (no cluster, no network once installed), in a
# virtual environment of its own made with Debian's Python, so no system Python package changes.
# validate-kubernetes.sh finds it at the same path.
kubernetes_validate_version=1.37.0
kubernetes_validate_dir=${FLOTILLA_TOOLS_DIR:-${HOME:-/root}/.local/share/flotilla}/kubernetes-validate-$kubernetes_validate_version
if [ "${FLOTILLA_KUBERNETES_DEPS:-0}" = 1 ]; then
  packages+=("python3:/usr/bin/python3" "python3-venv:/usr/lib/python3*/ensurepip/__init__.py")
fi

# True when PROBE (see the package list above) shows its package installed.
installed() {
  local probe=$1 linkage
  case $probe in
    static:*)
      [ -x "${probe#static:}" ] || return 1
      linkage=$(LC_ALL=C ldd "${probe#static:}" 2>&1 || true)
      [[ $linkage == *"not a dynamic executable"* || $linkage == *"statically linked"* ]] ;;
    /*) compgen -G "$probe" >/dev/null ;;
    *) command -v "$probe" >/dev/null 2>&1 ;;
  esac
}

missing=()
for entry in "${packages[@]}"; do
  pkg=${entry%%:*}
  probe=${entry#*:}
  installed "$probe" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo_cmd=(sudo)
    else
      echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
      echo "install-deps: install them by hand with: apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  # An update first: a fresh machine's package lists may be stale or empty.
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "install-deps: done"
fi

# The environment is complete once its stamp exists (written after pip succeeded); a half-made one
# from an interrupted run is made again. Not moved into place: a virtual environment's scripts name
# its path.
if [ "${FLOTILLA_KUBERNETES_DEPS:-0}" = 1 ] && [ ! -e "$kubernetes_validate_dir/.installed" ]; then
  echo "install-deps: installing kubernetes-validate $kubernetes_validate_version from PyPI into $kubernetes_validate_dir"
  rm -rf "$kubernetes_validate_dir"
  mkdir -p "$(dirname "$kubernetes_validate_dir")"
  if ! /usr/bin/python3 -m venv "$kubernetes_validate_dir" ||
    ! "$kubernetes_validate_dir/bin/pip" install -q --disable-pip-version-check \
      "kubernetes-validate==$kubernetes_validate_version"; then
    rm -rf "$kubernetes_validate_dir"
    echo "install-deps: could not install kubernetes-validate $kubernetes_validate_version (is PyPI reachable?)" >&2
    exit 1
  fi
  touch "$kubernetes_validate_dir/.installed"
  echo "install-deps: done"
fi
