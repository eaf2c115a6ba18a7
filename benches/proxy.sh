#!/usr/bin/env bash
# Proxy benchmark, side by side in one run, on loopback:
#   (a) wrk straight at a backend, (b) through aliasd's HTTP proxy, (c) through HAProxy configured
#   for the same backend; then (d) a zero-downtime run: wrk through aliasd's proxy while the alias
#   is promoted back and forth 20 times, counting failed requests.
# Prints requests/s and p50/p99 latency for each, with the ratios aliasd/HAProxy and aliasd/direct.
#
# Usage: bash benches/proxy.sh [seconds per run, default 10] [connections, default 64]
# Needs wrk and haproxy (Debian packages; installed here if missing and we are root).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-10}
CONNS=${2:-64}
PROMOTIONS=${PROMOTIONS:-20}

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "missing: ${need[*]} (apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

cargo build --release -q --bin aliasd --bin aliasctl
BIN=target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

V1=127.0.0.61:18181
V2=127.0.0.62:18181
PROXY=127.0.0.1:18280
HAPROXY=127.0.0.1:18380
API=127.0.0.1:18390
TOKEN=bench-token-0123456789

"$BIN/aliasd" backend --listen "$V1" --name web-v1 2>/dev/null & PIDS+=($!)
"$BIN/aliasd" backend --listen "$V2" --name web-v2 2>/dev/null & PIDS+=($!)

cat > "$WORK/internal.zone" <<EOF
\$TTL 300
@ IN SOA ns1.internal. hostmaster.internal. ( 1 3600 600 86400 5 )
  IN NS ns1.internal.
ns1 IN A 127.0.0.1
EOF
cat > "$WORK/aliasd.toml" <<EOF
[dns]
listen = ["127.0.0.1:0"]
alias_ttl = 1
negative_ttl = 1
[[zone]]
origin = "internal."
file = "internal.zone"
[api]
listen = "$API"
[[api.token]]
name = "bench"
secret = "$TOKEN"
[state]
dir = "state"
[health]
kind = "http"
path = "/healthz"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 2
[promotion]
observe = "500ms"
drain_grace = "200ms"
[[service]]
name = "web-v1"
endpoints = ["$V1"]
[[service]]
name = "web-v2"
endpoints = ["$V2"]
[[alias]]
name = "web"
targets = ["web-v1"]
[[proxy]]
listen = "$PROXY"
alias = "web"
mode = "http"
EOF
RUST_LOG=warn "$BIN/aliasd" run --config "$WORK/aliasd.toml" --ready-file "$WORK/ready.json" 2>"$WORK/aliasd.log" & PIDS+=($!)

cat > "$WORK/haproxy.cfg" <<EOF
global
  maxconn 4096
  nbthread 2
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend web
  bind $HAPROXY
  default_backend web
backend web
  balance leastconn
  http-reuse safe
  server v1 $V1
EOF
haproxy -f "$WORK/haproxy.cfg" -db 2>"$WORK/haproxy.log" & PIDS+=($!)

for _ in $(seq 100); do [ -f "$WORK/ready.json" ] && break; sleep 0.1; done
[ -f "$WORK/ready.json" ] || { echo "aliasd did not start:"; cat "$WORK/aliasd.log"; exit 1; }
sleep 1

# Runs wrk; prints "req/s p50_ms p99_ms" (latencies normalised to milliseconds).
measure() {
  local out
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "http://$1/" 2>&1)
  echo "$out" > "$WORK/wrk-$2.txt"
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.3f", n }'
}

ROUNDS=${ROUNDS:-3}
echo "wrk -t2 -c$CONNS -d${SECS}s, one backend, all on loopback ($(nproc) cores); $ROUNDS rounds, the three targets in turn"
printf "%-6s %-10s %12s %10s %10s\n" round target "req/s" "p50 ms" "p99 ms"
: > "$WORK/rounds.txt"
for round in $(seq "$ROUNDS"); do
  for target in direct aliasd haproxy; do
    case $target in direct) addr=$V1 ;; aliasd) addr=$PROXY ;; haproxy) addr=$HAPROXY ;; esac
    read -r rps p50 p99 < <(measure "$addr" "$target-$round")
    printf "%-6s %-10s %12.0f %10.3f %10.3f\n" "$round" "$target" "$rps" "$p50" "$p99"
    echo "$round $target $rps $p50 $p99" >> "$WORK/rounds.txt"
  done
