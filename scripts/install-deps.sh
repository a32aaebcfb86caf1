#!/usr/bin/env bash
# Installs the system packages Flotilla's build, tests and benchmarks need; does nothing when
# they are all present, so `make run` / `make test` can call it every time.
set -euo pipefail

# The Debian packages, and the command or file that shows each is installed.
packages=(
  "libnghttp2-dev:/usr/include/nghttp2/nghttp2.h"
  "pkg-config:pkg-config"
  "nghttp2-client:h2load"
  "nghttp2-server:nghttpd"
  "curl:curl"
  "iproute2:ip"
  "iptables:iptables"
)
if [ "${FLOTILLA_BENCH_DEPS:-0}" = 1 ]; then
  packages+=("etcd-server:etcd" "etcd-client:etcdctl")
fi
# The container cluster and its test (scripts/cluster.sh, scripts/test-containers.sh): Debian's
# Docker 20.10 and the v1 docker-compose. Probed by dockerd, not docker: a client alone is not enough.
if [ "${FLOTILLA_CONTAINER_DEPS:-0}" = 1 ]; then
  packages+=("docker.io:dockerd" "docker-compose:docker-compose")
fi

missing=()
for entry in "${packages[@]}"; do
  pkg=${entry%%:*}
  probe=${entry#*:}
  if [[ $probe == /* ]]; then
    [ -e "$probe" ] || missing+=("$pkg")
  else
    command -v "$probe" >/dev/null 2>&1 || missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

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
