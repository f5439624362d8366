# Vigil — the two commands a new user needs are `make demo` and `make test`.
# Both install what is missing (Debian 12, as root), build, and run.

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= /var/cache/vigil/target
CARGO ?= cargo
RELEASE_DIR := $(CARGO_TARGET_DIR)/release

.PHONY: all deps build build-release demo test test-unit test-host test-vm lint bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --all-targets

build-release: deps
	$(CARGO) build --release --workspace --bins

## demo: run the sensor on this host against a short real workload and show the events.
demo: build-release
	@scripts/demo.sh $(RELEASE_DIR)

## test: every suite: lint, unit, host-kernel system tests, VM-kernel tests.
test: deps lint test-unit test-host test-vm
	@echo "make test: all suites passed"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-unit: deps
	$(CARGO) test --workspace --exclude vigil-e2e

## test-host: system tests on the host kernel (root): real sensor, real processes.
test-host: build-release
	VIGIL_BIN_DIR=$(RELEASE_DIR) $(CARGO) test --release -p vigil-e2e -- --test-threads=1 --skip vm_

## test-vm: the e2e suite inside Debian's kernel under qemu (kprobes, BPF-LSM, trampolines).
test-vm: build-release
	e2e/vm/run.sh

## bench: overhead of the sensor on a fork+exec storm (ratios; not pass/fail); policy
## distribution to 500 simulated sensors.
bench: build-release
	@e2e/bench/exec-storm.sh $(RELEASE_DIR)
	@e2e/bench/open-storm.sh $(RELEASE_DIR)
	@e2e/bench/policy-sync.sh $(RELEASE_DIR)

clean:
	$(CARGO) clean
