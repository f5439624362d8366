#!/usr/bin/env bash
# Benchmark (not a test, not in `make bench`): two builds of the sensor side by side — e.g. before
# and after a change to the hook programs — with a never-matching Prefix policy on openat+close,
# on an open/close storm; a baseline without a sensor. Rounds alternate (and alternate the order
# of the two builds); medians and ratios printed, never a failure on timing.
# Usage: ab-open-storm.sh BIN_DIR_A BIN_DIR_B (each holding vigil-sensor; B's workload is used).
set -euo pipefail
A_BIN=${1:?usage: ab-open-storm.sh BIN_DIR_A BIN_DIR_B}
B_BIN=${2:?usage: ab-open-storm.sh BIN_DIR_A BIN_DIR_B}
N=${N:-200000}; ROUNDS=${ROUNDS:-7}
work=$(mktemp -d /tmp/vigil-ab-bench.XXXXXX)
sensor=
trap 'kill "$sensor" 2>/dev/null || true; rm -rf "$work"' EXIT
target=$work/target.txt; echo data >"$target"
# shellcheck source=storm-policy.sh
. "$(dirname "$0")/storm-policy.sh"
storm_policy nomatch /nonexistent/vigil-bench/ >"$work/nomatch.yaml"
storm() { "$B_BIN/vigil-e2e-workload" open-storm "$N" "$target"; }
start() {
  "$1/vigil-sensor" --instance "ab-bench-$$" --keep-enforcing-on-exit=false --grpc-socket "" \
    --policy "$work/nomatch.yaml" --log-level warn 2>"$work/log" >/dev/null &
  sensor=$!
  for _ in $(seq 1 600); do grep -q "ready, listening" "$work/log" && return 0; sleep 0.1; done
  cat "$work/log"; exit 1
}
stop() { kill -TERM "$sensor"; wait "$sensor" || true; sensor=; }
b=(); o=(); n=()
for r in $(seq 1 "$ROUNDS"); do
  b+=("$(storm)")
  if (( r % 2 )); then start "$A_BIN"; o+=("$(storm)"); stop; start "$B_BIN"; n+=("$(storm)"); stop
  else start "$B_BIN"; n+=("$(storm)"); stop; start "$A_BIN"; o+=("$(storm)"); stop; fi
done
python3 - "${b[*]}" "${o[*]}" "${n[*]}" <<'PY'
import sys, statistics as s
b, o, n = ([int(x) for x in a.split()] for a in sys.argv[1:])
mb, mo, mn = s.median(b), s.median(o), s.median(n)
print(f"baseline        median {mb/1e6:8.1f} ms")
print(f"sensor A        median {mo/1e6:8.1f} ms  ratio {mo/mb:.3f}")
print(f"sensor B        median {mn/1e6:8.1f} ms  ratio {mn/mb:.3f}")
print(f"B/A {mn/mo:.3f}")
PY
