#!/usr/bin/env bash
# DNS benchmark, side by side in one run, on loopback: aliasd against Knot DNS and NSD, each
# serving the same `internal.` zone (SOA, NS, 100 static A names and the alias web.internal with
# 3 A records, 3 SRV records and the per-address host names). aliasd gets the alias from its config
# ([[service]] web-v1 + [[alias]] web); Knot and NSD get the same records in their zone file.
#
# For each server and each query file (alias A only; a fixed mix), in interleaved rounds:
#   (i)  saturation: dnsperf with a fixed number of outstanding queries, for QPS, average and p99
#        latency, and how busy the server's core was (below ~95% the client was the limit);
#   (ii) a fixed offered rate (dnsperf -Q, default 50,000/s): the server's CPU time (utime+stime of
#        all its processes and threads) per answered query.
# Prints the medians over the rounds and the ratios aliasd/Knot and aliasd/NSD.
# A fourth server, aliasd-w, is a second aliasd with the same zone and a web-v2 of as many
# endpoints, where `web` was promoted to web-v2 with steps `50%:pause,100%` and sits in its 50%
# step: every query for the alias's names pays for the per-client choice (the bucket hash of the
# source address). It runs in the same rounds, and `aliasd weighted/stable` is printed near the end.
# dnsperf sends from one address (127.0.0.1), so all its queries get one side; that measures the
# cost all the same, since the hash is computed for every query whichever side it picks.
# Each server runs alone on CPU 1 (one UDP socket/worker each), dnsperf on CPU 0.
#
# Then, unless SCALE=0 (or --quick), `cargo bench --bench dns_scale`: switch latency under load
# and the 10,000-alias scale figures (see benches/dns_scale.rs), after the servers above stopped.
#
# Usage: bash benches/dns.sh [--quick] [seconds per run, default 5] [rounds, default 3]
#   also as environment: SECS, ROUNDS, RATE (offered rate, default 50000),
#   SAT_ARGS (dnsperf load options at saturation, default "-c 1 -q 100"), PORT_BASE (default 15300:
#   aliasd +1, knot +2, nsd +3, aliasd-w +4, aliasd's API +91, aliasd-w's +92), RETRIES (default 4: measurements taken again
#   because other processes or the hypervisor took CPU time). --quick: 1 second, 1 round (a smoke run).
# Needs knot, nsd, dnsperf, dig and jq (Debian packages; installed here if missing and we are root).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
if [ "$QUICK" -eq 1 ]; then SECS=${1:-1}; ROUNDS=${2:-1}; SCALE=${SCALE:-0}; else SECS=${1:-${SECS:-5}}; ROUNDS=${2:-${ROUNDS:-3}}; fi
RATE=${RATE:-50000}
SAT_ARGS=${SAT_ARGS:-"-c 1 -q 100"}
PORT_BASE=${PORT_BASE:-15300}
SERVER_CPU=1
CLIENT_CPU=0

source benches/common.sh
need_commands knotd:knot nsd:nsd dnsperf:dnsperf dig:bind9-dnsutils jq:jq
if [ "$(nproc)" -lt 2 ]; then
  echo "needs 2 cores (server on CPU $SERVER_CPU, dnsperf on CPU $CLIENT_CPU); this machine has $(nproc)" >&2
  exit 1
fi

cargo build --release -q --bin aliasd --bin aliasctl
BIN=target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Bounded: a server that ignores SIGTERM for 5 s gets SIGKILL (only the PIDs we started).
  for _ in $(seq 50); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ALIASD_PORT=$((PORT_BASE + 1))
KNOT_PORT=$((PORT_BASE + 2))
NSD_PORT=$((PORT_BASE + 3))
WEIGHTED_PORT=$((PORT_BASE + 4))
API_PORT=$((PORT_BASE + 91))
WEIGHTED_API_PORT=$((PORT_BASE + 92))
SERVERS="aliasd aliasd-w knot nsd"
port_of() { case $1 in aliasd) echo "$ALIASD_PORT" ;; aliasd-w) echo "$WEIGHTED_PORT" ;; knot) echo "$KNOT_PORT" ;; nsd) echo "$NSD_PORT" ;; esac; }
declare -A PID_OF TREE_OF LOG_OF

