#!/usr/bin/env bash
# schemathesis against a running aliasd, with a valid token, for a bounded time: every answer
# must match the served OpenAPI spec (status, content type, schema), no 5xx, every request the
# spec calls valid is accepted and every one it calls invalid refused, and the daemon must still
# serve afterwards with no panic in its log. Run by .ci/run; longer by hand with
#   SCHEMATHESIS_SECONDS=600 bash tests/api/schemathesis.sh
# and on one operation with more examples, for instance
#   SCHEMATHESIS_ARGS="--include-path /v1/services/{service} --max-examples 2000" bash tests/api/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${SCHEMATHESIS_SECONDS:-120}

# schemathesis and hypothesis at versions tried together, in a virtualenv of their own under
# target/ (kept between runs, ignored by git): neither a newer release on PyPI nor another version
# installed on the machine changes what this script runs, and the machine's own Python is left
# as it was. `installed` is written last, so an interrupted install is done again.
SCHEMATHESIS_VERSION=4.32.5
HYPOTHESIS_VERSION=6.170.27
VENV=target/schemathesis-$SCHEMATHESIS_VERSION-hypothesis-$HYPOTHESIS_VERSION
if [ ! -f "$VENV/installed" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==$HYPOTHESIS_VERSION"
  touch "$VENV/installed"
fi
SCHEMATHESIS=$PWD/$VENV/bin/schemathesis
HOOKS=$PWD/tests/api

cargo build -q --bin aliasd
BIN=target/debug/aliasd
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

V1=127.0.0.71:18481
V2=127.0.0.72:18481
API=127.0.0.1:18490
TOKEN=schemathesis-token-0123456789
"$BIN" backend --listen "$V1" --name web-v1 >/dev/null 2>&1 & PIDS+=($!)
"$BIN" backend --listen "$V2" --name web-v2 >/dev/null 2>&1 & PIDS+=($!)
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
[[zone]]
origin = "internal."
file = "internal.zone"
[api]
listen = "$API"
[[api.token]]
name = "schemathesis"
secret = "$TOKEN"
[state]
dir = "state"
[health]
kind = "http"
path = "/healthz"
interval = "200ms"
[promotion]
observe = "1s"
[[service]]
name = "web-v1"
endpoints = ["$V1"]
[[service]]
name = "web-v2"
endpoints = ["$V2"]
[[alias]]
name = "web"
targets = ["web-v1"]
EOF
RUST_LOG=info "$BIN" run --config "$WORK/aliasd.toml" --ready-file "$WORK/ready.json" 2>"$WORK/aliasd.log" & PIDS+=($!)
ALIASD=$!
for _ in $(seq 100); do [ -f "$WORK/ready.json" ] && break; sleep 0.1; done
[ -f "$WORK/ready.json" ] || { echo "aliasd did not start:"; cat "$WORK/aliasd.log"; exit 1; }

# schemathesis keeps a cache (crash files for `schemathesis replay`) under `.schemathesis/` in the
# directory it runs in: run it from the temporary directory and name the cache directory in a
# config file there too, so that a run never writes into the work tree.
cat > "$WORK/schemathesis.toml" <<EOF
[cache]
directory = "$WORK/schemathesis-cache"
EOF

echo "== schemathesis $("$SCHEMATHESIS" --version | awk '{print $NF}') against aliasd, ${SECS}s"
status=0
# /v1/events is an endless stream (its own tests cover it). Every check runs, among them
# positive_data_acceptance (every request the spec calls valid is accepted, or answered 404/409
# for a name that does not exist or a state that refuses it): so every bound a handler checks is
# written in the spec.
# One worker: with two, both threads build Python ASTs at once (hypothesis parses schemathesis's
# source to describe its filters), and CPython 3.11 before 3.11.8 keeps the AST constructor's
# recursion depth in state shared by all threads: the run then fails with `SystemError: AST
# constructor recursion depth mismatch` (CPython gh-106905, fixed in 3.11.8), which is no fault
# of aliasd. CI's Python is 3.11.7.
# The hooks keep positive cases within the one rule the spec can only state in words (see the
# module's docstring).
(cd "$WORK" && PYTHONPATH="$HOOKS" SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "$SCHEMATHESIS" --config-file "$WORK/schemathesis.toml" run "http://$API/v1/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --exclude-path /v1/events \
  --checks all \
  --max-time "$SECS" \
  --workers 1 \
  --suppress-health-check all \
  --no-color ${SCHEMATHESIS_ARGS:-}) || status=$?

if ! kill -0 "$ALIASD" 2>/dev/null; then
  echo "FAIL: aliasd died under schemathesis:"; tail -50 "$WORK/aliasd.log"; exit 1
fi
if grep -q "panicked" "$WORK/aliasd.log"; then
  echo "FAIL: a request panicked:"; grep -A3 "panicked" "$WORK/aliasd.log" | head -40; exit 1
fi
curl -fsS "http://$API/healthz" >/dev/null || { echo "FAIL: aliasd stopped answering"; exit 1; }
exit "$status"
