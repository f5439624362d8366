#!/usr/bin/env bash
# `make demo`: runs vigil-sensor on this host with the example policies (examples/policies)
# against a short real workload — processes, file access, a TCP connection, an enforced Sigkill —
# and shows the event stream in compact form, then stops the sensor cleanly. Needs root (BPF).
set -euo pipefail
BIN=${1:?usage: demo.sh BIN_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/vigil-demo.XXXXXX)
events=$work/events.json
demo=/tmp/vigil-demo   # the directory the example policies watch
mkdir -p "$demo/forbidden"
trap 'kill "$sensor" 2>/dev/null || true; rm -rf "$work" "$demo"' EXIT

echo "== starting vigil-sensor (events to $events) with examples/policies"
policies=()
for p in file-access tcp-connect sigkill-enforce; do policies+=(--policy "$here/examples/policies/$p.yaml"); done
"$BIN/vigil-sensor" --export-file "$events" --enable-process-cred --log-level warn \
  --instance demo --keep-enforcing-on-exit=false \
  --grpc-socket "$work/vigil.sock" "${policies[@]}" 2>"$work/sensor.log" &
sensor=$!
for _ in $(seq 1 600); do
  grep -q "ready, listening for events" "$work/sensor.log" && break
  kill -0 "$sensor" 2>/dev/null || { cat "$work/sensor.log"; exit 1; }
  sleep 0.1
done
grep -q "ready, listening for events" "$work/sensor.log" || { echo "sensor did not start"; cat "$work/sensor.log"; exit 1; }
start=$(wc -l <"$events")
echo "== sensor ready; $start processes found running at start (procFS)"

echo "== workload"
/bin/sh -c 'whoami'
/bin/sh -c 'exit 3' || true
sleep 30 & victim=$!
sleep 0.2; kill -KILL "$victim"; wait "$victim" 2>/dev/null || true
/bin/sh -c 'head -c0 /proc/self/status'                       # root: CAP_SYS_ADMIN in its effective set
setpriv --inh-caps=-all --bounding-set=-all /bin/sh -c 'id -u' # every capability dropped
echo hello >"$demo/notes.txt"                                  # file-access: open, write, close
cat "$demo/notes.txt" >/dev/null                               # open, read, close
/usr/bin/python3 - <<'PY'                                      # tcp-connect: a loopback connection (Debian's python3)
import socket, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
t = threading.Thread(target=lambda: srv.accept()[0].recv(16)); t.start()
c = socket.create_connection(srv.getsockname()); c.send(b"hello\n"); c.close(); t.join(); srv.close()
PY
/bin/sh -c "exec cat $demo/forbidden/secret" 2>/dev/null || echo "   (cat of $demo/forbidden/secret was killed by sigkill-enforce: exit $?)"
"$BIN/vigil" policy list --server "$work/vigil.sock"

# Every workload process has exited, so its records are in the ring buffer; SIGTERM makes the
# sensor drain the ring buffer and the export queue and flush the file before it exits.
kill -TERM "$sensor"
wait "$sensor"
sensor=
echo "== events from the workload (vigil observe, compact)"
tail -n +"$((start + 1))" "$events" | "$BIN/vigil" observe -o compact \
  --process '/(sh|dash|bash|whoami|sleep|head|setpriv|id|cat|python3[.0-9]*)$'
echo "== $(wc -l <"$events") events in all; the sensor stopped cleanly"
