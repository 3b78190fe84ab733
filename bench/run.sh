#!/usr/bin/env bash
# langur's benchmark: langur, HAProxy and nginx side by side, same backends, same client, same run.
#
#   bench/run.sh            # all sections
#   bench/run.sh proxy      # only the proxy table (also: cache, https, idle, workers)
#
# Sections:
#   proxy    one worker each, pinned to CPU 1; wrk and the backends on CPU 0 (see WORKERS below); 64 keep-alive
#            connections, 1 KiB responses, round robin over 3 nginx backends. Rows: origin (nginx
#            serving the body itself: the floor), haproxy, nginx, langur; HAProxy and langur
#            back to back in every round, in turn first, the other two around them. Median of
#            ROUNDS runs of requests/s, p99 and CPU microseconds per request of the proxy process
#            (all of it, and its user part), and the paired ratio to HAProxy.
#   cache    cache hits on the same setup: nginx serving the file itself (origin), nginx
#            proxy_cache, HAProxy's cache, langur's cache, and langur without cache (proxied).
#   idle     resident memory of each proxy holding IDLE_CONNS idle keep-alive client connections.
#   workers  langur with 1 worker vs 2 workers (wrk unpinned: the machine has only 2 cores).
#   https    the proxy table with TLS terminated by each proxy (same self-signed certificate,
#            TLS 1.3, keep-alive connections: the cost of encrypting, not of handshakes).
#   handshake  the https table with a new connection per request (`Connection: close`): a full
#            TLS 1.3 handshake each time (wrk resumes no session).
#   resume   a new TLS 1.3 connection per request that resumes a session (a ticket): RESUMERS
#            `openssl s_time -reuse` clients at once (each sends `GET / HTTP/1.0`, reads the
#            response and closes), CPU per connection; the share of resumed handshakes is shown.
#   h2       HTTP/2 over TLS: h2load with 10 connections x 100 concurrent streams against each
#            proxy terminating TLS with ALPN h2 (HTTP/1.1 to the backends, as before).
#   close    the proxy table with a new client connection per request (`Connection: close`).
#   large    the proxy table with 64 KiB and 1 MiB responses (keep-alive).
#   h2c      HTTP/2 with prior knowledge (cleartext), h2load 10 connections x 100 streams.
#   hosts    a routing table of 1000 virtual hosts (requests for the 500th): nginx server
#            blocks, HAProxy a map from Host to backend, langur 1000 routes with `host`.
#   limit    a rate-limited route whose limit is never reached (per client address): nginx
#            limit_req, HAProxy a stick table tracking http_req_rate, langur `rate_limit`.
#   static   a file from disk: nginx (the origin row) against langur's `root` route, without and
#            with `cache = true` (HAProxy serves no files).
#   gzip     a 64 KiB text/html response compressed on its way by each proxy (gzip at level 1
#            for all: nginx's gzip_comp_level 1, langur's level "fast", HAProxy's libslz), and
#            langur's cache serving the stored gzip form against an identity hit.
#   floor    (only when named) the keep-alive proxy table with two more rows: the least a proxy
#            can cost here, byte-copying proxies without HTTP work (bench/floor) on tokio's epoll
#            runtime and on monoio's io_uring driver (as monoio sets up the ring, and with
#            COOP_TASKRUN, and with DEFER_TASKRUN): what a completion-based runtime could give.
#            One worker only.
#   cluster  langur alone, with a redis-server of its own (on CPU 0 with wrk and the backends):
#            a shared-cache (L2) hit against an in-memory (L1) hit and an origin fetch (the same
#            route without cache), over 1000 URLs that a 64 KiB in-memory cache cannot hold; and
#            a rate-limited route with scope = "cluster" against scope = "instance". The proxy's
#            CPU per request does not count Redis's (shown apart, per request).
# Env: WORKERS (1): the proxies' workers (langur's --workers, HAProxy's nbthread, nginx's
#      worker_processes), pinned to CPUS (default 1 for one worker, 1-N for N); the client and
#      the backends on CLIENT_CPUS (0) with CLIENT_THREADS wrk threads (1). On a bigger machine,
#      e.g. WORKERS=4 CPUS=4-7 CLIENT_CPUS=0-3 CLIENT_THREADS=4 runs the same tables with 4.
#      ROUNDS (7), DUR (seconds per run, 8), CONNS (64), BODY (bytes, 1024), IDLE_CONNS (9000:
#      these machines cap open files at 20000 and HAProxy insists on two per connection),
#      CONCURRENCY (idle connections opened at once, 200), SETTLE (seconds idle before reading, 3).
# Installs haproxy, nginx, wrk, curl and h2load (nghttp2-client) with apt-get when they are missing.
set -u
cd "$(dirname "$0")/.."
sections=${*:-proxy close large cache https handshake resume h2 h2c hosts limit static idle workers gzip cluster}
ROUNDS=${ROUNDS:-7} DUR=${DUR:-8} CONNS=${CONNS:-64} BODY=${BODY:-1024} IDLE_CONNS=${IDLE_CONNS:-9000}
RESUMERS=${RESUMERS:-8}
WORKERS=${WORKERS:-1}
if [ "$WORKERS" = 1 ]; then CPUS=${CPUS:-1}; else CPUS=${CPUS:-1-$WORKERS}; fi
CLIENT_CPUS=${CLIENT_CPUS:-0} CLIENT_THREADS=${CLIENT_THREADS:-1}
need=""
for t in haproxy nginx wrk curl python3 openssl; do command -v $t >/dev/null 2>&1 || need="$need $t"; done
command -v h2load >/dev/null 2>&1 || need="$need nghttp2-client"
if [ -n "$need" ]; then
  echo "bench: installing$need" >&2
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need) >/dev/null 2>&1 ||
    { echo "bench: could not install$need" >&2; exit 2; }
