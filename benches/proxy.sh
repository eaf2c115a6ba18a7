#!/usr/bin/env bash
# Proxy benchmark, side by side in one run, on loopback:
#   (a) wrk straight at a backend, (b) through aliasd's HTTP proxy, (c) through HAProxy configured
#   for the same backend, each in three cases: keep-alive HTTP/1.1 (`GET /`, a 7-byte body), a new
#   connection per request (`Connection: close`), and a 64 KiB body (keep-alive); then (d) a
#   zero-downtime run: wrk through aliasd's proxy while the alias is promoted back and forth 20
#   times, counting failed requests. The keep-alive case also runs the floor: aliasd's and
#   HAProxy's TCP modes, which copy the same bytes without any HTTP work, so the run shows how
#   far above HAProxy's HTTP throughput a proxy can get on this machine at all.
#   The keep-alive case also runs aliasd-w: a second aliasd whose alias is in a weighted step
#   (promoted to web-v2 with steps `50%:pause,100%`, held at 50%), so that every request pays for
#   the per-client choice; `aliasd weighted/stable` compares it with aliasd, web stable. wrk
#   connects from one address, so all its requests go to one side; the choice (the hash of the
#   client's address) is made for every request whichever side it picks, which is the cost.
# Prints requests/s, p50/p99 latency and the CPU time of the proxy process per request (utime +
# stime from /proc; for "direct", the backend's) for each, in interleaved rounds, then medians and
# the ratios aliasd/HAProxy. On 2 cores wrk, the backend and the proxy share the CPU, so the CPU
# per request is the figure that says what the proxy itself costs.
#
# Usage: bash benches/proxy.sh [seconds per run, default 10] [connections, default 64]
#   also as environment: ROUNDS (default 3), CASES (default "keepalive close 64k"),
#   TARGETS (only these of a case's targets, e.g. "aliasd aliasd-w" for the weighted step's cost
#   alone), PROMOTIONS (default 20; 0 skips the zero-downtime run)
# Needs wrk, haproxy, curl and jq (Debian packages; installed here if missing and we are root).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-10}
CONNS=${2:-64}
PROMOTIONS=${PROMOTIONS:-20}

source benches/common.sh
need_commands wrk:wrk haproxy:haproxy curl:curl jq:jq

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
PROXY_TCP=127.0.0.1:18281
PROXY_W=127.0.0.1:18282
PROXY_W_TCP=127.0.0.1:18283
HAPROXY=127.0.0.1:18380
HAPROXY_TCP=127.0.0.1:18381
API=127.0.0.1:18390
API_W=127.0.0.1:18391
TOKEN=bench-token-0123456789

"$BIN/aliasd" backend --listen "$V1" --name web-v1 >/dev/null 2>&1 & PIDS+=($!)
BACKEND_PID=$!
"$BIN/aliasd" backend --listen "$V2" --name web-v2 >/dev/null 2>&1 & PIDS+=($!)

cat > "$WORK/internal.zone" <<EOF
\$TTL 300
@ IN SOA ns1.internal. hostmaster.internal. ( 1 3600 600 86400 5 )
  IN NS ns1.internal.
ns1 IN A 127.0.0.1
EOF
# aliasd_config HTTP_PROXY TCP_PROXY API STATE_DIR
aliasd_config() {
  cat <<EOF
[dns]
listen = ["127.0.0.1:0"]
alias_ttl = 1
negative_ttl = 1
[[zone]]
origin = "internal."
file = "internal.zone"
[api]
listen = "$3"
[[api.token]]
name = "bench"
secret = "$TOKEN"
[state]
dir = "$4"
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
listen = "$1"
alias = "web"
mode = "http"
[[proxy]]
listen = "$2"
alias = "web"
mode = "tcp"
EOF
}
aliasd_config "$PROXY" "$PROXY_TCP" "$API" state > "$WORK/aliasd.toml"
RUST_LOG=warn "$BIN/aliasd" run --config "$WORK/aliasd.toml" --ready-file "$WORK/ready.json" 2>"$WORK/aliasd.log" & PIDS+=($!)
ALIASD_PID=$!
aliasd_config "$PROXY_W" "$PROXY_W_TCP" "$API_W" state-w > "$WORK/aliasd-w.toml"
RUST_LOG=warn "$BIN/aliasd" run --config "$WORK/aliasd-w.toml" --ready-file "$WORK/ready-w.json" 2>"$WORK/aliasd-w.log" & PIDS+=($!)
ALIASD_W_PID=$!

haproxy_config "$HAPROXY" "$V1" > "$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" -db 2>"$WORK/haproxy.log" & PIDS+=($!)
HAPROXY_PID=$!
haproxy_config "$HAPROXY_TCP" "$V1" tcp > "$WORK/haproxy-tcp.cfg"
haproxy -f "$WORK/haproxy-tcp.cfg" -db 2>"$WORK/haproxy-tcp.log" & PIDS+=($!)
HAPROXY_TCP_PID=$!