done
# Medians over the rounds, and the ratios of the medians.
median() { awk -v t="$1" -v c="$2" '$2 == t {print $c}' "$WORK/rounds.txt" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo "median of $ROUNDS rounds:"
printf "%-10s %12s %10s %10s\n" target "req/s" "p50 ms" "p99 ms"
for target in direct aliasd haproxy; do
  printf "%-10s %12.0f %10.3f %10.3f\n" "$target" "$(median "$target" 3)" "$(median "$target" 4)" "$(median "$target" 5)"
done
awk -v a="$(median aliasd 3)" -v h="$(median haproxy 3)" -v d="$(median direct 3)" 'BEGIN {
  printf "throughput ratio aliasd/haproxy: %.2f   aliasd/direct: %.2f\n", a / h, a / d }'

# Zero downtime: constant load through the proxy while the alias moves back and forth:
# promotions, aborts in the middle of a promotion, and rollbacks, in turn.
echo
echo "zero-downtime run: $PROMOTIONS operations (promote, abort, rollback in turn) under wrk load through aliasd's proxy"
export ALIASCTL_SERVER="http://$API" ALIASCTL_TOKEN="$TOKEN"
LOAD_SECS=$((PROMOTIONS * 6 + 30))
wrk -t2 -c32 -d"${LOAD_SECS}s" "http://$PROXY/" > "$WORK/wrk-zero.txt" 2>&1 & WRK=$!
PIDS+=("$WRK")
sleep 1
other() {
  if "$BIN/aliasctl" status web | grep -qE '^targets: +web-v1$'; then echo web-v2; else echo web-v1; fi
}
ok=0; promotes=0; aborts=0; rollbacks=0
for i in $(seq "$PROMOTIONS"); do
  case $((i % 3)) in
    1)
      if "$BIN/aliasctl" promote web --to "$(other)" --wait --timeout 60s >/dev/null; then ok=$((ok + 1)); fi
      promotes=$((promotes + 1)) ;;
    2)
      "$BIN/aliasctl" promote web --to "$(other)" --observe 5s >/dev/null
      for _ in $(seq 100); do
        "$BIN/aliasctl" status web | grep -qE '^phase: +mixed' && break
        sleep 0.05
      done
      if "$BIN/aliasctl" abort web --reason "bench abort" >/dev/null; then ok=$((ok + 1)); fi
      aborts=$((aborts + 1))
      sleep 1.5 ;; # let the aborted version's answers age out before the next operation
    0)
      if "$BIN/aliasctl" rollback web --wait --timeout 60s >/dev/null; then ok=$((ok + 1)); fi
      rollbacks=$((rollbacks + 1)) ;;
  esac
done
kill -INT "$WRK" 2>/dev/null || true
wait "$WRK" 2>/dev/null || true
total=$(awk '/requests in/ {print $1}' "$WORK/wrk-zero.txt")
non2xx=$(awk '/Non-2xx or 3xx responses/ {print $5}' "$WORK/wrk-zero.txt")
sockerr=$(awk '/Socket errors/ { for (i = 1; i <= NF; i++) { v = $i; sub(/,$/, "", v); if (v ~ /^[0-9]+$/) s += v } } END { print s + 0 }' "$WORK/wrk-zero.txt")
echo "operations: $promotes promotions, $aborts aborts, $rollbacks rollbacks; $ok/$PROMOTIONS ended as asked"
echo "requests: ${total:-0}, non-2xx: ${non2xx:-0}, socket errors: ${sockerr:-0}"
echo "failed requests: $(( ${non2xx:-0} + ${sockerr:-0} ))"