fi
cargo build --release -q || exit 1
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/langur
work=$(mktemp -d -t langur-bench.XXXX); chmod 755 "$work"
trap 'for p in $(cat $work/pids 2>/dev/null); do kill $p 2>/dev/null; done; sleep 0.3; rm -rf $work' EXIT
PORT=18180
B1=19301 B2=19302 B3=19303
BACKENDS="127.0.0.1:$B1 127.0.0.1:$B2 127.0.0.1:$B3"
hz=$(getconf CLK_TCK)

head -c "$BODY" /dev/zero | tr '\0' 'x' >"$work/body"
head -c 65536 /dev/zero | tr '\0' 'x' >"$work/64k"
head -c 1048576 /dev/zero | tr '\0' 'x' >"$work/1m"
# 64 KiB of text that compresses well but not trivially (about 6:1 with gzip -1).
awk 'BEGIN { while (n < 65536) { l = sprintf("<p>line %d of the page, id %d</p>\n", i, i * 7919 % 1000); printf "%s", l; n += length(l); i++ } }' >"$work/page.html"
cat >"$work/be.conf" <<CONF
worker_processes $CLIENT_THREADS; daemon off; pid $work/be.pid; error_log $work/be.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$B1; listen 127.0.0.1:$B2; listen 127.0.0.1:$B3;
           location / { root $work; try_files /body =404; }
           location = /cached { alias $work/body; default_type text/plain;
                                add_header Cache-Control "public, max-age=3600"; }
           location = /page.html { root $work; add_header Cache-Control "public, max-age=3600"; }
           location /c/ { root $work; try_files /body =404; add_header Cache-Control "public, max-age=3600"; }
           location = /64k { root $work; } location = /1m { root $work; } } }
CONF
mkdir -p "$work/be" "$work/nx" "$work/or"
taskset -c "$CLIENT_CPUS" nginx -c "$work/be.conf" -p "$work/be" & echo $! >>"$work/pids"

cat >"$work/haproxy.cfg" <<CONF
global
  nbthread $WORKERS
  maxconn 9900
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$PORT
  default_backend be
backend be
  balance roundrobin
  http-reuse always
  server s1 127.0.0.1:$B1
  server s2 127.0.0.1:$B2
  server s3 127.0.0.1:$B3
CONF
cat >"$work/nginx.conf" <<CONF
worker_processes $WORKERS; daemon off; pid $work/nx.pid; error_log $work/nx.err;
worker_rlimit_nofile 30000;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000;
  upstream be { server 127.0.0.1:$B1; server 127.0.0.1:$B2; server 127.0.0.1:$B3; keepalive 128; }
  server { listen 127.0.0.1:$PORT;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat >"$work/origin.conf" <<CONF
worker_processes $WORKERS; daemon off; pid $work/or.pid; error_log $work/or.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$PORT; location / { root $work; try_files /body =404; } } }
CONF
cat >"$work/langur.toml" <<CONF
[server]
listen = ["127.0.0.1:$PORT"]
access_log = false
[admin]
listen = "127.0.0.1:0"
[[route]]
match = ['^/']
pool = "bench"
[pools.bench]
balance = "round-robin"
servers = ["127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3"]
CONF
cat >"$work/nginx-cache.conf" <<CONF
worker_processes $WORKERS; daemon off; pid $work/nc.pid; error_log $work/nc.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  proxy_cache_path $work/ncache keys_zone=c:10m max_size=64m;
  upstream be { server 127.0.0.1:$B1; server 127.0.0.1:$B2; server 127.0.0.1:$B3; keepalive 128; }
  server { listen 127.0.0.1:$PORT;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_cache c; proxy_cache_lock on; } } }
CONF
sed -e 's/^backend be$/backend be\n  http-request cache-use c\n  http-response cache-store c/' "$work/haproxy.cfg" >"$work/haproxy-cache.cfg"
printf 'cache c\n  total-max-size 64\n  max-object-size 100000\n  max-age 3600\n' >>"$work/haproxy-cache.cfg"
sed -e 's/^pool = "bench"$/pool = "bench"\ncache = true/' "$work/langur.toml" >"$work/langur-cache.toml"
mkdir -p "$work/nc" "$work/ncache"
declare -A CMD
CMD[origin]="nginx -c $work/origin.conf -p $work/or"
CMD[haproxy]="haproxy -f $work/haproxy.cfg -db"
CMD[nginx]="nginx -c $work/nginx.conf -p $work/nx"
CMD[langur]="$BIN run -c $work/langur.toml --workers $WORKERS --no-access-log"
CMD[nginx-cache]="nginx -c $work/nginx-cache.conf -p $work/nc"
CMD[haproxy-cache]="haproxy -f $work/haproxy-cache.cfg -db"
CMD[langur-cache]="$BIN run -c $work/langur-cache.toml --workers $WORKERS --no-access-log"
# HTTPS: one self-signed certificate for all three.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
  -addext subjectAltName=DNS:bench.test,IP:127.0.0.1 -keyout "$work/site.key" -out "$work/site.crt" >/dev/null 2>&1
cat "$work/site.crt" "$work/site.key" >"$work/site.pem"
sed -e "s|^  bind 127.0.0.1:$PORT$|  bind 127.0.0.1:$PORT ssl crt $work/site.pem alpn http/1.1|" "$work/haproxy.cfg" >"$work/haproxy-tls.cfg"
# TLS 1.3 for all three (nginx before 1.23.4 offers only up to 1.2 unless told).
sed -e "s|listen 127.0.0.1:$PORT;|listen 127.0.0.1:$PORT ssl; ssl_protocols TLSv1.3; ssl_certificate $work/site.crt; ssl_certificate_key $work/site.key;|" \
  -e "s|pid $work/nx.pid|pid $work/nt.pid|" "$work/nginx.conf" >"$work/nginx-tls.conf"