fail() {
  echo "dns.sh: $*" >&2
  for s in $SERVERS; do
    if [ -n "${LOG_OF[$s]:-}" ] && [ -s "${LOG_OF[$s]}" ]; then
      echo "--- $s log (last lines):" >&2
      tail -n 15 "${LOG_OF[$s]}" >&2
    fi
  done
  exit 1
}

if command -v ss >/dev/null 2>&1; then
  for p in $ALIASD_PORT $KNOT_PORT $NSD_PORT $WEIGHTED_PORT $API_PORT $WEIGHTED_API_PORT; do
    if ss -Hlnu | awk '{print $4}' | grep -q ":$p\$" || ss -Hlnt | awk '{print $4}' | grep -q ":$p\$"; then
      fail "port $p is in use by another process; pick other ports with PORT_BASE=..."
    fi
  done
fi

# The zone. aliasd's file holds the static part only (it refuses a name that collides with an
# alias); Knot's and NSD's hold the same plus the alias's records, written as aliasd answers them.
static_zone() {
  echo "\$ORIGIN internal."
  echo "\$TTL 300"
  # The SOA TTL and minimum are 5: aliasd holds both to dns.negative_ttl.
  echo "@ 5 IN SOA ns1.internal. hostmaster.internal. ( $1 3600 600 86400 5 )"
  echo "  IN NS ns1.internal."
  echo "ns1 IN A 127.0.0.1"
  for i in $(seq 0 99); do echo "host$i IN A 10.1.0.$i"; done
}
static_zone 1 > "$WORK/aliasd.zone"

# aliasd_config DNS_PORT API_PORT STATE_DIR [SERVICES]: the stable aliasd's config, and with the
# extra service the weighted one's.
aliasd_config() {
  cat <<EOF
[dns]
listen = ["127.0.0.1:$1"]
udp_sockets = 1
alias_ttl = 5
negative_ttl = 5
[[zone]]
origin = "internal."
file = "aliasd.zone"
[api]
listen = "127.0.0.1:$2"
[[api.token]]
name = "bench"
secret = "$TOKEN"
[state]
dir = "$3"
[health]
kind = "none"
[[service]]
name = "web-v1"
endpoints = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
${4:-}
[[alias]]
name = "web"
targets = ["web-v1"]
EOF
}
TOKEN=bench-token-0123456789
aliasd_config "$ALIASD_PORT" "$API_PORT" state > "$WORK/aliasd.toml"
# web-v2's addresses are as long as web-v1's, so both sides' answers have the same size.
aliasd_config "$WEIGHTED_PORT" "$WEIGHTED_API_PORT" state-w '[[service]]
name = "web-v2"
endpoints = ["10.0.0.4:8080", "10.0.0.5:8080", "10.0.0.6:8080"]' > "$WORK/aliasd-w.toml"
for s in aliasd aliasd-w; do
  LOG_OF[$s]=$WORK/$s.log
  RUST_LOG=warn taskset -c $SERVER_CPU "$BIN/aliasd" run --config "$WORK/$s.toml" --ready-file "$WORK/$s.ready.json" \
    2>"${LOG_OF[$s]}" & PIDS+=($!)
  PID_OF[$s]=$!
done

dig_at() { local port=$1; shift; dig @127.0.0.1 -p "$port" +norec +noedns +time=2 +tries=1 "$@" </dev/null; }
# Waits until SERVER answers the zone's SOA (and is still the process we started).
wait_serving() {
  local s=$1 _
  for _ in $(seq 100); do
    kill -0 "${PID_OF[$s]}" 2>/dev/null || fail "$s exited during start"
    dig_at "$(port_of "$s")" +short internal SOA 2>/dev/null | grep -q hostmaster && return 0
    sleep 0.1
  done
  fail "$s does not answer internal. SOA on 127.0.0.1:$(port_of "$s") after 10 s"
}
for s in aliasd aliasd-w; do
  for _ in $(seq 100); do [ -f "$WORK/$s.ready.json" ] && break; sleep 0.1; done
  [ -f "$WORK/$s.ready.json" ] || fail "$s wrote no ready file in 10 s"
  wait_serving "$s"
done

