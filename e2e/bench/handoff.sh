#!/usr/bin/env bash
# Benchmark (not a test): a sensor restart with 10 policies loaded. Time from `kill -9` of the
# running sensor to the next one being ready having taken the programs over (nothing verified or
# attached again), against a cold start of the same configuration. Medians of ROUNDS; prints
# figures, never fails on timing.
set -euo pipefail
BIN=${1:?usage: handoff.sh BIN_DIR}
ROUNDS=${ROUNDS:-5}
work=$(mktemp -d /tmp/vigil-bench.XXXXXX)
instance="bench-handoff-$$"
trap 'kill -9 "$sensor" 2>/dev/null || true; "$BIN/vigil-sensor" cleanup --instance "$instance" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
sensor=
args=()
i=0
for call in openat close connect execve unlinkat renameat2 mkdirat fchmodat setuid ptrace; do
  cat >"$work/p$i.yaml" <<YAML
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: p$i
spec:
  kprobes:
  - call: sys_$call
    syscall: true
    args: [{index: 0, type: int}]
    selectors: [{matchArgs: [{index: 0, operator: Equal, values: ["-12345"]}]}]
YAML
  args+=(--policy "$work/p$i.yaml")
  i=$((i + 1))
done

took=0
start() { # sets $sensor and $took (ms from exec to ready)
  rm -f "$work/sensor.log" "$work/v.sock"
  local t0 t1
  t0=$(date +%s%N)
  "$BIN/vigil-sensor" --instance "$instance" --export-file "$work/events.json" \
    --grpc-socket "$work/v.sock" --log-level warn "${args[@]}" >/dev/null 2>"$work/sensor.log" &
  sensor=$!
  until grep -qs "ready, listening for events" "$work/sensor.log"; do
    kill -0 "$sensor" 2>/dev/null || { cat "$work/sensor.log" >&2; exit 1; }
    sleep 0.002
  done
  t1=$(date +%s%N)
  took=$(((t1 - t0) / 1000000))
}

echo "restart with 10 syscall policies, $ROUNDS rounds"
cold=(); warm=()
for r in $(seq 1 "$ROUNDS"); do
  "$BIN/vigil-sensor" cleanup --instance "$instance" >/dev/null
  start; c=$took; cold+=("$c")
  kill -9 "$sensor"; wait "$sensor" 2>/dev/null || true
  k=$(date +%s%N)
  start; w0=$took
  w=$(( ($(date +%s%N) - k) / 1000000 ))
  warm+=("$w")
  kill -9 "$sensor"; wait "$sensor" 2>/dev/null || true
  echo "round $r: cold start ${c} ms; kill -9 to ready (taken over) ${w} ms (exec to ready ${w0} ms)"
done
python3 - "${cold[@]}" -- "${warm[@]}" <<'PY'
import statistics, sys
a = sys.argv[1:]
i = a.index("--")
cold, warm = list(map(int, a[:i])), list(map(int, a[i + 1:]))
c, w = statistics.median(cold), statistics.median(warm)
print(f"median: cold start {c:.0f} ms; kill -9 to ready with 10 policies taken over {w:.0f} ms "
      f"(goal <= 300 ms); ratio {w / c:.2f}")
PY