sed -e "s|^listen = \[\"127.0.0.1:$PORT\"\]$|listen = [\"127.0.0.1:$((PORT + 1))\"]|" "$work/langur.toml" >"$work/langur-tls.toml"
printf '[tls]\nlisten = ["127.0.0.1:%s"]\ncertificates = [{ cert = "%s", key = "%s" }]\n' "$PORT" "$work/site.crt" "$work/site.key" >>"$work/langur-tls.toml"
mkdir -p "$work/nt"
CMD[haproxy-tls]="haproxy -f $work/haproxy-tls.cfg -db"
CMD[nginx-tls]="nginx -c $work/nginx-tls.conf -p $work/nt"
CMD[langur-tls]="$BIN run -c $work/langur-tls.toml --workers $WORKERS --no-access-log"
# HTTP/2 over TLS: the same servers offering h2 by ALPN (langur's TLS listener always does).
sed -e "s|alpn http/1.1|alpn h2,http/1.1|" "$work/haproxy-tls.cfg" >"$work/haproxy-h2.cfg"
sed -e "s|listen 127.0.0.1:$PORT ssl;|listen 127.0.0.1:$PORT ssl http2;|" -e "s|pid $work/nt.pid|pid $work/n2.pid|" \
  "$work/nginx-tls.conf" >"$work/nginx-h2.conf"
mkdir -p "$work/n2"
CMD[haproxy-h2]="haproxy -f $work/haproxy-h2.cfg -db"
CMD[nginx-h2]="nginx -c $work/nginx-h2.conf -p $work/n2"
CMD[langur-h2]="$BIN run -c $work/langur-tls.toml --workers $WORKERS --no-access-log"
SCHEME=http
# Compression: gzip at level 1 everywhere, text/html, whatever the length.
sed -e 's|location / { proxy_pass|gzip on; gzip_comp_level 1; gzip_proxied any; gzip_types text/html; gzip_min_length 1024;\n    location / { proxy_pass|' \
  -e "s|pid $work/nx.pid|pid $work/nz.pid|" "$work/nginx.conf" >"$work/nginx-gzip.conf"
sed -e 's/^backend be$/backend be\n  compression algo gzip\n  compression type text\/html/' "$work/haproxy.cfg" >"$work/haproxy-gzip.cfg"
sed -e 's/^pool = "bench"$/pool = "bench"\ncompress = { encodings = ["gzip"], level = "fast" }/' "$work/langur.toml" >"$work/langur-gzip.toml"
sed -e 's/^pool = "bench"$/pool = "bench"\ncache = true\ncompress = { encodings = ["gzip"], level = "fast" }/' "$work/langur.toml" >"$work/langur-gzip-cache.toml"
mkdir -p "$work/nz"
CMD[nginx-gzip]="nginx -c $work/nginx-gzip.conf -p $work/nz"
CMD[haproxy-gzip]="haproxy -f $work/haproxy-gzip.cfg -db"
CMD[langur-gzip]="$BIN run -c $work/langur-gzip.toml --workers $WORKERS --no-access-log"
CMD[langur-gzip-hit]="$BIN run -c $work/langur-gzip-cache.toml --workers $WORKERS --no-access-log"
CMD[langur-identity-hit]="$BIN run -c $work/langur-gzip-cache.toml --workers $WORKERS --no-access-log"
# The cluster section: one Redis, a route caching in a 64 KiB memory with Redis behind it, and
# rate limits for the fleet and for the instance. Requests spread over 1000 URLs (wrk script).
REDIS_PORT=19380
cluster_conf() { # extra lines for the route, then after the pools
  sed -e "s|^pool = \"bench\"$|pool = \"bench\"\n$1|" "$work/langur.toml"
  printf '%b' "$2"
}
CLUSTER="[cluster]\nredis = \"redis://127.0.0.1:$REDIS_PORT/0\"\nprefix = \"bench:\"\ntimeout = \"50ms\"\n"
SMALL="[cache]\nmax_size = \"64 KiB\"\nmax_object_size = \"8 KiB\"\n"
cluster_conf 'cache = true' "$SMALL" >"$work/langur-l1.toml"
cluster_conf 'cache = true' "${SMALL}shared = true\n$CLUSTER" >"$work/langur-l2.toml"
cluster_conf 'rate_limit = { key = "client_ip", rate = "100000/s", burst = 1000 }' "" >"$work/langur-rl.toml"
cluster_conf 'rate_limit = { key = "client_ip", rate = "100000/s", burst = 1000, scope = "cluster" }' "$CLUSTER" >"$work/langur-rl-cluster.toml"
CMD[langur-origin]="$BIN run -c $work/langur.toml --workers $WORKERS --no-access-log"
CMD[langur-l1-hit]="$BIN run -c $work/langur-l1.toml --workers $WORKERS --no-access-log"
CMD[langur-l2-hit]="$BIN run -c $work/langur-l2.toml --workers $WORKERS --no-access-log"
CMD[langur-limit]="$BIN run -c $work/langur-rl.toml --workers $WORKERS --no-access-log"
CMD[langur-limit-cluster]="$BIN run -c $work/langur-rl-cluster.toml --workers $WORKERS --no-access-log"
printf 'request = function() return wrk.format(nil, "/c/" .. math.random(1000)) end\n' >"$work/spread.lua"
# h2c: HTTP/2 with prior knowledge on the plain port.
sed -e "s|^  bind 127.0.0.1:$PORT$|  bind 127.0.0.1:$PORT proto h2|" "$work/haproxy.cfg" >"$work/haproxy-h2c.cfg"
sed -e "s|listen 127.0.0.1:$PORT;|listen 127.0.0.1:$PORT http2;|" -e "s|pid $work/nx.pid|pid $work/nh.pid|" "$work/nginx.conf" >"$work/nginx-h2c.conf"
sed -e 's/^access_log = false$/access_log = false\nh2c = true/' "$work/langur.toml" >"$work/langur-h2c.toml"
mkdir -p "$work/nh"
CMD[haproxy-h2c]="haproxy -f $work/haproxy-h2c.cfg -db"
CMD[nginx-h2c]="nginx -c $work/nginx-h2c.conf -p $work/nh"
CMD[langur-h2c]="$BIN run -c $work/langur-h2c.toml --workers $WORKERS --no-access-log"
# hosts: 1000 virtual hosts, requests for h500.test.
{
  printf 'worker_processes %s; daemon off; pid %s/nv.pid; error_log %s/nv.err;\n' "$WORKERS" "$work" "$work"
  printf 'worker_rlimit_nofile 30000;\nevents { worker_connections 20000; }\n'
  printf 'http { access_log off; keepalive_requests 1000000; server_names_hash_max_size 4096;\n'
  printf '  upstream be { server 127.0.0.1:%s; server 127.0.0.1:%s; server 127.0.0.1:%s; keepalive 128; }\n' $B1 $B2 $B3
  for i in $(seq 1000); do
    printf '  server { listen 127.0.0.1:%s; server_name h%s.test; location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } }\n' "$PORT" "$i"
  done
  printf '}\n'
} >"$work/nginx-hosts.conf"
for i in $(seq 1000); do echo "h$i.test be"; done >"$work/hosts.map"
sed -e "s|^  default_backend be$|  use_backend %[req.hdr(host),lower,map_str($work/hosts.map)]\n  default_backend be|" "$work/haproxy.cfg" >"$work/haproxy-hosts.cfg"
{
  sed -e '/^\[\[route\]\]$/,$d' "$work/langur.toml"
  for i in $(seq 1000); do printf '[[route]]\nhost = ["h%s.test"]\nmatch = [%s]\npool = "bench"\n' "$i" "'^/'"; done
  sed -n '/^\[pools.bench\]$/,$p' "$work/langur.toml"
} >"$work/langur-hosts.toml"
mkdir -p "$work/nv"
CMD[haproxy-hosts]="haproxy -f $work/haproxy-hosts.cfg -db"
CMD[nginx-hosts]="nginx -c $work/nginx-hosts.conf -p $work/nv"
CMD[langur-hosts]="$BIN run -c $work/langur-hosts.toml --workers $WORKERS --no-access-log"
# limit: a per-address rate limit that is never reached (the cost of counting).
sed -e 's|^  default_backend be$|  stick-table type ip size 100k expire 10s store http_req_rate(1s)\n  http-request track-sc0 src\n  http-request deny deny_status 429 if { sc_http_req_rate(0) gt 100000 }\n  default_backend be|' "$work/haproxy.cfg" >"$work/haproxy-limit.cfg"
sed -e 's|^http { |http { limit_req_zone $binary_remote_addr zone=rl:10m rate=100000r/s; |' \
  -e 's|location / { proxy_pass|location / { limit_req zone=rl burst=1000 nodelay; proxy_pass|' \
  -e "s|pid $work/nx.pid|pid $work/nl.pid|" "$work/nginx.conf" >"$work/nginx-limit.conf"
