#!/usr/bin/env bash
# A/B of two langur binaries on the peer benchmark's setup: same nginx backends, same wrk, runs
# alternated (A B A B ...) so drift hits both alike. Prints median user, system and total CPU
# microseconds per request of each.
# Usage: bench/ab.sh BIN_A BIN_B [ROUNDS]   (env: DUR seconds per run, default 5; CONNS, default 64;
# CLOSE=1: a new connection for every request, sent with `Connection: close`)
set -eu
A=$1 B=$2 ROUNDS=${3:-5} DUR=${DUR:-5} CONNS=${CONNS:-64}
here=$(cd "$(dirname "$0")" && pwd)
for t in nginx wrk; do command -v $t >/dev/null || { echo "ab: needs $t" >&2; exit 2; }; done
work=$(mktemp -d -t langur-ab.XXXX); chmod 755 "$work"
trap 'kill $(cat $work/pids 2>/dev/null) 2>/dev/null; rm -rf $work' EXIT
head -c 1024 /dev/zero | tr '\0' x >"$work/body"
cat >"$work/be.conf" <<CONF
worker_processes 1; daemon off; pid $work/be.pid; error_log $work/be.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:19201; listen 127.0.0.1:19202; listen 127.0.0.1:19203;
           location / { root $work; try_files /body =404; } } }
CONF
taskset -c 0 nginx -c "$work/be.conf" -p "$work" & echo $! >>"$work/pids"
export PORT=18090 BACKENDS="127.0.0.1:19201 127.0.0.1:19202 127.0.0.1:19203"
hz=$(getconf CLK_TCK)
H=(); [ -n "${CLOSE:-}" ] && H=(-H "Connection: close")
one() { # label bin
  LANGUR_BIN=$2 taskset -c 1 bash "$here/start-langur.sh" >/dev/null 2>&1 &
  local pid=$! lp=""
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
  # start-langur.sh runs langur as its child: its CPU is the child's.
  lp=$(pgrep -P "$pid" | head -1)
  taskset -c 0 wrk -t1 -c"$CONNS" -d1s "${H[@]}" "http://127.0.0.1:$PORT/" >/dev/null 2>&1
  read -r -a s0 <"/proc/$lp/stat"
  taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" "${H[@]}" "http://127.0.0.1:$PORT/" >"$work/wrk" 2>&1
  read -r -a s1 <"/proc/$lp/stat"
  kill $pid; wait $pid 2>/dev/null || true
  local n; n=$(awk '/requests in/ {print $1}' "$work/wrk")
  awk -v l="$1" -v u=$((s1[13]-s0[13])) -v s=$((s1[14]-s0[14])) -v hz="$hz" -v n="$n" \
    'BEGIN { printf "%s %.3f %.3f %.3f %d\n", l, u/hz*1e6/n, s/hz*1e6/n, (u+s)/hz*1e6/n, n/'"$DUR"' }' >>"$work/res"
  sleep 0.3
}
sleep 0.5
for _ in $(seq "$ROUNDS"); do one A "$A"; one B "$B"; done
printf '%-3s %10s %10s %10s %10s\n' bin user_us sys_us total_us req/s
for l in A B; do
  med() { awk -v l=$l -v c=$1 '$1==l {print $c}' "$work/res" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
  printf '%-3s %10s %10s %10s %10s\n' $l "$(med 2)" "$(med 3)" "$(med 4)" "$(med 5)"
done
