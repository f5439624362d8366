# Vigil — the two commands a new user needs are `make demo` and `make test`.
# Both install what is missing (Debian 12, as root), build, and run.

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= /var/cache/vigil/target
CARGO ?= cargo
RELEASE_DIR := $(CARGO_TARGET_DIR)/release

.PHONY: all deps build build-release demo test test-unit test-host test-demo test-vm lint bench images deb fuzz clean

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

## test: every suite: lint, unit, host-kernel system tests, the demo on a busy machine,
## VM-kernel tests.
test: deps lint test-unit test-host test-demo test-vm
	@echo "make test: all suites passed"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-unit: deps
	$(CARGO) test --workspace --exclude vigil-e2e

## test-host: system tests on the host kernel (root): real sensor, real processes; the cluster
## suites (k8s_*: kube-apiserver + etcd on loopback, kubectl, helm) and the packaging checks
## (package_*: make images, make deb) run here too.
test-host: build-release
	VIGIL_BIN_DIR=$(RELEASE_DIR) $(CARGO) test --release -p vigil-e2e -- --test-threads=1 --skip vm_

## test-demo: `make demo` as a newcomer meets it, with two CPU-bound loops running.
test-demo: build-release
	scripts/demo-under-load.sh $(RELEASE_DIR)

## test-vm: the kernel matrix: the e2e suite inside Debian's 5.10, 6.1 and 6.12 kernels under
## qemu (kprobes, BPF-LSM, trampolines), one VM at a time (docs/testing.md).
test-vm: build-release
	e2e/vm/matrix.sh

## bench: start time and verifier cost of the programs; overhead of the sensor on a fork+exec
## storm and an open/close storm (ratios; not pass/fail) and where the latter goes (perf call
## graphs); policy distribution to 500 simulated sensors; the user-space event path per stage
## (decode → cache → event → JSON → file) on a replay of recorded-format ring-buffer records,
## in-process, on one CPU.
bench: build-release
	@e2e/bench/startup.sh $(RELEASE_DIR)
	@e2e/bench/handoff.sh $(RELEASE_DIR)
	@e2e/bench/exec-storm.sh $(RELEASE_DIR)
	@e2e/bench/open-storm.sh $(RELEASE_DIR)
	@e2e/bench/open-storm-profile.sh $(RELEASE_DIR)
	@e2e/bench/policy-sync.sh $(RELEASE_DIR)
	@CARGO="$(CARGO)" e2e/bench/pipeline.sh $(RELEASE_DIR)

## images: the sensor and operator container images (buildah, FROM scratch + the binaries), as
## OCI archives in $(CARGO_TARGET_DIR)/images, named as the Helm chart's defaults.
images: build-release
	scripts/build-images.sh --bin-dir $(RELEASE_DIR) --out $(CARGO_TARGET_DIR)/images

## deb: a Debian package (binaries + vigil-sensor.service) in $(CARGO_TARGET_DIR)/deb.
deb: build-release
	scripts/build-deb.sh --bin-dir $(RELEASE_DIR) --out $(CARGO_TARGET_DIR)/deb

## fuzz: property tests of the policy parser (api/tests/fuzz_policy.rs), the record decoder and
## the IR decoder (sensor/tests/fuzz_decoders.rs): 200 000 generated cases for each of the six
## targets, 1 200 000 in all, with the fixed seed (VIGIL_FUZZ_SEED=N for another). `make test`
## runs the same targets with 2 000 cases each. Then the kernel-vs-evaluator differential test
## (e2e/tests/differential.rs, root) with DIFF_RUNS random seeds of 7 policies x DIFF_CALLS calls;
## `make test` runs it once with the fixed seed and 500 calls (3 500 cases).
FUZZ_CASES ?= 200000
DIFF_RUNS ?= 5
DIFF_CALLS ?= 1500
fuzz: build-release
	VIGIL_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release -p vigil-api --test fuzz_policy -- --nocapture
	VIGIL_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release -p vigil-sensor --test fuzz_decoders -- --nocapture
	for i in $$(seq $(DIFF_RUNS)); do \
		VIGIL_DIFF_SEED=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ') VIGIL_DIFF_CALLS=$(DIFF_CALLS) \
		VIGIL_BIN_DIR=$(RELEASE_DIR) $(CARGO) test --release -p vigil-e2e --test differential -- --nocapture \
			|| exit 1; \
	done

clean:
	$(CARGO) clean