mkdir -p "$work/nl"
CMD[haproxy-limit]="haproxy -f $work/haproxy-limit.cfg -db"
CMD[nginx-limit]="nginx -c $work/nginx-limit.conf -p $work/nl"
# static: files from disk, nginx (the origin row) against langur's `root` (HAProxy serves no files).
sed -e '/^\[\[route\]\]$/,$d' "$work/langur.toml" >"$work/langur-static.toml"
printf '[[route]]\nmatch = [%s]\nroot = "%s"\n' "'^/'" "$work" >>"$work/langur-static.toml"
sed -e 's/^root = /cache = true\nroot = /' "$work/langur-static.toml" >"$work/langur-static-cache.toml"
CMD[langur-static]="$BIN run -c $work/langur-static.toml --workers $WORKERS --no-access-log"
CMD[langur-static-cache]="$BIN run -c $work/langur-static-cache.toml --workers $WORKERS --no-access-log"
# Extra wrk arguments per server name (measure()).
declare -A WRK
for n in langur-origin langur-l2-hit; do WRK[$n]="-s $work/spread.lua"; done
# Extra request headers for wrk and the warm-up request, per server name (measure()).
declare -A HDR
for n in nginx-gzip haproxy-gzip langur-gzip langur-gzip-hit; do HDR[$n]="Accept-Encoding: gzip"; done
HDR[langur-identity-hit]="Accept-Encoding: identity"
for n in haproxy-hosts nginx-hosts langur-hosts; do HDR[$n]="Host: h500.test"; done

