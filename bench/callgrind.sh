#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: repeatable on a noisy
# machine (it counts, it does not time). Runs each given langur binary with one worker in front of
# one nginx backend, sends WARM then N keep-alive GETs from one client, and prints the
# instructions langur executed per request for the measured part.
# Usage: bench/callgrind.sh BIN [BIN...]   (env: N, default 4000; KEEP=DIR keeps the profiles
# for callgrind_annotate; ROUTE='KEY = VALUE' adds a line to the route, e.g.
# ROUTE="rate_limit = { rate = '1000000/s' }" for a rate-limited route; CLOSE=1: a new client
# connection for every request, sent with `Connection: close`; H2=1: HTTP/2 with prior
# knowledge (h2c), h2load with one connection and 10 streams at a time; BODY=BYTES: the
# response body's size, default 1024)
set -eu
N=${N:-4000} WARM=${WARM:-500}
for t in nginx valgrind callgrind_control python3; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }; done
work=$(mktemp -d -t langur-cg.XXXX); chmod 755 "$work"
trap 'kill $(cat $work/pids 2>/dev/null) 2>/dev/null; rm -rf $work' EXIT
head -c "${BODY:-1024}" /dev/zero | tr '\0' x >"$work/body"
cat >"$work/be.conf" <<CONF
worker_processes 1; daemon off; pid $work/be.pid; error_log $work/be.err;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:19401; location / { root $work; try_files /body =404; } } }
CONF
nginx -c "$work/be.conf" -p "$work" & echo $! >>"$work/pids"
cat >"$work/langur.toml" <<CONF
[server]
listen = ["127.0.0.1:18401"]
access_log = false
h2c = $([ -n "${H2:-}" ] && echo true || echo false)
[admin]
listen = "127.0.0.1:0"
[[route]]
match = ['^/']
pool = "p"
${ROUTE:-}
[pools.p]
servers = ["127.0.0.1:19401"]
CONF
cat >"$work/client.py" <<'PY'
import http.client, sys
n = int(sys.argv[1])
close = len(sys.argv) > 2 and sys.argv[2] == "1"
c = http.client.HTTPConnection("127.0.0.1", 18401)
for _ in range(n):
    if close:
        c = http.client.HTTPConnection("127.0.0.1", 18401)
    c.request("GET", "/", headers={"Host": "bench", **({"Connection": "close"} if close else {})})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    if close:
        c.close()
PY
for bin in "$@"; do
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" --instr-atstart=no \
    "$bin" run -c "$work/langur.toml" --workers 1 --no-access-log >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 200); do python3 - <<'PY' 2>/dev/null && break
import socket; socket.create_connection(("127.0.0.1", 18401), 0.2).close()
PY
    sleep 0.2; done
  client() { # requests
    if [ -n "${H2:-}" ]; then h2load -n "$1" -c1 -m10 http://127.0.0.1:18401/ | grep -q "$1 succeeded" || echo "h2load failed" >&2
    else python3 "$work/client.py" "$1" "${CLOSE:-0}"; fi
  }
  client "$WARM"
  callgrind_control -i on "$pid" >/dev/null
  client "$N"
  callgrind_control -i off "$pid" >/dev/null
  # The counts are written when the process exits.
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  ir=$(cat "$work"/cg.$pid* | awk '/^(summary|totals):/ {s += $2} END {print s + 0}')
  printf '%s %s instructions/request\n' "$bin" "$(awk -v a="$ir" -v n="$N" 'BEGIN {printf "%.0f", a/n}')"
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$work"/cg.$pid* "$KEEP/"; fi
  rm -f "$work"/cg.$pid*
done
