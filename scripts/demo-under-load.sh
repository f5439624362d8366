#!/usr/bin/env bash
# `make test-demo`: the README's `make demo` as a newcomer meets it on a machine that is busy
# with something else — two CPU-bound loops run for the whole demo. Passes when the demo
# succeeds and shows what the README promises: processes, file access, a TCP connection, a
# process killed by the Sigkill policy, a clean stop.
set -euo pipefail
BIN=${1:?usage: demo-under-load.sh BIN_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
busy=()
for _ in 1 2; do
  (while :; do :; done) &
  busy+=("$!")
done
trap 'kill "${busy[@]}" 2>/dev/null || true' EXIT
log=$(mktemp /tmp/vigil-demo-under-load.XXXXXX)
start=$(date +%s)
if ! timeout 900 "$here/scripts/demo.sh" "$BIN" >"$log" 2>&1; then
  cat "$log"
  echo "test-demo: make demo failed with two busy loops running"
  exit 1
fi
missing=0
for want in "sensor ready" "whoami" "/tmp/vigil-demo/notes.txt" "🔌 connect" \
            "was killed by sigkill-enforce: exit 137" "the sensor stopped cleanly"; do
  grep -qF -- "$want" "$log" || { echo "test-demo: the demo's output lacks: $want"; missing=1; }
done
if ((missing)); then
  cat "$log"
  exit 1
fi
echo "test-demo: make demo passed in $(( $(date +%s) - start )) s with two busy loops running"
rm -f "$log"