cpu_ticks() { # "utime stime" of a process (all its threads) and its children (nginx's worker)
  local u=0 s=0 p f
  for p in $1 $(pgrep -P "$1"); do
    read -r -a f <"/proc/$p/stat" 2>/dev/null || continue
    u=$((u + f[13])) s=$((s + f[14]))
  done
  echo $u $s
}
start() { # name cpus -> pid
  taskset -c "$2" bash -c "ulimit -n 65536 2>/dev/null; exec ${CMD[$1]}" >"$work/$1.out" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sk ${CURL_OPTS:-} -o /dev/null "$SCHEME://127.0.0.1:$PORT/" && break; sleep 0.05; done
  echo $pid
}
redis_ticks() { # CPU ticks of the bench's redis-server so far (0 when none runs)
  local f
  if [ -s "$work/redis.pid" ] && read -r -a f <"/proc/$(cat "$work/redis.pid")/stat" 2>/dev/null; then
    echo $((f[13] + f[14]))
  else echo 0; fi
}
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; sleep 0.3; }
measure() { # results-file path name... : one round over the named servers, pinned to CPU 1
  local out=$1 path=$2 name pid u0 s0 u1 s1; shift 2
  for name in "$@"; do
    pid=$(start $name "$CPUS")
    local h=(-H "${HDR[$name]:-X-Bench: 1}")
    curl -sk "${h[@]}" -o /dev/null "$SCHEME://127.0.0.1:$PORT$path"
    local w=(${WRK[$name]:-})
    taskset -c "$CLIENT_CPUS" wrk -t"$CLIENT_THREADS" -c"$CONNS" -d1s "${h[@]}" "${w[@]}" "$SCHEME://127.0.0.1:$PORT$path" >/dev/null 2>&1
    read -r u0 s0 <<<"$(cpu_ticks $pid)"
    local r0; r0=$(redis_ticks)
    taskset -c "$CLIENT_CPUS" wrk -t"$CLIENT_THREADS" -c"$CONNS" -d"${DUR}s" --latency "${h[@]}" "${w[@]}" "$SCHEME://127.0.0.1:$PORT$path" >"$work/wrk" 2>&1
    read -r u1 s1 <<<"$(cpu_ticks $pid)"
    local r1; r1=$(redis_ticks)
    stop $pid
    awk -v n=$name -v c=$((u1 - u0 + s1 - s0)) -v u=$((u1 - u0)) -v r=$((r1 - r0)) -v hz="$hz" '
      /Requests\/sec/ {rps=$2} /requests in/ {reqs=$1}
      $1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else {sub(/s/,"",v); v=v*1000}; p99=v}
      /Non-2xx|Socket errors/ {err=err" "$0}
      END {printf "%s %s %s %.2f %.2f %.2f%s\n", n, rps, p99, (reqs>0 ? c/hz*1e6/reqs : 0), (reqs>0 ? u/hz*1e6/reqs : 0), (reqs>0 ? r/hz*1e6/reqs : 0), err}' "$work/wrk" >>"$out"
  done
}
measure_h2() { # results-file names... : like measure, with h2load (10 connections x 100 streams)
  local out=$1 name pid u0 s0 u1 s1; shift
  for name in "$@"; do
    pid=$(start $name "$CPUS")
    taskset -c "$CLIENT_CPUS" h2load -c10 -m100 -D1 "$SCHEME://127.0.0.1:$PORT/" >/dev/null 2>&1
    read -r u0 s0 <<<"$(cpu_ticks $pid)"
    taskset -c "$CLIENT_CPUS" h2load -c10 -m100 -D"$DUR" "$SCHEME://127.0.0.1:$PORT/" >"$work/h2load" 2>&1
    read -r u1 s1 <<<"$(cpu_ticks $pid)"
    stop $pid
    awk -v n=$name -v c=$((u1 - u0 + s1 - s0)) -v u=$((u1 - u0)) -v hz="$hz" '
      /^finished in/ {rps=$4} /^requests:/ {reqs=$8} /^time for request:/ {p=$6}
      END {printf "%s %s %s %.2f %.2f 0 (mean+sd ms, not p99)\n", n, rps, p, (reqs>0 ? c/hz*1e6/reqs : 0), (reqs>0 ? u/hz*1e6/reqs : 0)}' "$work/h2load" >>"$out"
  done
}
measure_stime() { # results-file names... : like measure, with RESUMERS `openssl s_time -reuse`
  # clients (a new TLS connection per request, resuming the first one's session); the p99
  # column holds the share of resumed handshakes instead
  local out=$1 name pid u0 s0 u1 s1 i clients; shift
  for name in "$@"; do
    pid=$(start $name "$CPUS") clients=""
    taskset -c "$CLIENT_CPUS" openssl s_time -connect 127.0.0.1:$PORT -www / -reuse -time 1 >/dev/null 2>&1
    read -r u0 s0 <<<"$(cpu_ticks $pid)"
    for i in $(seq "$RESUMERS"); do
      taskset -c "$CLIENT_CPUS" openssl s_time -connect 127.0.0.1:$PORT -www / -reuse -time "$DUR" >"$work/stime.$i" 2>&1 &
      clients="$clients $!"
    done
    wait $clients
    read -r u1 s1 <<<"$(cpu_ticks $pid)"
    stop $pid
    cat "$work"/stime.* | awk -v n=$name -v c=$((u1 - u0 + s1 - s0)) -v u=$((u1 - u0)) -v hz="$hz" -v d="$DUR" '
      /connections in .* real seconds/ {reqs += $1}
      /^[r*]+$/ {new += gsub(/\*/, "*"); old += gsub(/r/, "r")}
      END {printf "%s %.0f %.3f %.2f %.2f 0 (p99 column: share resumed)\n", n, reqs/d, (new+old > 0 ? old/(new+old) : 0), (reqs>0 ? c/hz*1e6/reqs : 0), (reqs>0 ? u/hz*1e6/reqs : 0)}' >>"$out"
    rm -f "$work"/stime.*
  done
}
report() { # results-file title base name... : medians per server and CPU against base's
  local f=$1 title=$2 base=$3 name cpu b; shift 3
  echo "$title"
  printf '%-12s %12s %10s %12s %14s\n' proxy req/s p99_ms cpu_us/req "cpu vs $base"
  b=$(median "$f" "$base" 4)
  for name in "$@"; do
    cpu=$(median "$f" $name 4)
    printf '%-12s %12s %10s %12s %14s\n' $name "$(median "$f" $name 2)" "$(median "$f" $name 3)" "$cpu" "$(awk -v a="$cpu" -v b="$b" 'BEGIN {printf "%.3f", a/b}')"
  done
  best_peer "$f" "$@"
  echo "per run (proxy req/s p99_ms cpu_us/req user_us/req):"; sed 's/^/  /' "$f"
}
best_peer() { # results-file name...: each langur row's CPU per request against the best peer's
  # (the lowest median among the others), and per round
  local f=$1 name best="" bn="" cpu; shift
  for name in "$@"; do
    [[ $name == langur* || $name == floor-* ]] && continue
    cpu=$(median "$f" "$name" 4)
    if [ -z "$best" ] || awk -v a="$cpu" -v b="$best" 'BEGIN {exit !(a < b)}'; then best=$cpu bn=$name; fi
  done
  for name in "$@"; do
    [[ $name == langur* ]] || continue
    cpu=$(median "$f" "$name" 4)
    printf '%s vs best peer (%s): %s; per round:' "$name" "$bn" "$(awk -v a="$cpu" -v b="$best" 'BEGIN {printf "%.3f", a/b}')"
    awk -v l="$name" -v peers="$*" 'BEGIN {n = split(peers, p, " "); for (i = 1; i <= n; i++) if (p[i] !~ /^(langur|floor-)/) isp[p[i]] = 1}
      $1 == l {x[++nl] = $4} ($1 in isp) {r = int(seen[$1]++); if (!(r in m) || $4 < m[r]) m[r] = $4}
      END {for (i = 1; i <= nl; i++) printf " %.3f", x[i] / m[i - 1]; printf "\n"}' "$f"
  done
}
rotated() { # round names...: the names rotated by the round number, so that each proxy takes
  # each place in the order across rounds (the machine drifts; a fixed order would favour one)
  local r=$1; shift
  local names=("$@") n=$# i
  for ((i = 0; i < n; i++)); do printf '%s ' "${names[$(((i + r) % n))]}"; done
}
paired() { # results-file name base: the median over rounds of name's CPU per request divided
  # by base's in the same round (rounds are consecutive groups of lines, one line per server)
  awk -v n=$2 -v b=$3 -v k="$4" '$1==n {x=$4} $1==b {y=$4} {i++} i%k==0 && y>0 {print x/y}' "$1" |
    sort -n | awk '{v[NR]=$1} END {printf "%.3f", v[int((NR+1)/2)]}'
}
median() { # results-file name column
  awk -v n=$2 -v c=$3 '$1==n {print $c}' "$1" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}
