#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind's callgrind: a figure that
# does not move with the machine's noise, for comparing one change with the next and aliasd's
# HTTP proxy with HAProxy's. Both run under callgrind with instrumentation switched on only
# while `wrk -t1 -c4` sends keep-alive `GET /` for a few seconds; instructions / requests.
# (Kernel time is not counted: both make the same system calls per request, see the README.)
#
# Usage: bash benches/proxy_instructions.sh [seconds, default 8]
# Needs valgrind, wrk and haproxy (Debian packages; installed here if missing and we are root).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}

source benches/common.sh
need_commands valgrind:valgrind wrk:wrk haproxy:haproxy

cargo build --release -q --bin aliasd
BIN=$PWD/target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP_CG:-}" ] && cp "$WORK"/*.cg.* "$KEEP_CG"/ 2>/dev/null; rm -rf "$WORK"
}
trap cleanup EXIT

BACKEND=127.0.0.63:18481
PROXY=127.0.0.1:18482
HAPROXY=127.0.0.1:18483
"$BIN/aliasd" backend --listen "$BACKEND" --name web-v1 >/dev/null 2>&1 & PIDS+=($!)
printf '$TTL 300\n@ IN SOA ns1.internal. hostmaster.internal. ( 1 3600 600 86400 5 )\n  IN NS ns1.internal.\nns1 IN A 127.0.0.1\n' > "$WORK/internal.zone"
cat > "$WORK/aliasd.toml" <<CONF
[dns]
listen = ["127.0.0.1:0"]
[[zone]]
origin = "internal."
file = "internal.zone"
[api]
listen = "127.0.0.1:0"
[state]
dir = "state"
[health]
kind = "none"
[[service]]
name = "web-v1"
endpoints = ["$BACKEND"]
[[alias]]
name = "web"
targets = ["web-v1"]
[[proxy]]
listen = "$PROXY"
alias = "web"
mode = "http"
CONF
haproxy_config "$HAPROXY" "$BACKEND" > "$WORK/haproxy.cfg"

# Runs COMMAND under callgrind, loads ADDR, prints "requests instructions".
count() {
  local name=$1 addr=$2; shift 2
  (cd "$WORK" && exec valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$WORK/$name.cg.%p" "$@" 2>"$WORK/$name.log") & local vp=$!
  PIDS+=("$vp")
  local up=0
  for _ in $(seq 240); do
    if curl -s -m 1 "http://$addr/" 2>/dev/null | grep -q web-v1; then up=1; break; fi
    sleep 0.5
  done
  [ "$up" -eq 1 ] || { echo "$name did not answer under valgrind:" >&2; tail "$WORK/$name.log" >&2; exit 1; }
  sleep 1
  callgrind_control -i on "$vp" >/dev/null 2>&1
  local out
  out=$(wrk -t1 -c4 -d"${SECS}s" "http://$addr/" 2>&1)
  callgrind_control -i off "$vp" >/dev/null 2>&1
  kill "$vp"; wait "$vp" 2>/dev/null || true
  local n ir
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  ir=$(awk '/Collected :/ {gsub(/,/, ""); s += $NF} END {print s + 0}' "$WORK/$name.log")
  echo "$n $ir"
}

echo "callgrind, wrk -t1 -c4 -d${SECS}s keep-alive GET / (instructions counted only under load)"
export RUST_LOG=warn # (valgrind would not follow an `env` wrapper into aliasd)
read -r an ai < <(count aliasd "$PROXY" "$BIN/aliasd" run --config "$WORK/aliasd.toml")
read -r hn hi < <(count haproxy "$HAPROXY" haproxy -f "$WORK/haproxy.cfg" -db)
awk -v an="$an" -v ai="$ai" -v hn="$hn" -v hi="$hi" 'BEGIN {
  printf "%-8s %10s %16s %14s\n", "proxy", "requests", "instructions", "per request"
  printf "%-8s %10d %16d %14.0f\n", "aliasd", an, ai, ai / an
  printf "%-8s %10d %16d %14.0f\n", "haproxy", hn, hi, hi / hn
  printf "aliasd/haproxy instructions per request: %.2f\n", (ai / an) / (hi / hn) }'
