#!/usr/bin/env bash
# Starts langur (a child of this script) in the foreground for the peer benchmark: listens on 127.0.0.1:$PORT and balances
# round-robin over $BACKENDS (space-separated host:port) with one worker and no access log.
# Extra environment: LANGUR_BIN (default target/release/langur), WORKERS (default 1).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${LANGUR_BIN:-$here/target/release/langur}
cfg=$(mktemp -t langur-bench.XXXX.toml)
servers=""
for b in $BACKENDS; do servers="$servers\"$b\", "; done
cat >"$cfg" <<CONF
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
servers = [${servers%, }]
CONF
# langur runs as a child, so the config file goes with it when it is stopped.
"$bin" run -c "$cfg" --workers "${WORKERS:-1}" --no-access-log &
child=$!
trap 'kill "$child" 2>/dev/null; wait "$child"; rm -f "$cfg"; exit 0' TERM INT
wait "$child"
rm -f "$cfg"
