# Flotilla's container image: a builder stage compiles `flotilla` in release mode; the runtime stage
# holds only the binary and the shared libraries it links (docs/containers.md).
#
#   docker build -t flotilla:latest .
#   docker build --build-arg BUILDER_IMAGE=swift:6.3-bookworm --build-arg RUNTIME_IMAGE=debian:bookworm-slim .
#   docker build -t flotilla:qemu --build-arg WITH_QEMU=1 .    # with Debian's QEMU, for real guests
#
# The base images are arguments because some machines cannot pull them: there, build the binary
# on the host and make the image with scripts/container-image.sh (no base image, no network).
# Both stages must be the same Debian release: the runtime stage uses its own glibc.
ARG BUILDER_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS builder
# libnghttp2-dev for the HTTP/2 module, pkg-config to find it; skipped when the image has them.
RUN if [ ! -e /usr/include/nghttp2/nghttp2.h ] || ! command -v pkg-config >/dev/null; then \
      apt-get update -q && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libnghttp2-dev pkg-config && \
      rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
# The manifest first, so the dependency checkout is cached while only sources change.
COPY Package.swift ./
RUN swift package resolve
COPY Sources Sources
COPY Tests Tests
COPY scripts/container-rootfs.sh scripts/
RUN swift build -c release --product flotilla \
    && scripts/container-rootfs.sh --without-base .build/release/flotilla /rootfs

FROM ${RUNTIME_IMAGE}
# WITH_QEMU=1: Debian's QEMU (qemu-system-x86 with its firmware) for the nodes' real guests
# (docs/qemu.md), at /usr/bin/qemu-system-x86_64 where the node runs it; the image that
# scripts/container-image.sh makes with FLOTILLA_WITH_QEMU=1. Before the binary, so this layer is
# reused while only the binary changes.
ARG WITH_QEMU=0
RUN if [ "$WITH_QEMU" = 1 ]; then \
      apt-get update -q && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86 && \
      rm -rf /var/lib/apt/lists/* && \
      qemu-system-x86_64 --version; \
    fi
# The binary at /usr/local/bin/flotilla and its libraries (the Swift runtime, Foundation,
# libnghttp2) at the paths they had in the builder; glibc and libstdc++ are the runtime image's own.
COPY --from=builder /rootfs/ /
# Node data (one volume per node) and the Cluster Shared Volumes' root (one volume shared by all),
# owned by the user the node runs as (uid and gid 10001, as scripts/container-rootfs.sh makes it), so
# new volumes mounted there are its to write: Docker copies a mount point's owner into a new volume.
RUN groupadd --gid 10001 flotilla \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/flotilla --shell /usr/sbin/nologin flotilla \
    && mkdir -p /var/lib/flotilla/data /var/lib/flotilla/shared \
    && chown 10001:10001 /var/lib/flotilla /var/lib/flotilla/data /var/lib/flotilla/shared \
    && /usr/local/bin/flotilla --version
WORKDIR /var/lib/flotilla
# Listen on every address of the container; the cluster configuration's members say where the
# others reach it. The health check below reaches the client API on 127.0.0.1.
ENV FLOTILLA_PEER_ADDRESS=0.0.0.0:7201 FLOTILLA_CLIENT_ADDRESS=0.0.0.0:7101
EXPOSE 7101 7201
STOPSIGNAL SIGTERM
USER 10001:10001
# Healthy while the node is ready (GET /readyz): it knows a leader and has applied what that leader
# had committed. The image has no shell or curl: the binary checks itself.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/flotilla", "ready", "--api", "127.0.0.1:7101"]
# `flotilla node` handles SIGTERM itself (drains, exits 0), also as PID 1.
ENTRYPOINT ["/usr/local/bin/flotilla"]
CMD ["node"]