sleep 0.5

if [[ " $sections " == *" proxy "* ]]; then
  : >"$work/results"
  # HAProxy and langur run back to back in every round, in turn first: the machine's speed
  # drifts over tens of seconds, and two runs 16 s apart often fell in different spells.
  for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then order="origin haproxy langur nginx"; else order="nginx langur haproxy origin"; fi
    measure "$work/results" / $order
  done
  echo "== proxy: 1 worker, $CONNS connections, $BODY-byte responses, median of $ROUNDS runs of ${DUR}s"
  printf '%-8s %12s %10s %12s %12s %14s %14s\n' proxy req/s p99_ms cpu_us/req user_us/req "cpu vs haproxy" "paired ratio"
  hap=$(median "$work/results" haproxy 4)
  for name in origin haproxy nginx langur; do
    cpu=$(median "$work/results" $name 4)
    printf '%-8s %12s %10s %12s %12s %14s %14s\n' $name "$(median "$work/results" $name 2)" "$(median "$work/results" $name 3)" "$cpu" "$(median "$work/results" $name 5)" "$(awk -v a="$cpu" -v b="$hap" 'BEGIN {printf "%.3f", a/b}')" "$(paired "$work/results" $name haproxy 4)"
  done
  echo "(cpu vs haproxy: ratio of the medians; paired ratio: median over rounds of the ratio within the round)"
  best_peer "$work/results" haproxy nginx langur
  echo "per run (proxy req/s p99_ms cpu_us/req user_us/req):"; sed 's/^/  /' "$work/results"
fi

if [[ " $sections " == *" cache "* ]]; then
  # Cache hits: every proxy caches /cached (max-age=3600); "langur" without its cache is the
  # proxied-miss baseline, "origin" is nginx serving the same bytes from its own disk.
  : >"$work/cresults"
  for r in $(seq "$ROUNDS"); do
    measure "$work/cresults" /cached $(rotated "$r" origin nginx-cache haproxy-cache langur-cache langur)
  done
  echo "== cache: hits of a $BODY-byte response, 1 worker, $CONNS connections, median of $ROUNDS runs of ${DUR}s"
  printf '%-14s %12s %10s %12s %14s %14s\n' server req/s p99_ms cpu_us/req hits/cpu_s "cpu vs origin"
  orig=$(median "$work/cresults" origin 4)
  for name in origin nginx-cache haproxy-cache langur-cache langur; do
    cpu=$(median "$work/cresults" $name 4)
    printf '%-14s %12s %10s %12s %14s %14s\n' $name "$(median "$work/cresults" $name 2)" "$(median "$work/cresults" $name 3)" "$cpu" \
      "$(awk -v a="$cpu" 'BEGIN {printf "%.0f", (a > 0 ? 1e6/a : 0)}')" "$(awk -v a="$cpu" -v b="$orig" 'BEGIN {printf "%.3f", a/b}')"
  done
  echo "(langur = the same route without cache: every request proxied)"
  best_peer "$work/cresults" nginx-cache haproxy-cache langur-cache
  echo "per run (server req/s p99_ms cpu_us/req user_us/req):"; sed 's/^/  /' "$work/cresults"
fi

if [[ " $sections " == *" idle "* ]]; then
  echo "== idle: resident memory holding $IDLE_CONNS idle keep-alive client connections"
  printf '%-8s %12s %12s %14s\n' proxy rss_before_kib rss_after_kib kib_per_conn
  for name in haproxy nginx langur; do
    pid=$(start $name "$CPUS")
    out=$(bash -c "ulimit -n 65536 2>/dev/null; python3 bench/idle_conns.py 127.0.0.1:$PORT $pid $IDLE_CONNS")
    stop $pid
    read -r n before after <<<"$out"
    printf '%-8s %12s %12s %14s\n' $name "$before" "$after" "$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN {printf "%.2f", (a-b)/n}')"
  done
