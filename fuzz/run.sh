#!/usr/bin/env bash
# Runs every fuzz target for a fixed time: FUZZ_SECONDS each (default 20), from the seeds in
# fuzz/seeds/<target> plus what earlier runs kept in fuzz/corpus/<target>. Fails on the first
# crash, leak or timeout; libFuzzer writes the input to fuzz/artifacts/<target>/ and this prints
# how to replay it. FUZZ_BUILD=release for a long run (optimized, ~10x the executions per
# second, slower to build); the default dev build keeps CI's build short.
#
#   bash fuzz/run.sh                          # all targets, 20 s each
#   FUZZ_SECONDS=3600 FUZZ_BUILD=release bash fuzz/run.sh dns_server
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1 # cargo fuzz needs nightly flags; this is the machine's stable toolchain
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz@0.13.2
seconds=${FUZZ_SECONDS:-20}
mode=(--dev)
[ "${FUZZ_BUILD:-dev}" = release ] && mode=(-O)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dns_udp dns_server zonefile config state docker http1)
cargo fuzz build "${mode[@]}"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== fuzz $t for ${seconds}s"
  out=$(mktemp)
  if ! cargo fuzz run "${mode[@]}" "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 >"$out" 2>&1; then
    tail -n 60 "$out"
    echo "fuzz target $t failed; replay with: RUSTC_BOOTSTRAP=1 cargo fuzz run ${mode[*]} $t fuzz/artifacts/$t/<file>" >&2
    rm -f "$out"
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|DONE' "$out" | tr '\n' ' '
  echo
  rm -f "$out"
done
