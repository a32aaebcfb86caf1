# Flotilla's two commands (`make run`, `make test`) plus the benchmarks. Every target that needs
# system packages installs what is missing first (scripts/install-deps.sh is idempotent).
SWIFT ?= swift
SWIFT_FORMAT ?= swift format

.PHONY: all deps build release run test lint format bench clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product flotilla

run: release
	.build/release/flotilla --help

lint:
	$(SWIFT_FORMAT) lint --strict --recursive Package.swift Sources Tests

format:
	$(SWIFT_FORMAT) format --in-place --recursive Package.swift Sources Tests

test: deps lint
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

bench:
	@FLOTILLA_BENCH_DEPS=1 ./scripts/install-deps.sh
	@echo "no benchmarks yet"

clean:
	rm -rf .build