fi

if [[ " $sections " == *" workers "* ]]; then
  echo "== workers: langur req/s with 1 and 2 workers (wrk and backends share the same 2 cores)"
  for w in 1 2; do
    CMD[langur]="$BIN run -c $work/langur.toml --workers $w --no-access-log"
    pid=$(start langur 0,1)
    wrk -t2 -c"$CONNS" -d1s "http://127.0.0.1:$PORT/" >/dev/null 2>&1
    wrk -t2 -c"$CONNS" -d"${DUR}s" "http://127.0.0.1:$PORT/" >"$work/wrk" 2>&1
    stop $pid
    printf 'workers=%s %12s req/s\n' $w "$(awk '/Requests\/sec/ {print $2}' "$work/wrk")"
  done
fi

if [[ " $sections " == *" https "* ]]; then
  SCHEME=https
  : >"$work/tresults"
  for r in $(seq "$ROUNDS"); do measure "$work/tresults" / $(rotated "$r" haproxy-tls nginx-tls langur-tls); done
  SCHEME=http
  report "$work/tresults" "== https: TLS 1.3 terminated by the proxy, 1 worker, $CONNS keep-alive connections, $BODY-byte responses, median of $ROUNDS runs of ${DUR}s" \
    haproxy-tls haproxy-tls nginx-tls langur-tls
fi

if [[ " $sections " == *" handshake "* ]]; then
  SCHEME=https
  for n in haproxy-tls nginx-tls langur-tls; do HDR[$n]="Connection: close"; done
  : >"$work/hresults"
  for r in $(seq "$ROUNDS"); do measure "$work/hresults" / $(rotated "$r" haproxy-tls nginx-tls langur-tls); done
  for n in haproxy-tls nginx-tls langur-tls; do unset "HDR[$n]"; done
  SCHEME=http
  report "$work/hresults" "== handshake: a new TLS 1.3 connection per request (full handshake), 1 worker, $CONNS clients, $BODY-byte responses, median of $ROUNDS runs of ${DUR}s" \
    haproxy-tls haproxy-tls nginx-tls langur-tls
fi

if [[ " $sections " == *" resume "* ]]; then
  SCHEME=https
  : >"$work/rresults"
  for r in $(seq "$ROUNDS"); do measure_stime "$work/rresults" $(rotated "$r" haproxy-tls nginx-tls langur-tls); done
  SCHEME=http
  report "$work/rresults" "== resume: a new TLS 1.3 connection per request resuming a session, 1 worker, $RESUMERS openssl s_time clients, $BODY-byte responses, median of $ROUNDS runs of ${DUR}s (p99_ms column: the share of handshakes resumed)" \
    haproxy-tls haproxy-tls nginx-tls langur-tls
fi

if [[ " $sections " == *" h2 "* ]]; then
  SCHEME=https
  : >"$work/h2results"
  for r in $(seq "$ROUNDS"); do measure_h2 "$work/h2results" $(rotated "$r" haproxy-h2 nginx-h2 langur-h2); done
  SCHEME=http
  report "$work/h2results" "== h2: HTTP/2 over TLS, h2load with 10 connections x 100 streams, 1 worker, $BODY-byte responses, median of $ROUNDS runs of ${DUR}s (latency column: h2load's mean per request, ms)" \
    haproxy-h2 haproxy-h2 nginx-h2 langur-h2
fi

if [[ " $sections " == *" close "* ]]; then
  for n in haproxy nginx langur; do HDR[$n]="Connection: close"; done
  : >"$work/xresults"
  for r in $(seq "$ROUNDS"); do measure "$work/xresults" / $(rotated "$r" haproxy nginx langur); done
  for n in haproxy nginx langur; do unset "HDR[$n]"; done
  report "$work/xresults" "== close: a new client connection per request (Connection: close), 1 worker, $CONNS clients, $BODY-byte responses, median of $ROUNDS runs of ${DUR}s" \
    haproxy haproxy nginx langur
fi

if [[ " $sections " == *" floor "* ]]; then
  cargo build --release -q --manifest-path bench/floor/Cargo.toml || exit 1
  floor=${CARGO_TARGET_DIR:-$PWD/bench/floor/target}/release
  fenv="LISTEN=127.0.0.1:$PORT SERVERS='$BACKENDS'"
  CMD[floor-epoll]="env $fenv $floor/epoll"
  CMD[floor-uring]="env $fenv $floor/uring"
  CMD[floor-uring-coop]="env $fenv MODE=coop $floor/uring"
  CMD[floor-uring-defer]="env $fenv MODE=defer $floor/uring"
  names="haproxy nginx langur floor-epoll floor-uring floor-uring-coop floor-uring-defer"
  : >"$work/fresults"
  for r in $(seq "$ROUNDS"); do measure "$work/fresults" / $(rotated "$r" $names); done
  report "$work/fresults" "== floor: byte-copying proxies on epoll and io_uring beside the proxies, 1 worker, $CONNS keep-alive connections, $BODY-byte responses, median of $ROUNDS runs of ${DUR}s" \
    haproxy $names
fi

if [[ " $sections " == *" large "* ]]; then
  for size in 64k 1m; do
    : >"$work/lresults-$size"
    for r in $(seq "$ROUNDS"); do measure "$work/lresults-$size" "/$size" $(rotated "$r" haproxy nginx langur); done
    report "$work/lresults-$size" "== large: $size responses, 1 worker, $CONNS keep-alive connections, median of $ROUNDS runs of ${DUR}s" \
      haproxy haproxy nginx langur
  done
