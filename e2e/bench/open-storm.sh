#!/usr/bin/env bash
# Benchmark (not a test): cost of a file policy on an open/close storm, side by side in one run.
#   1. no sensor (baseline);
#   2. the sensor with a policy on openat and close whose Prefix never matches (the kernel
#      filters everything: the price of a policy on hot syscalls that match nothing);
#   3. the sensor with a policy that posts every open and close of the file (events/s sustained,
#      loss counted by the kernel).
# Prints ratios; never fails on timing.
set -euo pipefail
BIN=${1:?usage: open-storm.sh BIN_DIR}
N=${N:-200000}
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d /tmp/vigil-bench.XXXXXX)
trap 'kill "$sensor" 2>/dev/null || true; rm -rf "$work"' EXIT
sensor=
target=$work/target.txt
echo data >"$target"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# shellcheck source=storm-policy.sh
. "$(dirname "$0")/storm-policy.sh"
storm_policy nomatch /nonexistent/vigil-bench/ >"$work/nomatch.yaml"
storm_policy match "$target" >"$work/match.yaml"

storm() { "$BIN/vigil-e2e-workload" open-storm "$N" "$target"; }

start_sensor() { # POLICY
  rm -f "$work/events.json"
  "$BIN/vigil-sensor" --export-file "$work/events.json" --export-file-max-size-mb 4000 \
    --instance "bench-$$" --keep-enforcing-on-exit=false \
    --grpc-socket "" --metrics-address "127.0.0.1:$port" --policy "$work/$1.yaml" \
    --log-level warn 2>"$work/sensor.log" &
  sensor=$!
  for _ in $(seq 1 600); do
    grep -q "ready, listening for events" "$work/sensor.log" && return 0
    kill -0 "$sensor" 2>/dev/null || break
    sleep 0.1
  done
  echo "sensor did not start"; cat "$work/sensor.log"; exit 1
}
stop_sensor() { kill -TERM "$sensor"; wait "$sensor" || true; sensor=; }
metric() { # exact series name with labels; 0 when absent
  python3 - "$port" "$1" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(sys.argv[2] + " "))))
PY
}

echo "open/close storm: $N opens+closes of one file, $ROUNDS rounds"
b=0; nm=0; m=0; posted=0; lost=0
for r in $(seq 1 "$ROUNDS"); do
  t=$(storm); b=$((b + t))
  start_sensor nomatch; t=$(storm); nm=$((nm + t)); stop_sensor
  start_sensor match; t=$(storm); m=$((m + t))
  sleep 1.5 # let the 1 s policy-counter mirror catch up
  posted=$((posted + $(metric 'vigil_policy_actions_total{policy="match",action="post"}')))
  lost=$((lost + $(metric 'vigil_policy_events_lost_total{policy="match"}')))
  stop_sensor
  echo "round $r done"
done
python3 - "$b" "$nm" "$m" "$posted" "$lost" "$N" "$ROUNDS" <<'PY'
import sys
b, nm, m, posted, lost, n, rounds = map(int, sys.argv[1:])
ms = lambda ns: ns / rounds / 1e6
print(f"baseline            {ms(b):8.1f} ms")
print(f"non-matching policy {ms(nm):8.1f} ms  ratio {nm / b:.3f} ({100 * (nm - b) / b:+.1f}%)")
print(f"posting policy      {ms(m):8.1f} ms  ratio {m / b:.3f} ({100 * (m - b) / b:+.1f}%)")
want = 2 * n * rounds
rate = posted / (m / 1e9) if m else 0
print(f"posting policy: {posted} events posted of {want} calls ({rate:,.0f} events/s), {lost} lost (counted)")
PY
