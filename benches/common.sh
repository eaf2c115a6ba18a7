# Shared by the benchmark scripts (sourced, not run).

# need_commands COMMAND:PACKAGE ...: installs the Debian packages of the commands that are
# missing (as root), or says what to install and exits. Packages whose postinst starts a service
# (knot, nsd, haproxy) are left running on their own ports; the benchmarks use others.
need_commands() {
  local pair need=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "missing: ${need[*]} (apt-get install ${need[*]})" >&2
    exit 1
  fi
}

# haproxy_config BIND BACKEND [tcp]: the HAProxy the proxy benchmarks compare with (2 threads,
# keep-alive, `http-reuse safe`), on stdout; with `tcp`, the same HAProxy in TCP mode (bytes
# copied, no HTTP work), the floor any HTTP proxy on the machine can be measured against.
haproxy_config() {
  local mode=${3:-http}
  cat <<CONF
global
  maxconn 4096
  nbthread 2
defaults
  mode $mode
  timeout connect 2s
  timeout client 60s
  timeout server 60s
CONF
  [ "$mode" = http ] && echo "  option http-keep-alive"
  cat <<CONF
frontend web
  bind $1
  default_backend web
backend web
  balance leastconn
CONF
  [ "$mode" = http ] && echo "  http-reuse safe"
  echo "  server v1 $2"
}