fi

if [[ " $sections " == *" h2c "* ]]; then
  CURL_OPTS=--http2-prior-knowledge
  : >"$work/h2cresults"
  for r in $(seq "$ROUNDS"); do measure_h2 "$work/h2cresults" $(rotated "$r" haproxy-h2c nginx-h2c langur-h2c); done
  CURL_OPTS=
  report "$work/h2cresults" "== h2c: HTTP/2 with prior knowledge, h2load with 10 connections x 100 streams, 1 worker, $BODY-byte responses, median of $ROUNDS runs of ${DUR}s (latency column: h2load's mean per request, ms)" \
    haproxy-h2c haproxy-h2c nginx-h2c langur-h2c
fi

if [[ " $sections " == *" hosts "* ]]; then
  : >"$work/vresults"
  for r in $(seq "$ROUNDS"); do measure "$work/vresults" / $(rotated "$r" haproxy-hosts nginx-hosts langur-hosts); done
  report "$work/vresults" "== hosts: 1000 virtual hosts, requests for the 500th, 1 worker, $CONNS keep-alive connections, $BODY-byte responses, median of $ROUNDS runs of ${DUR}s" \
    haproxy-hosts haproxy-hosts nginx-hosts langur-hosts
fi

if [[ " $sections " == *" limit "* ]]; then
  : >"$work/rresults"
  for r in $(seq "$ROUNDS"); do measure "$work/rresults" / $(rotated "$r" haproxy-limit nginx-limit langur-limit); done
  report "$work/rresults" "== limit: a rate limit per client address that is never reached, 1 worker, $CONNS keep-alive connections, $BODY-byte responses, median of $ROUNDS runs of ${DUR}s" \
    haproxy-limit haproxy-limit nginx-limit langur-limit
fi

if [[ " $sections " == *" static "* ]]; then
  : >"$work/sresults"
  for r in $(seq "$ROUNDS"); do measure "$work/sresults" /body $(rotated "$r" origin langur-static langur-static-cache); done
  report "$work/sresults" "== static: a $BODY-byte file from disk (nginx: the origin row; langur: root, without and with cache), 1 worker, $CONNS keep-alive connections, median of $ROUNDS runs of ${DUR}s" \
    origin origin langur-static langur-static-cache
fi

if [[ " $sections " == *" gzip "* ]]; then
  : >"$work/zresults"
  for r in $(seq "$ROUNDS"); do
    measure "$work/zresults" /page.html $(rotated "$r" nginx-gzip haproxy-gzip langur-gzip langur-gzip-hit langur-identity-hit)
  done
  echo "== gzip: a 64 KiB text/html response compressed at level 1, 1 worker, $CONNS connections, median of $ROUNDS runs of ${DUR}s"
  printf '%-20s %12s %10s %12s %14s\n' server req/s p99_ms cpu_us/req "cpu vs nginx"
  ngx=$(median "$work/zresults" nginx-gzip 4)
  for name in nginx-gzip haproxy-gzip langur-gzip langur-gzip-hit langur-identity-hit; do
    cpu=$(median "$work/zresults" $name 4)
    printf '%-20s %12s %10s %12s %14s\n' $name "$(median "$work/zresults" $name 2)" "$(median "$work/zresults" $name 3)" "$cpu" "$(awk -v a="$cpu" -v b="$ngx" 'BEGIN {printf "%.3f", a/b}')"
  done
  echo "(langur-gzip-hit: the cache's stored gzip form; langur-identity-hit: the same entry for a client that takes identity)"
  best_peer "$work/zresults" nginx-gzip haproxy-gzip langur-gzip
  echo "per run (server req/s p99_ms cpu_us/req user_us/req):"; sed 's/^/  /' "$work/zresults"
fi

if [[ " $sections " == *" cluster "* ]]; then
  command -v redis-server >/dev/null || { echo "bench: the cluster section needs redis-server" >&2; exit 2; }
  taskset -c 0 redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no \
    --maxmemory 256mb --maxmemory-policy allkeys-lfu >"$work/redis.out" 2>&1 &
  echo $! >"$work/redis.pid"; cat "$work/redis.pid" >>"$work/pids"
  for _ in $(seq 50); do redis-cli -p $REDIS_PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
  : >"$work/kresults"
  for r in $(seq "$ROUNDS"); do
    measure "$work/kresults" /cached $(rotated "$r" langur-l1-hit langur-limit langur-limit-cluster)
    measure "$work/kresults" / $(rotated "$r" langur-origin langur-l2-hit)
  done
  echo "== cluster: 1 worker, $CONNS connections, $BODY-byte responses, a local redis-server, median of $ROUNDS runs of ${DUR}s"
  printf '%-22s %12s %10s %12s %14s %16s\n' server req/s p99_ms cpu_us/req redis_us/req "cpu vs origin"
  orig=$(median "$work/kresults" langur-origin 4)
  for name in langur-origin langur-l2-hit langur-l1-hit langur-limit langur-limit-cluster; do
    cpu=$(median "$work/kresults" $name 4)
    printf '%-22s %12s %10s %12s %14s %16s\n' $name "$(median "$work/kresults" $name 2)" "$(median "$work/kresults" $name 3)" "$cpu" \
      "$(median "$work/kresults" $name 6)" "$(awk -v a="$cpu" -v b="$orig" 'BEGIN {printf "%.3f", a/b}')"
  done
  echo "(origin: no cache, every request proxied; l2-hit: 1000 URLs, 64 KiB in memory, Redis behind; l1-hit: one URL in memory;"
  echo " limit: rate_limit per instance; limit-cluster: the same with scope = \"cluster\", one client address)"
  echo "per run (server req/s p99_ms cpu_us/req user_us/req redis_us/req):"; sed 's/^/  /' "$work/kresults"
fi
