#!/usr/bin/env bash
# Benchmark (not a test): the sensor's user-space event path without the kernel. Replays N
# synthetic ring-buffer records of the file-open mix (a few exec records, then sys_openat hook
# records with a path, as examples/policies/file-access.yaml produces) through the pipeline
# in-process: decode, + process cache, + event building, + JSON, + file write, each timed on
# its own, then the whole Pipeline::handle_bytes path with the export queue and its writer
# thread. One line per stage (events/s, ns/event, events per CPU-second) and the whole path's
# loss count. Everything runs pinned to one CPU (PIN_CPU=none to leave it unpinned).
# Never fails on timing. Builds the bench binary in release with cargo.
set -euo pipefail
BIN=${1:?usage: pipeline.sh BIN_DIR}
N=${N:-1000000}
cd "$(dirname "$0")/../.."
${CARGO:-cargo} build --release --quiet -p vigil-sensor --example pipeline_bench
"$BIN/examples/pipeline_bench" "$N"