# aliasd-w: web into its 50% step, which holds until confirmed; waits until the step is in effect.
weighted_ctl() { ALIASCTL_SERVER="http://127.0.0.1:$WEIGHTED_API_PORT" ALIASCTL_TOKEN=$TOKEN "$BIN/aliasctl" "$@"; }
weighted_ctl promote web --to web-v2 --steps 50%:pause,100% --reason "dns.sh: a weighted step" >/dev/null 2>"$WORK/promote.err" ||
  fail "aliasd-w: the promotion with steps failed: $(cat "$WORK/promote.err")"
STEP=""
for _ in $(seq 100); do
  STEP=$(weighted_ctl status web --json | jq -r 'select(.weight == 50 and .step.effective_at != null) | .step.effective_at') || true
  [ -n "$STEP" ] && break
  sleep 0.1
done
[ -n "$STEP" ] || fail "aliasd-w: web is not in a 50% step in effect 10 s after the promotion: $(weighted_ctl status web --json)"

# aliasd bumps the serial at every start; Knot and NSD serve the one it serves, so that negative
# answers (which carry the SOA) are equal too.
SERIAL=$(dig_at "$ALIASD_PORT" +short internal SOA | awk '{print $3}')
{
  static_zone "$SERIAL"
  for n in 1 2 3; do echo "web 5 IN A 10.0.0.$n"; done
  for n in 1 2 3; do echo "_http._tcp.web 5 IN SRV 0 1 8080 10-0-0-$n.web.internal."; done
  # aliasd also answers SRV at the alias itself, for clients that do not build the _http._tcp owner.
  for n in 1 2 3; do echo "web 5 IN SRV 0 1 8080 10-0-0-$n.web.internal."; done
  for n in 1 2 3; do echo "10-0-0-$n.web 5 IN A 10.0.0.$n"; done
} > "$WORK/full.zone"

mkdir -p "$WORK/knot"
cat > "$WORK/knot.conf" <<EOF
server:
    rundir: "$WORK/knot"
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "$WORK/knot/knot.sock"
log:
  - target: stderr
    any: warning
database:
    storage: "$WORK/knot"
template:
  - id: default
    storage: "$WORK/knot"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: internal.
    file: "$WORK/full.zone"
EOF
LOG_OF[knot]=$WORK/knot.log
taskset -c $SERVER_CPU knotd -c "$WORK/knot.conf" 2>"${LOG_OF[knot]}" & PIDS+=($!)
PID_OF[knot]=$!

mkdir -p "$WORK/nsd"
# rrl-ratelimit 0: Debian's NSD is built with rate limiting, 200 qps per source by default.
# minimal-responses: without it NSD adds the apex NS and its address to every positive answer,
# which aliasd and Knot do not; with it NSD also leaves out the SRV targets' addresses (reported
# by the answer check below).
cat > "$WORK/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@$NSD_PORT
    do-ip6: no
    server-count: 1
    username: ""
    chroot: ""
    database: ""
    zonesdir: "$WORK/nsd"
    zonelistfile: "$WORK/nsd/zone.list"
    xfrdfile: "$WORK/nsd/xfrd.state"
    xfrdir: "$WORK/nsd"
    pidfile: "$WORK/nsd/nsd.pid"
    logfile: "$WORK/nsd.log"
    verbosity: 1
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    minimal-responses: yes
remote-control:
    control-enable: no
zone:
    name: internal.
    zonefile: "$WORK/full.zone"
EOF
LOG_OF[nsd]=$WORK/nsd.log
taskset -c $SERVER_CPU nsd -d -c "$WORK/nsd.conf" 2>>"${LOG_OF[nsd]}" & PIDS+=($!)
PID_OF[nsd]=$!
wait_serving knot
wait_serving nsd

