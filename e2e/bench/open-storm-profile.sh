#!/usr/bin/env bash
# Benchmark (not a test): where the time a never-matching file policy adds to an open/close storm
# goes. Runs the storm of open-storm.sh under `perf record -g` with the sensor and the policy on
# sys_openat (string Prefix) and sys_close (fd Prefix: the fd resolved to its path), and splits the
# samples by call graph:
#   - the kernel's syscall-tracepoint path (syscall_trace_enter and below): what Vigil adds;
#     within it the BPF programs (trace_call_bpf and below), and within those the argument reads
#     (vigil_read_arg), the path walk (vigil_path_walk), user-string reads and the filters;
#   - everything else: the storm's own work, the baseline.
# Shares are printed as fractions of the baseline (0.50× = the storm takes half as long again);
# 1 + the added share estimates the ratio open-storm.sh measures by wall clock (a little lower:
# caches the programs disturb show up in the baseline's share). Needs perf (Debian's linux-perf,
# installed when missing and run as root).
set -euo pipefail
BIN=${1:?usage: open-storm-profile.sh BIN_DIR}
N=${N:-300000}
if ! command -v perf >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "open-storm-profile: installing linux-perf"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
  else
    echo "open-storm-profile: perf not found (Debian: linux-perf); skipped"
    exit 0
  fi
fi
work=$(mktemp -d /tmp/vigil-bench.XXXXXX)
sensor=
trap '[[ -n $sensor ]] && kill "$sensor" 2>/dev/null; rm -rf "$work"' EXIT
target=$work/target.txt
echo data >"$target"
# shellcheck source=storm-policy.sh
. "$(dirname "$0")/storm-policy.sh"
storm_policy nomatch /nonexistent/vigil-bench/ >"$work/nomatch.yaml"
"$BIN/vigil-sensor" --export-file "$work/events.json" --instance "bench-$$" \
  --keep-enforcing-on-exit=false --grpc-socket "" --metrics-address 127.0.0.1:0 \
  --policy "$work/nomatch.yaml" --log-level warn 2>"$work/sensor.log" &
sensor=$!
for _ in $(seq 1 600); do
  grep -q "ready, listening for events" "$work/sensor.log" && break
  kill -0 "$sensor" 2>/dev/null || { cat "$work/sensor.log"; exit 1; }
  sleep 0.1
done
grep -q "ready, listening for events" "$work/sensor.log" || { echo "sensor did not start"; exit 1; }
perf record -q -g -o "$work/perf.data" -- "$BIN/vigil-e2e-workload" open-storm "$N" "$target" >/dev/null
kill -TERM "$sensor"; wait "$sensor" || true; sensor=
perf report -i "$work/perf.data" --children --sort sym --stdio -g none 2>/dev/null >"$work/report.txt"
python3 - "$work/report.txt" "$N" <<'PY'
import re, sys
share = {}
for line in open(sys.argv[1]):
    m = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[k\]\s+(\S+)", line)
    if not m:
        continue
    name = re.sub(r"^bpf_prog_[0-9a-f]+_", "", m.group(2))
    share[name] = share.get(name, 0.0) + float(m.group(1))
get = lambda k: share.get(k, 0.0)
added = get("syscall_trace_enter") + get("syscall_exit_work")
base = 100.0 - added
if base <= 0 or added == 0:
    sys.exit("open-storm-profile: no syscall-tracepoint samples: is the policy loaded?")
x = lambda pct: pct / base
progs = get("trace_call_bpf")
rows = [
    ("added by the policy, in all", added),
    ("  tracepoint path outside the programs", added - progs),
    ("  BPF programs (trace_call_bpf and below)", progs),
    ("    argument reads (vigil_read_arg)", get("vigil_read_arg")),
    ("      fd path walk (vigil_path_walk)", get("vigil_path_walk")),
    ("      user string reads", get("bpf_probe_read_user_str")),
    ("    matchArgs (vigil_filter_arg)", get("vigil_filter_arg")),
]
print(f"open/close storm, never-matching policy, {sys.argv[2]} opens+closes, perf call graphs")
print(f"  estimated ratio to no sensor: {100.0 / base:.2f}x")
for label, pct in rows:
    print(f"  {label:<44} {x(pct):5.2f}x of the baseline ({pct:4.1f}% of samples)")
PY
