# Flotilla's two commands (`make run`, `make test`) plus the benchmarks. Every target that needs
# system packages installs what is missing first (scripts/install-deps.sh is idempotent).
SWIFT ?= swift
SWIFT_FORMAT ?= swift format
# Where `make run` keeps the local cluster's data and logs.
DIR ?= .flotilla

.PHONY: all deps build release run run-qemu test test-runbook lint format bench clean container-image container-image-qemu cluster-up cluster-down cluster-status test-containers validate-kubernetes

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product flotilla

# A local 3-node cluster on 127.0.0.1 (client API 7101-7103); Ctrl-C stops it cleanly.
run: release
	.build/release/flotilla local up --dir $(DIR)

# The same with the demo VMs as real guests in QEMU (software emulation where KVM does not run
# guests): installs QEMU, a Debian kernel and busybox-static, builds the small guest (docs/qemu.md).
run-qemu: release
	@FLOTILLA_QEMU_DEPS=1 ./scripts/install-deps.sh
	./scripts/build-test-guest.sh .build/test-guest
	.build/release/flotilla local up --dir $(DIR) --driver qemu --guest .build/test-guest

lint:
	$(SWIFT_FORMAT) lint --strict --recursive Package.swift Sources Tests

format:
	$(SWIFT_FORMAT) format --in-place --recursive Package.swift Sources Tests

# The QEMU tests boot a small real guest (kernel + busybox initramfs) built here from Debian's packages.
# test-runbook.sh runs the runbook in docs/operations.md against local clusters (under a minute).
test: deps lint validate-kubernetes
	@FLOTILLA_QEMU_DEPS=1 ./scripts/install-deps.sh
	./scripts/build-test-guest.sh .build/test-guest
	$(SWIFT) build --build-tests
	./scripts/run-tests.sh
	./scripts/test-runbook.sh
	./scripts/test-containers.sh
	./scripts/test-runbook.sh --compose

# The runbook on its own (docs/operations.md): its `# runbook` blocks against local clusters.
test-runbook: deps
	$(SWIFT) build --product flotilla
	./scripts/test-runbook.sh

# Containers (docs/containers.md): the image from the release binary built here, no base image or
# registry needed; a compose cluster of NODES (3 or 5) containers, API on 127.0.0.1:7301..730N.
NODES ?= 3

container-image: release
	@FLOTILLA_CONTAINER_DEPS=1 ./scripts/install-deps.sh
	@./scripts/dockerd.sh start
	./scripts/container-image.sh .build/release/flotilla

# The same with this machine's QEMU inside, tagged flotilla:qemu, for nodes that run real guests
# (TCG; KVM with cluster-config/compose-N-kvm.yml). `FLOTILLA_WITH_QEMU=1 make cluster-up` makes
# such an image (as flotilla:latest) and starts a cluster of it.
container-image-qemu: release
	@FLOTILLA_CONTAINER_DEPS=1 FLOTILLA_QEMU_DEPS=1 ./scripts/install-deps.sh
	@./scripts/dockerd.sh start
	FLOTILLA_WITH_QEMU=1 ./scripts/container-image.sh .build/release/flotilla flotilla:qemu

# FLOTILLA_BINARY=PATH packages that binary instead of building a release (the runbook test does).
cluster-up: $(if $(FLOTILLA_BINARY),deps,release)
	NODES=$(NODES) ./scripts/cluster.sh up

cluster-down:
	NODES=$(NODES) ./scripts/cluster.sh down

cluster-status:
	@NODES=$(NODES) ./scripts/cluster.sh status

# The container test on its own (needs root): a 3-node compose cluster with QEMU in the image, the
# leader SIGKILLed with a real guest on it.
test-containers: deps
	$(SWIFT) build --product flotilla
	./scripts/test-containers.sh
	./scripts/test-runbook.sh --compose

# The Kubernetes manifests (cluster-config/kubernetes/) against the Kubernetes schemas, strictly,
# with kubernetes-validate from PyPI; no cluster needed (docs/kubernetes.md).
validate-kubernetes:
	@FLOTILLA_KUBERNETES_DEPS=1 ./scripts/install-deps.sh
	./scripts/validate-kubernetes.sh

# Benchmarks print markdown tables; docs/benchmarks.md records them with the commands.
bench:
	@FLOTILLA_BENCH_DEPS=1 ./scripts/install-deps.sh
	@for script in scripts/bench-*.sh; do echo "== $$script"; "$$script" || exit 1; done

clean:
	rm -rf .build