# A process and all its descendants (NSD forks a main and a server process off the one we start).
tree() {
  local child
  echo "$1"
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree "$child"; done
}
for s in $SERVERS; do
  TREE_OF[$s]=$(tree "${PID_OF[$s]}" | tr '\n' ' ')
  for pid in ${TREE_OF[$s]}; do
    [ "$pid" = "${PID_OF[$s]}" ] || PIDS+=("$pid") # stopped with the rest, should they outlive their parent
    # knotd pins its UDP workers itself (worker i to CPU i mod ncpu), which overrides taskset:
    # the one UDP worker would run on CPU 0 beside dnsperf. Pin every thread again, then check.
    taskset -a -p -c $SERVER_CPU "$pid" >/dev/null
    for task in /proc/"$pid"/task/*; do
      allowed=$(awk '/^Cpus_allowed_list/ {print $2}' "$task/status" 2>/dev/null || true)
      [ -z "$allowed" ] || [ "$allowed" = "$SERVER_CPU" ] ||
        fail "$s thread ${task##*/} may run on CPUs $allowed, not only $SERVER_CPU"
    done
  done
done

# Query files, the same for every server.
echo "web.internal A" > "$WORK/alias.txt"
mix_lines() {
  local i
  for i in $(seq 40); do echo "web.internal A"; done                   # 40% alias A
  for i in $(seq 0 19); do echo "host$((i * 5 + 2)).internal A"; done  # 20% static A, 20 names
  for i in $(seq 15); do echo "_http._tcp.web.internal SRV"; done      # 15% SRV
  for i in $(seq 0 14); do echo "nx$i.internal A"; done                # 15% NXDOMAIN, 15 names
  for q in "web.internal TXT" "web.internal TXT" "web.internal TXT" "web.internal AAAA" \
    "web.internal AAAA" "host3.internal AAAA" "host3.internal AAAA" "host42.internal TXT" \
    "host42.internal MX" "_tcp.web.internal SRV"; do echo "$q"; done   # 10% NODATA
}
# A fixed permutation (37 is prime to 100) spreads each kind over the file.
mix_lines | awk '{l[NR - 1] = $0} END {for (i = 0; i < NR; i++) print l[(i * 37) % NR]}' > "$WORK/mix.txt"
[ "$(wc -l < "$WORK/mix.txt")" -eq 100 ] || fail "the mix file should have 100 lines"
FILES="alias mix"
describe() {
  case $1 in
    alias) echo "alias A (web.internal A only)" ;;
    mix) echo "mix: 40% alias A, 20% static A (20 names), 15% SRV, 15% NXDOMAIN (15 names), 10% NODATA (TXT/AAAA/MX, an empty non-terminal)" ;;
  esac
}

# Correctness: each server answers the alias with its 3 addresses and a missing name with
# NXDOMAIN; then every distinct query of both files gets the same status, answer and authority
# from all three (sorted: servers may order records differently).
for s in aliasd knot nsd; do
  got=$(dig_at "$(port_of "$s")" +short web.internal A | sort | tr '\n' ' ')
  [ "$got" = "10.0.0.1 10.0.0.2 10.0.0.3 " ] || fail "$s answers web.internal A with '$got', not 10.0.0.1 10.0.0.2 10.0.0.3"
  dig_at "$(port_of "$s")" not-there.internal A | grep -q 'status: NXDOMAIN' ||
    fail "$s does not answer NXDOMAIN for not-there.internal A"
done
# aliasd-w splits the clients: over 40 source addresses both sides show up (all on one side would
# happen once in 2^39), and dnsperf's 127.0.0.1 gets one of them.
sides=$(for i in $(seq 40); do dig_at "$WEIGHTED_PORT" -b "127.0.0.$i" +short web.internal A | sort | tr '\n' ' '; echo; done | sort | uniq -c)
[ "$(wc -l <<<"$sides")" -eq 2 ] && grep -q ' 10.0.0.1 10.0.0.2 10.0.0.3 $' <<<"$sides" && grep -q ' 10.0.0.4 10.0.0.5 10.0.0.6 $' <<<"$sides" ||
  fail "aliasd-w does not split web between web-v1 and web-v2 over 40 clients: $sides"
case $(dig_at "$WEIGHTED_PORT" +short web.internal A | sort | head -n 1) in
  10.0.0.1) DNSPERF_SIDE="the old side (web-v1)" ;;
  10.0.0.4) DNSPERF_SIDE="the new side (web-v2)" ;;
  *) fail "aliasd-w answers 127.0.0.1 with neither side" ;;
