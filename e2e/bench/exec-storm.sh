#!/usr/bin/env bash
# Benchmark (not a test): wall time of a fork+exec storm with and without vigil-sensor running,
# measured side by side in one run, and the sensor's RSS across 5 storms (100 000 short-lived
# processes with the default N). Prints ratios and sizes; never fails on timing.
set -euo pipefail
BIN=${1:?usage: exec-storm.sh BIN_DIR}
N=${N:-20000}
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d /tmp/vigil-bench.XXXXXX)
trap 'kill "$sensor" 2>/dev/null || true; rm -rf "$work"' EXIT
sensor=

storm() {
  local t0 t1
  t0=$(date +%s%N)
  "$BIN/vigil-e2e-workload" exec-storm "$N" /bin/true >/dev/null
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}

start_sensor() {
  "$BIN/vigil-sensor" --export-file "$work/events.json" --export-file-max-size-mb 1000 \
    --instance "bench-$$" --keep-enforcing-on-exit=false \
    --log-level warn 2>"$work/sensor.log" &
  sensor=$!
  for _ in $(seq 1 600); do
    grep -q "ready, listening for events" "$work/sensor.log" && return 0
    sleep 0.1
  done
  echo "sensor did not start"; cat "$work/sensor.log"; exit 1
}

echo "exec storm: $N fork+exec of /bin/true, $ROUNDS rounds each, alternating"
base_total=0; with_total=0
for r in $(seq 1 "$ROUNDS"); do
  b=$(storm)
  start_sensor
  w=$(storm)
  kill -TERM "$sensor"; wait "$sensor" || true; sensor=
  echo "round $r: baseline ${b} ms, with sensor ${w} ms"
  base_total=$((base_total + b)); with_total=$((with_total + w))
done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$sensor/status"; }

python3 -c "b=$base_total; w=$with_total; print(f'baseline {b/$ROUNDS:.0f} ms, with sensor {w/$ROUNDS:.0f} ms, ratio {w/b:.3f} (overhead {100*(w-b)/b:+.1f}%)')"

# Memory under churn: one sensor, 5 x N short-lived processes; RSS (KiB) after each batch.
start_sensor
printf 'sensor RSS under churn (KiB): start %s' "$(rss)"
for b in 1 2 3 4 5; do
  storm >/dev/null
  printf ', after %dx%d %s' "$b" "$N" "$(rss)"
done
echo
kill -TERM "$sensor"; wait "$sensor" || true; sensor=
