#!/usr/bin/env bash
# Builds Flotilla's container image from a release binary already built on this machine, with no
# base image and no network: the binary, its shared libraries and the loader go into a minimal
# root file system (scripts/container-rootfs.sh) that `docker import` turns into the image.
#
#   container-image.sh [BINARY] [TAG]     defaults: .build/release/flotilla, flotilla:latest
#
# FLOTILLA_WITH_QEMU=1 adds this machine's QEMU (container-rootfs.sh --with-qemu), so the nodes can
# run real guests: under TCG in any container, under KVM where the container is given /dev/kvm.
# The image runs `flotilla node` by default, like the Dockerfile's; see docs/containers.md.
# Where base images can be pulled, `docker build .` with the Dockerfile makes the same image.
set -euo pipefail

cd "$(dirname "$0")/.."
binary=${1:-.build/release/flotilla}
tag=${2:-${FLOTILLA_IMAGE:-flotilla:latest}}
docker=$(command -v /usr/bin/docker || command -v docker || true)
[ -n "$docker" ] || { echo "container-image: no docker client; run FLOTILLA_CONTAINER_DEPS=1 scripts/install-deps.sh" >&2; exit 1; }
"$docker" info >/dev/null 2>&1 || { echo "container-image: dockerd is not answering; start it with scripts/dockerd.sh start" >&2; exit 1; }

rootfs_options=()
case ${FLOTILLA_WITH_QEMU:-0} in
0) ;;
1) rootfs_options+=(--with-qemu) ;;
*) echo "container-image: FLOTILLA_WITH_QEMU is \"$FLOTILLA_WITH_QEMU\"; give 1 (with QEMU) or 0" >&2; exit 2 ;;
esac

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
./scripts/container-rootfs.sh ${rootfs_options[@]+"${rootfs_options[@]}"} "$binary" "$root"
contents="from $binary"
if [ -x "$root/usr/bin/qemu-system-x86_64" ]; then
  contents+=", with $(/usr/bin/qemu-system-x86_64 --version | head -n 1)"
fi
# The same configuration as the Dockerfile's runtime stage (its STOPSIGNAL is the default, SIGTERM,
# which `docker import --change` cannot set): the user flotilla (10001, made by container-rootfs.sh),
# listening on every address of the container, healthy while `/readyz` says ready.
tar -C "$root" --numeric-owner -c . | "$docker" import \
  --change 'ENTRYPOINT ["/usr/local/bin/flotilla"]' \
  --change 'CMD ["node"]' \
  --change 'WORKDIR /var/lib/flotilla' \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'ENV FLOTILLA_PEER_ADDRESS=0.0.0.0:7201 FLOTILLA_CLIENT_ADDRESS=0.0.0.0:7101' \
  --change 'EXPOSE 7101 7201' \
  --change 'USER 10001:10001' \
  --change 'HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["/usr/local/bin/flotilla", "ready", "--api", "127.0.0.1:7101"]' \
  --message "flotilla $("$binary" --version) $contents" \
  - "$tag" >/dev/null
echo "container-image: built $tag ($(du -sh "$root" | cut -f1) $contents)"