esac
# canon SERVER NAME TYPE: the answer, one record a line, sorted; for aliasd-w with web-v2's
# addresses written as web-v1's and without the serial (the promotion changed it).
canon() {
  dig_at "$(port_of "$1")" "$2" "$3" | awk -v w="$([ "$1" = aliasd-w ] && echo 1)" '
    w && $4 == "SOA" { $7 = "(serial)" }
    w { for (i = 4; i <= 6; i++) { gsub("10\\.0\\.0\\." i "$", "10.0.0." i - 3); gsub("10-0-0-" i "\\.", "10-0-0-" i - 3 ".") } }
    /status:/ { s = $0; sub(/.*status: /, "", s); sub(/,.*/, "", s); print "status " s; next }
    /^;; ANSWER SECTION:/ { sec = "answer"; next }
    /^;; AUTHORITY SECTION:/ { sec = "authority"; next }
    /^;; ADDITIONAL SECTION:/ { sec = "additional"; next }
    /^$/ { sec = ""; next }
    /^;/ { next }
    sec != "" { $1 = $1; print sec " " $0 }' | sort
}
queries=$( { echo "web.internal A"; echo "_http._tcp.web.internal SRV"; echo "host7.internal A"; cat "$WORK/alias.txt" "$WORK/mix.txt"; } | awk '!seen[$0]++')
nq=0
notes=()
while read -r name type; do
  nq=$((nq + 1))
  ref=$(canon aliasd "$name" "$type")
  [ "$(awk '$5 == "SOA" { $8 = "(serial)" } 1' <<<"$ref")" = "$(canon aliasd-w "$name" "$type")" ] ||
    fail "aliasd-w (in a 50% step) and aliasd answer $name $type differently:
aliasd:
$ref
aliasd-w:
$(canon aliasd-w "$name" "$type")"
  for s in knot nsd; do
    other=$(canon "$s" "$name" "$type")
    if [ "$(grep -v '^additional ' <<<"$ref")" != "$(grep -v '^additional ' <<<"$other")" ]; then
      fail "$s and aliasd answer $name $type differently:
aliasd:
$ref
$s:
$other"
    fi
    if [ "$(grep '^additional ' <<<"$ref" || true)" != "$(grep '^additional ' <<<"$other" || true)" ]; then
      notes+=("$s: additional section of $name $type has $(grep -c '^additional ' <<<"$other" || true) records, aliasd's $(grep -c '^additional ' <<<"$ref" || true)")
    fi
  done
done <<<"$queries"

