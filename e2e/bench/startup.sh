#!/usr/bin/env bash
# Benchmark (not a test): how long the sensor takes from the start of its process to ready with
# a policy of four syscall hooks (openat, close, connect, execve), how much of that is the
# kernel verifying the hook programs, what each program costs the verifier, and the sensor's
# memory when idle. Medians of ROUNDS starts. Prints figures; never fails on timing.
set -euo pipefail
BIN=${1:?usage: startup.sh BIN_DIR}
ROUNDS=${ROUNDS:-5}
work=$(mktemp -d /tmp/vigil-bench.XXXXXX)
trap 'kill "$sensor" 2>/dev/null || true; rm -rf "$work"' EXIT
sensor=
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/four.yaml" <<'YAML'
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: four-syscalls
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors: [{matchArgs: [{index: 1, operator: Prefix, values: ["/nonexistent/"]}]}]
  - call: sys_close
    syscall: true
    args: [{index: 0, type: fd}]
    selectors: [{matchArgs: [{index: 0, operator: Prefix, values: ["/nonexistent/"]}]}]
  - call: sys_connect
    syscall: true
    return: true
    args: [{index: 0, type: sock}]
    returnArg: {index: 0, type: int}
  - call: sys_execve
    syscall: true
    args: [{index: 0, type: string}]
    selectors: [{matchArgs: [{index: 0, operator: Equal, values: ["/nonexistent"]}]}]
YAML

echo "sensor start with a four-syscall-hook policy, $ROUNDS starts"
rows=()
for r in $(seq 1 "$ROUNDS"); do
  rm -f "$work/sensor.log" "$work/v.sock"
  t0=$(date +%s%N)
  "$BIN/vigil-sensor" --export-file "$work/events.json" --grpc-socket "$work/v.sock" \
    --instance "bench-$$" --keep-enforcing-on-exit=false \
    --metrics-address "127.0.0.1:$port" --policy "$work/four.yaml" --log-level warn \
    2>"$work/sensor.log" &
  sensor=$!
  until grep -qs "ready, listening for events" "$work/sensor.log"; do
    kill -0 "$sensor" 2>/dev/null || { cat "$work/sensor.log"; exit 1; }
    sleep 0.005
  done
  t1=$(date +%s%N)
  sleep 2 # idle: let the first metrics tick pass
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$sensor/status")
  loads=$(python3 - "$port" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
hook = exec_ = 0.0
for l in text.splitlines():
    if l.startswith("vigil_bpf_program_load_seconds{"):
        v = float(l.rsplit(" ", 1)[1])
        if any(p in l for p in ('"vigil_exec"', '"vigil_fork"', '"vigil_exit"')):
            exec_ += v
        else:
            hook += v
print(f"{hook * 1000:.1f} {exec_ * 1000:.1f}")
PY
)
  kill -TERM "$sensor"; wait "$sensor" || true; sensor=
  rows+=("$(( (t1 - t0) / 1000000 )) $loads $rss")
  echo "start $r: ready in $(( (t1 - t0) / 1000000 )) ms; hook programs verified in ${loads% *} ms, process programs ${loads#* } ms; idle RSS ${rss} KiB"
done
python3 - "${rows[@]}" <<'PY'
import statistics, sys
rows = [list(map(float, r.split())) for r in sys.argv[1:]]
med = lambda i: statistics.median(r[i] for r in rows)
print(f"median: ready in {med(0):.0f} ms (goal <= 1000 ms); hook program verification {med(1):.0f} ms "
      f"(goal <= 300 ms); process programs {med(2):.0f} ms; idle RSS {med(3) / 1024:.1f} MiB")
PY
echo "every program this kernel can run, loaded once (vigil-sensor check-programs):"
"$BIN/vigil-sensor" check-programs || true