for _ in $(seq 100); do [ -f "$WORK/ready.json" ] && [ -f "$WORK/ready-w.json" ] && break; sleep 0.1; done
[ -f "$WORK/ready.json" ] || { echo "aliasd did not start:"; cat "$WORK/aliasd.log"; exit 1; }
[ -f "$WORK/ready-w.json" ] || { echo "aliasd-w did not start:"; cat "$WORK/aliasd-w.log"; exit 1; }
sleep 1

# aliasd-w: web into its 50% step, held until confirmed; then over 40 client addresses its proxy
# sends some to each version (all to one would happen once in 2^39).
weighted_ctl() { ALIASCTL_SERVER="http://$API_W" ALIASCTL_TOKEN=$TOKEN "$BIN/aliasctl" "$@"; }
weighted_ctl promote web --to web-v2 --steps 50%:pause,100% --reason "proxy.sh: a weighted step" >/dev/null
STEP=""
for _ in $(seq 100); do
  STEP=$(weighted_ctl status web --json | jq -r 'select(.weight == 50 and .step.effective_at != null) | .step.effective_at') || true
  [ -n "$STEP" ] && break
  sleep 0.1
done
[ -n "$STEP" ] || { echo "aliasd-w: web is not in a 50% step 10 s after the promotion: $(weighted_ctl status web --json)"; exit 1; }
sides=$(for i in $(seq 40); do curl -s --interface "127.0.0.$i" "http://$PROXY_W/"; done | sort | uniq -c)
if ! grep -q ' web-v1$' <<<"$sides" || ! grep -q ' web-v2$' <<<"$sides"; then
  echo "aliasd-w's proxy does not split 40 clients between web-v1 and web-v2: $sides"; exit 1
fi
WRK_SIDE=$(curl -s "http://$PROXY_W/")

# CPU ticks (utime + stime, all threads) of a process.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_HZ=$(getconf CLK_TCK)

# Runs wrk at ADDR for CASE while measuring PID's CPU; prints "req/s p50_ms p99_ms cpu_us_per_req".
measure() {
  local addr=$1 case=$2 pid=$3 label=$4 out args path=/
  args=()
  case $case in
    close) args=(-H "Connection: close") ;;
    64k) path="/bytes?n=65536" ;;
  esac
  local before after
  before=$(ticks "$pid")
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "${args[@]}" "http://$addr$path" 2>&1)
  after=$(ticks "$pid")
  echo "$out" > "$WORK/wrk-$label.txt"
  local rps p50 p99 n errs
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  errs=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
  if [ -n "$errs" ] && [ "$errs" != 0 ]; then echo "warning: $label: $errs non-2xx answers" >&2; fi
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $(awk -v t=$((after - before)) -v n="${n:-0}" -v hz="$TICK_HZ" 'BEGIN { printf "%.2f", (n > 0) ? t * 1e6 / hz / n : 0 }')"
}
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.3f", n }'
}

ROUNDS=${ROUNDS:-3}
CASES=${CASES:-"keepalive close 64k"}
describe() {
  case $1 in
    keepalive) echo "keep-alive HTTP/1.1, GET / (7-byte body)" ;;
    close) echo "a new connection per request (Connection: close)" ;;
    64k) echo "keep-alive, a 64 KiB body" ;;
  esac
}
# The targets of a case: the floor (TCP mode on both sides) and the weighted step only for
# keep-alive; only those in TARGETS, when set.
targets() {
  local t
  if [ "$1" = keepalive ]; then t="direct aliasd aliasd-w haproxy aliasd-tcp haproxy-tcp"; else t="direct aliasd haproxy"; fi
  if [ -n "${TARGETS:-}" ]; then t=$(tr ' ' '\n' <<<"$t" | grep -Fxf <(tr ' ' '\n' <<<"$TARGETS") | tr '\n' ' '); fi
  echo $t
}
echo "wrk -t2 -c$CONNS -d${SECS}s, one backend, all on loopback ($(nproc) cores); $ROUNDS rounds, cases and targets in turn"
echo "aliasd $(git rev-parse --short HEAD 2>/dev/null || echo '?') (target/release); $(haproxy -v | head -1); $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
echo "aliasd-w: web in its 50% step since $STEP; wrk's 127.0.0.1 is sent to $WRK_SIDE (one side, but the choice is made for every request)"
printf "%-6s %-10s %-12s %12s %10s %10s %12s\n" round case target "req/s" "p50 ms" "p99 ms" "cpu µs/req"
: > "$WORK/rounds.txt"
for round in $(seq "$ROUNDS"); do
  for case in $CASES; do
    for target in $(targets "$case"); do
      case $target in
        direct) addr=$V1 pid=$BACKEND_PID ;;
        aliasd) addr=$PROXY pid=$ALIASD_PID ;;
        aliasd-w) addr=$PROXY_W pid=$ALIASD_W_PID ;;
        haproxy) addr=$HAPROXY pid=$HAPROXY_PID ;;
        aliasd-tcp) addr=$PROXY_TCP pid=$ALIASD_PID ;;
        haproxy-tcp) addr=$HAPROXY_TCP pid=$HAPROXY_TCP_PID ;;
      esac
      read -r rps p50 p99 cpu < <(measure "$addr" "$case" "$pid" "$case-$target-$round")
      printf "%-6s %-10s %-12s %12.0f %10.3f %10.3f %12.2f\n" "$round" "$case" "$target" "$rps" "$p50" "$p99" "$cpu"
      echo "$round $case $target $rps $p50 $p99 $cpu" >> "$WORK/rounds.txt"
    done
  done
