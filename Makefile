# Flotilla's two commands (`make run`, `make test`) plus the benchmarks. Every target that needs
# system packages installs what is missing first (scripts/install-deps.sh is idempotent).
SWIFT ?= swift
SWIFT_FORMAT ?= swift format
# Where `make run` keeps the local cluster's data and logs.
DIR ?= .flotilla

.PHONY: all deps build release run test lint format bench clean

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

lint:
	$(SWIFT_FORMAT) lint --strict --recursive Package.swift Sources Tests

format:
	$(SWIFT_FORMAT) format --in-place --recursive Package.swift Sources Tests

test: deps lint
	$(SWIFT) build --build-tests
	./scripts/run-tests.sh

# Benchmarks print markdown tables; docs/benchmarks.md records them with the commands.
bench:
	@FLOTILLA_BENCH_DEPS=1 ./scripts/install-deps.sh
	@for script in scripts/bench-*.sh; do echo "== $$script"; "$$script" || exit 1; done

clean:
	rm -rf .build