cputicks() { # "utime stime" (fields 14, 15) summed over the given processes, all threads included
  local u=0 k=0 pid v
  for pid in "$@"; do
    v=$(awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12], f[13] }' "/proc/$pid/stat" 2>/dev/null) ||
      return 1
    u=$((u + ${v% *})); k=$((k + ${v#* }))
  done
  echo "$u $k"
}
# Ticks the server's core spent busy, plus the ticks the hypervisor took from either core (steal):
# less the server's own ticks, what disturbed a run.
core_busy() {
  awk -v s="cpu$SERVER_CPU" -v c="cpu$CLIENT_CPU" '$1 == s { t += $2 + $3 + $4 + $7 + $8 + $9 } $1 == c { t += $9 } END { print t }' /proc/stat
}
HZ=$(getconf CLK_TCK)

# One dnsperf run; prints "qps avg_ms p99_ms completed lost resp_bytes server_ticks busy_ticks runtime
# server_user_ticks" (server ticks: utime+stime of the server; busy ticks: all of its core).
# dnsperf 2.10 prints only the average latency (and its min/max/stddev) and has no histogram, so
# p99 comes from -v, which prints every answer's latency in µs steps: the smallest latency that
# 99% of the answered queries did not exceed. The per-answer lines go to a file; at ~100k/s here
# that did not lower dnsperf's rate beyond the noise.
run_dnsperf() {
  local s=$1 file=$2 out=$3; shift 3
  local t0 t1 b0 b1
  # shellcheck disable=SC2086 # TREE_OF holds a list of PIDs
  t0=$(cputicks ${TREE_OF[$s]}) || fail "$s is gone"
  b0=$(core_busy)
  taskset -c $CLIENT_CPU dnsperf -s 127.0.0.1 -p "$(port_of "$s")" -d "$WORK/$file.txt" -l "$SECS" -t 1 -v "$@" > "$out" 2>&1 ||
    fail "dnsperf against $s failed: $(grep -v '^> ' "$out" | tail -n 5)"
  # shellcheck disable=SC2086
  t1=$(cputicks ${TREE_OF[$s]}) || fail "$s is gone"
  b1=$(core_busy)
  awk -v ut=$((${t1% *} - ${t0% *})) -v st=$((${t1% *} + ${t1#* } - ${t0% *} - ${t0#* })) -v bt=$((b1 - b0)) '
    $1 == ">" { if ($NF ~ /^[0-9.]+$/) { us = int($NF * 1e6 + 0.5); h[us]++; n++; if (us > max) max = us }; next }
    /Queries completed:/ { done = $3 }
    /Queries lost:/ { lost = $3 }
    /Queries per second:/ { qps = $4 }
    /Average Latency/ { avg = $4 * 1000 }
    /Average packet size/ { resp = $7 }
    /Run time/ { rt = $4 }
    END {
      if (qps == "" || rt + 0 == 0 || n == 0) { print "dnsperf printed no statistics" > "/dev/stderr"; exit 1 }
      need = n * 0.99; c = 0; p99 = 0
      for (i = 0; i <= max; i++) if (i in h) { c += h[i]; if (c >= need) { p99 = i; break } }
      printf "%s %s %s %s %s %s %d %d %s %d\n", qps, avg, p99 / 1000, done, lost, resp, st, bt, rt, ut
    }' "$out" || fail "no statistics from dnsperf against $s: $(grep -v '^> ' "$out" | tail -n 5)"
  rm -f "$out"
}

echo "DNS benchmark on loopback: aliasd, Knot DNS and NSD, the same zone, one core each; and aliasd-w, web in a 50% step"
echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "aliasd:  $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (modified)') (target/release, udp_sockets = 1)"
echo "aliasd-w: the same with a web-v2 of 3 endpoints and web promoted with --steps 50%:pause,100%: in its 50% step since $STEP;"
echo "          dnsperf sends from 127.0.0.1 only, which is on $DNSPERF_SIDE: one side, but the bucket is hashed for every query"
echo "knot:    $(knotd -V 2>&1 | head -n 1) (udp-workers 1, tcp-workers 1, background-workers 1)"
echo "nsd:     $(nsd -v 2>&1 | head -n 1) (server-count 1, rrl off, minimal-responses)"
echo "dnsperf: $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}'), on CPU $CLIENT_CPU; every server on CPU $SERVER_CPU"
echo "answers: the three agree on status, answer and authority for all $nq distinct queries of both files (dig, sorted);"
echo "         aliasd-w answers as aliasd does, web-v2's addresses for web-v1's and the serial aside"
for n in "${notes[@]}"; do echo "  note: $n"; done
echo "runs: ${SECS}s each; saturation dnsperf $SAT_ARGS; fixed rate dnsperf -Q $RATE $SAT_ARGS; $ROUNDS rounds, servers in turn"
echo

printf "%-5s %-5s %-8s %9s %7s %7s %5s %6s | %9s %7s %7s %7s %6s | %s\n" round file server "qps(sat)" "avg ms" "p99 ms" "srv%" lost \
  "qps@rate" "µs/q" "usr µs" "p99 ms" lost "noise% sat/rate"
# Waits (at most 10 s) for a second in which the servers' core is almost idle and nothing is stolen:
# the machine is shared, and a build running beside a run makes it worthless.
wait_quiet() {
  local _ b0 b1
  for _ in $(seq 10); do
    b0=$(core_busy); sleep 1; b1=$(core_busy)
    [ $((b1 - b0)) -le $((HZ / 20)) ] && return 0
  done
  return 0
}
# One server, one query file: a saturation run, then a fixed-rate run; prints the round's line
# and appends it to the rounds file. Returns 1 if the run was disturbed (noise above 10% in
# either run).
measure() {
  local s=$1 file=$2 round=$3 qps avg p99 lost resp st bt rt rqps rp99 rdone rlost rst rbt rrt rut pct us uus other rother
  # shellcheck disable=SC2086 # SAT_ARGS is a list of options
  run_dnsperf "$s" "$file" "$WORK/sat.out" $SAT_ARGS > "$WORK/sat.res"
  read -r qps avg p99 _ lost resp st bt rt < "$WORK/sat.res"
  # shellcheck disable=SC2086
  run_dnsperf "$s" "$file" "$WORK/rate.out" -Q "$RATE" $SAT_ARGS > "$WORK/rate.res"
  read -r rqps _ rp99 rdone rlost _ rst rbt rrt rut < "$WORK/rate.res"
  # The server's share of its core over the saturation run (below ~95% with the core otherwise
  # idle: the client was the limit); CPU µs per answered query at the fixed rate (all, and the
  # user-space part, from the kernel's tick-sampled split, so rough: the rest is the kernel's UDP
  # path); and the noise in each run: other processes on the server's core and hypervisor steal
  # on either core, as a share of the run.
  read -r pct us uus other rother < <(awk -v st="$st" -v bt="$bt" -v rt="$rt" -v rst="$rst" -v rbt="$rbt" -v rrt="$rrt" \
    -v rut="$rut" -v d="$rdone" -v hz="$HZ" 'BEGIN {
    o = (bt - st) / (rt * hz) * 100; if (o < 0) o = 0
    ro = (rbt - rst) / (rrt * hz) * 100; if (ro < 0) ro = 0
    printf "%.0f %.2f %.2f %.0f %.0f\n", st / (rt * hz) * 100, rst * 1e6 / hz / d, rut * 1e6 / hz / d, o, ro }')
  printf "%-5s %-5s %-8s %9.0f %7.3f %7.3f %5s %6s | %9.0f %7.2f %7.2f %7.3f %6s | %7s\n" "$round" "$file" "$s" \
    "$qps" "$avg" "$p99" "$pct" "$lost" "$rqps" "$us" "$uus" "$rp99" "$rlost" "$other/$rother"
  echo "$file $s $round $qps $avg $p99 $pct $lost $rqps $us $rp99 $rlost $other $resp $rother $uus" >> "$WORK/rounds.txt"
  [ "$other" -le 10 ] && [ "$rother" -le 10 ]
}
# A disturbed measurement is dropped and taken again once the core is quiet, RETRIES times in all
# (the last attempt is kept, disturbed or not; the summary counts them).
RETRIES=${RETRIES:-4}
retried=0
: > "$WORK/rounds.txt"
wait_quiet
for round in $(seq "$ROUNDS"); do
  for file in $FILES; do
    for s in $SERVERS; do
      until measure "$s" "$file" "$round"; do
        [ "$retried" -lt "$RETRIES" ] || break
        retried=$((retried + 1))
        sed -i '$d' "$WORK/rounds.txt"
        echo "      (disturbed by other processes or the hypervisor: dropped, again when it is quiet)"
        wait_quiet
      done
    done
  done
done

# Medians over the rounds (column c of the rounds file), and sums for the lost queries.
median() { awk -v f="$1" -v s="$2" -v c="$3" '$1 == f && $2 == s {print $c}' "$WORK/rounds.txt" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
total() { awk -v f="$1" -v s="$2" -v c="$3" '$1 == f && $2 == s {t += $c} END {print t + 0}' "$WORK/rounds.txt"; }
per_round() { # FILE OTHER C [NUM] [DIGITS]: ratio aliasd/OTHER (or NUM/OTHER) of column c, round by round
  awk -v f="$1" -v o="$2" -v c="$3" -v num="${4:-aliasd}" -v d="${5:-2}" '$1 == f && $2 == num {a[$3] = $c} $1 == f && $2 == o {b[$3] = $c}
    END {for (r = 1; r in a; r++) printf "%s%.*f", (r > 1 ? " " : ""), d, a[r] / b[r]}' "$WORK/rounds.txt"
}
echo
echo "medians of $ROUNDS rounds (lost: summed over all runs; resp: dnsperf's average response size)"
for file in $FILES; do
  echo
  echo "query file: $(describe "$file")"
  printf "%-8s %10s %8s %8s %10s %15s %8s %12s %10s %7s\n" server "qps(sat)" "avg ms" "p99 ms" "srv%(sat)" "cpu µs/q @$((RATE / 1000))k" \
    "usr µs/q" "p99 ms @$((RATE / 1000))k" "lost s/r" "resp B"
  for s in $SERVERS; do
    printf "%-8s %10.0f %8.3f %8.3f %10.0f %15.2f %8.2f %12.3f %10s %7s\n" "$s" "$(median "$file" "$s" 4)" "$(median "$file" "$s" 5)" \
      "$(median "$file" "$s" 6)" "$(median "$file" "$s" 7)" "$(median "$file" "$s" 10)" "$(median "$file" "$s" 16)" \
      "$(median "$file" "$s" 11)" "$(total "$file" "$s" 8)/$(total "$file" "$s" 12)" "$(median "$file" "$s" 14)"
  done
  awk -v aq="$(median "$file" aliasd 4)" -v kq="$(median "$file" knot 4)" -v nq="$(median "$file" nsd 4)" \
    -v ac="$(median "$file" aliasd 10)" -v kc="$(median "$file" knot 10)" -v nc="$(median "$file" nsd 10)" 'BEGIN {
    printf "ratios   aliasd/knot qps %.2f cpu %.2f   aliasd/nsd qps %.2f cpu %.2f\n", aq / kq, ac / kc, aq / nq, ac / nc }'
  awk -v a="$(median "$file" aliasd 16)" -v k="$(median "$file" knot 16)" -v n="$(median "$file" nsd 16)" 'BEGIN {
    printf "         user-space cpu only: aliasd/knot %.2f   aliasd/nsd %.2f\n", a / k, a / n }'
  if [ "$ROUNDS" -gt 1 ]; then
    echo "  per round: aliasd/knot qps $(per_round "$file" knot 4), cpu $(per_round "$file" knot 10);" \
      "aliasd/nsd qps $(per_round "$file" nsd 4), cpu $(per_round "$file" nsd 10)"
  fi
  for s in $SERVERS; do
    pct=$(median "$file" "$s" 7)
    if awk -v p="$pct" -v o="$(median "$file" "$s" 13)" 'BEGIN {exit !(p < 95 && o < 10)}'; then
      echo "  $s used ${pct}% of its core at saturation: one dnsperf on one core was the limit, so its qps(sat) is a lower bound"
    fi
    achieved=$(median "$file" "$s" 9)
    if awk -v q="$achieved" -v r="$RATE" 'BEGIN {exit !(q < 0.97 * r)}'; then
      echo "  $s answered only $(printf %.0f "$achieved")/s of the $RATE/s offered (median)"
    fi
  done
done
noisy=$(awk '$13 > 10 || $15 > 10' "$WORK/rounds.txt" | wc -l)
echo
# The per-client choice's cost: the same aliasd, web stable against web in a 50% step.
for file in $FILES; do
  awk -v f="$file" -v wc="$(median "$file" aliasd-w 10)" -v sc="$(median "$file" aliasd 10)" -v wq="$(median "$file" aliasd-w 4)" \
    -v sq="$(median "$file" aliasd 4)" -v wu="$(median "$file" aliasd-w 16)" -v su="$(median "$file" aliasd 16)" 'BEGIN {
    printf "aliasd weighted/stable (%s): cpu µs/q %.3f (user %s), qps(sat) %.3f\n", f, wc / sc,
      (su > 0 ? sprintf("%.2f", wu / su) : "-"), wq / sq }'
  if [ "$ROUNDS" -gt 1 ]; then
    echo "  per round: cpu $(per_round "$file" aliasd 10 aliasd-w 3), qps $(per_round "$file" aliasd 4 aliasd-w 3)"
  fi
done
echo "disturbed measurements taken again: $retried (at most $RETRIES); kept although disturbed: $noisy of $(wc -l < "$WORK/rounds.txt")"
if [ "$noisy" -gt 0 ]; then
  echo "warning: noise above 10% (other processes on CPU $SERVER_CPU, or steal) in $noisy kept measurements: expect noise"
fi

if [ "${SCALE:-1}" != 0 ]; then
  # The three servers are stopped first so they cannot disturb it.
  cleanup
  trap - EXIT
  echo
  echo "switch latency and scale: cargo bench --bench dns_scale"
  cargo bench -q --bench dns_scale
fi