done
# Medians over the rounds, and the ratios of the medians.
median() { awk -v c="$1" -v t="$2" -v k="$3" '$2 == c && $3 == t {print $k}' "$WORK/rounds.txt" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ran() { grep -q "^[0-9]* $1 $2 " "$WORK/rounds.txt"; } # whether CASE TARGET ran
echo
echo "medians of $ROUNDS rounds (cpu µs/req: the proxy process; for direct, the backend)"
for case in $CASES; do
  echo "case: $(describe "$case")"
  printf "  %-12s %12s %10s %10s %12s\n" target "req/s" "p50 ms" "p99 ms" "cpu µs/req"
  for target in $(targets "$case"); do
    printf "  %-12s %12.0f %10.3f %10.3f %12.2f\n" "$target" "$(median "$case" "$target" 4)" \
      "$(median "$case" "$target" 5)" "$(median "$case" "$target" 6)" "$(median "$case" "$target" 7)"
  done
  ran "$case" aliasd && ran "$case" haproxy && ran "$case" direct &&
  awk -v a="$(median "$case" aliasd 4)" -v h="$(median "$case" haproxy 4)" -v d="$(median "$case" direct 4)" \
    -v ap="$(median "$case" aliasd 6)" -v hp="$(median "$case" haproxy 6)" \
    -v ac="$(median "$case" aliasd 7)" -v hc="$(median "$case" haproxy 7)" 'BEGIN {
    printf "  aliasd/haproxy: throughput %.2f, p99 %.2f, cpu per request %.2f   aliasd/direct throughput %.2f\n",
      a / h, ap / hp, ac / hc, a / d }'
  if ran "$case" aliasd && ran "$case" aliasd-w; then
    awk -v w="$(median "$case" aliasd-w 7)" -v s="$(median "$case" aliasd 7)" -v wr="$(median "$case" aliasd-w 4)" -v sr="$(median "$case" aliasd 4)" 'BEGIN {
      printf "  aliasd weighted/stable (web in a 50%% step against stable): cpu per request %.3f, throughput %.3f\n", w / s, wr / sr }'
    if [ "$ROUNDS" -gt 1 ]; then
      echo "    per round, cpu per request: $(awk -v c="$case" '$2 == c && $3 == "aliasd" {s[$1] = $7} $2 == c && $3 == "aliasd-w" {w[$1] = $7}
        END {for (r = 1; r in s; r++) printf "%s%.3f", (r > 1 ? " " : ""), w[r] / s[r]}' "$WORK/rounds.txt")"
    fi
  fi
  if [ "$case" = keepalive ] && ran "$case" haproxy && ran "$case" haproxy-tcp && ran "$case" aliasd-tcp; then
    awk -v h="$(median "$case" haproxy 4)" -v ht="$(median "$case" haproxy-tcp 4)" -v at="$(median "$case" aliasd-tcp 4)" 'BEGIN {
      printf "  floor, bytes copied with no HTTP work: haproxy-tcp/haproxy throughput %.2f, aliasd-tcp/haproxy %.2f\n", ht / h, at / h }'
  fi
done

# The figures the proxy is held to, last: keep-alive CPU per request and p99 against HAProxy's.
summary() {
  if ran keepalive aliasd && ran keepalive haproxy; then
    awk -v ac="$(median keepalive aliasd 7)" -v hc="$(median keepalive haproxy 7)" \
      -v ap="$(median keepalive aliasd 6)" -v hp="$(median keepalive haproxy 6)" 'BEGIN {
      printf "keep-alive aliasd/haproxy: cpu per request %.2f (target <= 0.80), p99 %.2f (target <= 1.00)\n", ac / hc, ap / hp }'
  fi
}
if [ "$PROMOTIONS" -eq 0 ]; then summary; exit 0; fi

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
summary
