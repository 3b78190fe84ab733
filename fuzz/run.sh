#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after the other.
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). New inputs go to
# fuzz/target/corpus/TARGET; the committed seeds in fuzz/corpus/TARGET are only read.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
for t in legacy_config toml_config router request_head upstream_response; do
    mkdir -p "target/corpus/$t"
    echo "== $t for ${seconds}s"
    cargo +nightly fuzz run -O "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 2>&1 | grep -E "^Done|ERROR|panicked|SUMMARY|Test unit written" || true
    # libFuzzer exits non-zero on a crash; the artifact is in fuzz/artifacts/TARGET.
    if compgen -G "artifacts/$t/*" > /dev/null; then
        echo "crash found in $t: $(ls artifacts/$t)"; exit 1
    fi
done
