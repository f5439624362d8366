#!/usr/bin/env bash
# Benchmark (not a test): policy distribution to many sensors. Starts `vigil-operator run` in
# GitOps mode and COUNT simulated sensors (vigil-e2e-fake-sensors: one stream each, Hello, ACK
# everything), then changes a manifest ROUNDS times and prints the time from the change to the
# last ACK (which includes the operator's 500 ms directory poll). Never fails on timing.
set -euo pipefail
BIN=${1:?usage: policy-sync.sh BIN_DIR}
COUNT=${COUNT:-500}
ROUNDS=${ROUNDS:-5}
work=$(mktemp -d /tmp/vigil-bench-sync.XXXXXX)
op=
trap 'if [ -n "$op" ]; then kill "$op" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
mkdir -p "$work/policies"
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(freeport)
mport=$(freeport)
ulimit -n 65536 2>/dev/null || true
"$BIN/vigil-operator" run --policy-dir "$work/policies" --grpc-address "127.0.0.1:$port" \
  --metrics-address "127.0.0.1:$mport" --log-level warn 2>"$work/operator.log" &
op=$!
for _ in $(seq 200); do grep -q "vigil-operator: ready" "$work/operator.log" && break; sleep 0.05; done
grep -q "vigil-operator: ready" "$work/operator.log" || { cat "$work/operator.log"; exit 1; }
echo "== policy sync: $COUNT simulated sensors, $ROUNDS manifest changes"
"$BIN/vigil-e2e-fake-sensors" "127.0.0.1:$port" "$COUNT" "$work/policies" "$ROUNDS"
# The operator's own view, without the directory poll: upsert → last ACK of that version.
curl -s "http://127.0.0.1:$mport/metrics" | awk '
  /^vigil_operator_push_latency_seconds_sum/ {s=$2}
  /^vigil_operator_push_latency_seconds_count/ {c=$2}
  END { if (c > 0) printf "operator push latency (upsert → last ACK, no poll): mean %.1f ms over %d versions\n", s/c*1000, c }'
echo "operator RSS: $(awk '/VmRSS/{print $2, $3}' /proc/$op/status)"
