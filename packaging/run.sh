#!/bin/bash
# run.sh PY BIN PORT HTTP_PORT -- `make run`: the daemon on 127.0.0.1:PORT, then the HTTP API on
# 127.0.0.1:HTTP_PORT in front of it; Ctrl-C stops both.
#
# The HTTP API starts only once *this* daemon answers (its `stats` pid is ours: a port held by
# another process must not count as ready). A daemon that cannot start (port taken, bad flag)
# ends the run with its exit status, its own error line being the last it printed.
set -uo pipefail
PY=$1 BIN=$2 PORT=$3 HTTP_PORT=$4

"$PY" -m pycache_d -l 127.0.0.1 -p "$PORT" &
daemon=$!
trap 'kill $daemon $http 2>/dev/null; wait' EXIT
trap 'exit 130' INT TERM
http=

ours() {  # does the process answering on PORT report our daemon's pid?
    "$PY" - "$PORT" "$daemon" <<'PYEOF' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.settimeout(2)
s.sendall(b"stats\r\n")
out = b""
while not out.endswith(b"END\r\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    out += chunk
sys.exit(0 if f"STAT pid {sys.argv[2]}\r\n".encode() in out else 1)
PYEOF
}

until ours; do
    if ! kill -0 "$daemon" 2>/dev/null; then
        wait "$daemon"
        rc=$?
        trap - EXIT
        exit "$rc"
    fi
    sleep 0.2
done
echo "make run: pycache-d on 127.0.0.1:$PORT, the HTTP API on http://127.0.0.1:$HTTP_PORT/ (Ctrl-C stops both)"
"$BIN/pycache-http" --host 127.0.0.1 --port "$HTTP_PORT" --cache "127.0.0.1:$PORT" &
http=$!
wait -n "$daemon" "$http"
