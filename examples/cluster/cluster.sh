#!/usr/bin/env bash
# A three-node aliasd cluster on one machine, on loopback addresses: three etcd members and
# three aliasd nodes, with two tiny web backends to link an alias to. No root, no Docker.
#
#   examples/cluster/cluster.sh up DIR       start everything; configs, data and logs go in DIR
#   examples/cluster/cluster.sh status DIR   what runs, and the cluster as node a sees it
#   examples/cluster/cluster.sh down DIR     stop what `up` started (by the PIDs it recorded in
#                                            DIR); DIR and its data stay, `up` starts them again
#
# Addresses (NET is 127.0.10 unless ALIASD_EXAMPLE_NET says otherwise):
#   etcd members e1, e2, e3   NET.1-3     client port 2379, peer port 2380
#   aliasd nodes a, b, c      NET.11-13   DNS 5353 (UDP, TCP), API 5380, proxy for web 8000
#   backends web-v1, web-v2   NET.21-22   HTTP 8080
#
# Environment:
#   ALIASD_BIN, ALIASCTL_BIN  the binaries (default: target/release if built, else target/debug,
#                             else `aliasd` and `aliasctl` on PATH)
#   ETCD_BIN                  etcd (default: `etcd` on PATH; Debian: apt-get install etcd-server)
#   ALIASD_DEPLOY_TOKEN       the API token every node takes (default: the one in DIR/token,
#                             made at the first `up`)
#   ALIASD_EXAMPLE_NET        the first three octets of the addresses (default 127.0.10)
#   ALIASD_EXAMPLE_WAIT       seconds `up` waits for the cluster to form (default 60)

set -euo pipefail

NODES=(a b c)
MEMBERS=(1 2 3)
BACKENDS=(web-v1 web-v2)

usage() {
    echo "usage: $0 up DIR | status DIR | down DIR" >&2
    exit 2
}

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

[[ $# -eq 2 ]] || usage
command=$1
dir=$2
case $command in up | status | down) ;; *) usage ;; esac
if [[ $command == up ]]; then
    mkdir -p "$dir"
fi
[[ -d $dir ]] || die "$dir does not exist: nothing was started there"
# Absolute: it is the working directory of every process started, and what `ours` compares.
dir=$(cd "$dir" && pwd -P)

net=${ALIASD_EXAMPLE_NET:-127.0.10}
[[ $net =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}$ ]] ||
    die "ALIASD_EXAMPLE_NET=$net: give the first three octets of a loopback net, such as 127.0.10"

member_ip() { echo "$net.$1"; }
node_ip() {
    case $1 in a) echo "$net.11" ;; b) echo "$net.12" ;; c) echo "$net.13" ;; esac
}
backend_ip() {
    case $1 in web-v1) echo "$net.21" ;; web-v2) echo "$net.22" ;; esac
}

# The binaries: from the environment, else this checkout's build, else PATH.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
binary() {
    local name=$1 given=$2
    if [[ -n $given ]]; then
        echo "$given"
    elif [[ -x $root/target/release/$name ]]; then
        echo "$root/target/release/$name"
    elif [[ -x $root/target/debug/$name ]]; then
        echo "$root/target/debug/$name"
    else
        command -v "$name" || die "no $name binary: build it (cargo build --release) or set ${name^^}_BIN"
    fi
}

# Every process `up` starts runs with DIR as its working directory: `down` and `status` act on a
# recorded PID only while /proc says it is still that process (a PID can be reused).
ours() {
    local pid=$1
    [[ -n $pid && -d /proc/$pid ]] || return 1
    [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$dir" ]] || return 1
    # A zombie has ended; only its parent's wait is missing.
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
    [[ $state != Z ]]
}

pid_of() {
    local file=$dir/$1.pid
    [[ -f $file ]] && cat "$file" || true
}

all_names() {
    local m n b
    for n in "${NODES[@]}"; do echo "$n"; done
    for b in "${BACKENDS[@]}"; do echo "$b"; done
    for m in "${MEMBERS[@]}"; do echo "e$m"; done
}

# Starts `$@` in the background with DIR as its working directory, stdin from /dev/null and its
# output in DIR/NAME.log, and records its PID in DIR/NAME.pid.
spawn() {
    local name=$1
    shift
    (cd "$dir" && exec "$@" </dev/null >>"$dir/$name.log" 2>&1) &
    echo $! >"$dir/$name.pid"
}

# The last lines of a process's log, for an error message.
tail_log() {
    echo "--- last lines of $dir/$1.log:" >&2
    tail -n 20 "$dir/$1.log" >&2 || true
}

# Whether something listens on ADDR:PORT (TCP, or UDP with `udp`), counting a wildcard
# listener on the port for TCP.
listening() {
    local addr=$1 port=$2 proto=${3:-tcp}
    if command -v ss >/dev/null; then
        local flag=-Hltn
        [[ $proto == udp ]] && flag=-Hlun
        ss "$flag" 2>/dev/null | awk -v a="$addr:$port" -v p=":$port" -v udp="$proto" '
            $4 == a { found = 1 }
            udp != "udp" && ($4 == "0.0.0.0" p || $4 == "*" p || $4 == "[::]" p) { found = 1 }
            END { exit !found }'
    elif [[ $proto == tcp ]]; then
        (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null
    else
        return 1
    fi
}

up() {
    local aliasd aliasctl etcd
    aliasd=$(binary aliasd "${ALIASD_BIN:-}")
    aliasctl=$(binary aliasctl "${ALIASCTL_BIN:-}")
    etcd=${ETCD_BIN:-etcd}
    command -v "$etcd" >/dev/null ||
        die "no etcd binary ($etcd): install it (Debian: apt-get install etcd-server) or set ETCD_BIN"

    local name pid
    for name in $(all_names); do
        pid=$(pid_of "$name")
        if ours "$pid"; then
            die "$name runs already (PID $pid, recorded in $dir/$name.pid): run \`$0 down $dir\` first"
        fi
    done

    local busy=() m n b
    for m in "${MEMBERS[@]}"; do
        for port in 2379 2380; do
            listening "$(member_ip "$m")" $port && busy+=("$(member_ip "$m"):$port")
        done
    done
    for n in "${NODES[@]}"; do
        for port in 5353 5380 8000; do
            listening "$(node_ip "$n")" $port && busy+=("$(node_ip "$n"):$port")
        done
        listening "$(node_ip "$n")" 5353 udp && busy+=("$(node_ip "$n"):5353/udp")
    done
    for b in "${BACKENDS[@]}"; do
        listening "$(backend_ip "$b")" 8080 && busy+=("$(backend_ip "$b"):8080")
    done
    if ((${#busy[@]})); then
        die "in use already: ${busy[*]} (\`ss -ltnup\` shows by what); stop it, or pick other addresses with ALIASD_EXAMPLE_NET=127.0.11"
    fi

    # One token for every node: a follower passes the caller's token on to the leader.
    local token=${ALIASD_DEPLOY_TOKEN:-}
    if [[ -z $token ]]; then
        if [[ ! -s $dir/token ]]; then
            (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$dir/token")
        fi
        token=$(cat "$dir/token")
    fi

    cat >"$dir/internal.zone" <<EOF
; The static part of internal., the same file on every node.
\$ORIGIN internal.
\$TTL 300
@       IN SOA  ns1.internal. hostmaster.internal. ( 1 3600 600 86400 5 )
        IN NS   ns1.internal.
ns1     IN A    $(node_ip a)
ns1     IN A    $(node_ip b)
ns1     IN A    $(node_ip c)
EOF

    local endpoints=() initial=() m_ip
    for m in "${MEMBERS[@]}"; do
        m_ip=$(member_ip "$m")
        endpoints+=("\"http://$m_ip:2379\"")
        initial+=("e$m=http://$m_ip:2380")
    done
    local etcd_list
    etcd_list=$(IFS=,; echo "${endpoints[*]}")
    etcd_list=${etcd_list//,/, }

    local ip
    for n in "${NODES[@]}"; do
        ip=$(node_ip "$n")
        cat >"$dir/$n.toml" <<EOF
# Node $n of the example cluster (written by examples/cluster/cluster.sh). Every node has the
# same zone file, services, aliases and tokens; only the addresses and [cluster] node differ.
[dns]
listen = ["$ip:5353"]
udp_sockets = 1
alias_ttl = 5
negative_ttl = 5

[[zone]]
origin = "internal."
file = "internal.zone"

[api]
listen = "$ip:5380"

[[api.token]]
name = "deploy"
secret_env = "ALIASD_DEPLOY_TOKEN"

# Required by the config; a cluster node keeps its state in etcd, not here.
[state]
dir = "$n.state"

[health]
kind = "http"
path = "/healthz"
interval = "1s"
timeout = "500ms"
rise = 2
fall = 2

[promotion]
observe = "5s"
warm_timeout = "1m"
drain_grace = "2s"

[[service]]
name = "web-v1"
endpoints = ["$(backend_ip web-v1):8080"]

[[service]]
name = "web-v2"
endpoints = ["$(backend_ip web-v2):8080"]

[[alias]]
name = "web"
targets = ["web-v1"]

[[proxy]]
listen = "$ip:8000"
alias = "web"

[cluster]
etcd = [$etcd_list]
node = "$n"
advertise = "$ip"
# A node that dies is replaced as the leader within lease_ttl and a second.
lease_ttl = "2s"
EOF
    done

    echo "starting etcd members e1-e3 on $(member_ip 1)-3 (data in $dir/e*.etcd)"
    for m in "${MEMBERS[@]}"; do
        m_ip=$(member_ip "$m")
        spawn "e$m" "$etcd" \
            --name "e$m" \
            --data-dir "$dir/e$m.etcd" \
            --listen-client-urls "http://$m_ip:2379" \
            --advertise-client-urls "http://$m_ip:2379" \
            --listen-peer-urls "http://$m_ip:2380" \
            --initial-advertise-peer-urls "http://$m_ip:2380" \
            --initial-cluster "$(IFS=,; echo "${initial[*]}")" \
            --initial-cluster-token aliasd-example \
            --initial-cluster-state new \
            --logger zap --log-outputs stderr
    done

    echo "starting backends web-v1 on $(backend_ip web-v1):8080, web-v2 on $(backend_ip web-v2):8080"
    for b in "${BACKENDS[@]}"; do
        spawn "$b" "$aliasd" backend --listen "$(backend_ip "$b"):8080" --name "$b"
    done

    echo "starting aliasd nodes a, b, c on $(node_ip a)-13"
    for n in "${NODES[@]}"; do
        rm -f "$dir/$n.ready"
        ALIASD_DEPLOY_TOKEN=$token RUST_LOG=${RUST_LOG:-info} \
            spawn "$n" "$aliasd" run --config "$dir/$n.toml" --ready-file "$dir/$n.ready"
    done

    # Ready: every node serves (its ready file) and sees a leader and all three nodes.
    local limit=${ALIASD_EXAMPLE_WAIT:-60}
    local deadline=$((SECONDS + limit)) seen
    for n in "${NODES[@]}"; do
        while true; do
            ours "$(pid_of "$n")" || { tail_log "$n"; die "aliasd node $n exited (its log is above)"; }
            if [[ -s $dir/$n.ready ]]; then
                seen=$("$aliasctl" --server "http://$(node_ip "$n"):5380" cluster 2>/dev/null |
                    awk '$3 == "leader" { l++ } $3 == "leader" || $3 == "follower" { n++ }
                         END { print l + 0, n + 0 }') || seen=""
                [[ $seen == "1 3" ]] && break
            fi
            if ((SECONDS >= deadline)); then
                for m in "${MEMBERS[@]}"; do ours "$(pid_of "e$m")" || tail_log "e$m"; done
                tail_log "$n"
                die "node $n did not see a leader and 3 nodes within ${limit}s (last: ${seen:-no answer}); \`$0 down $dir\` stops what started"
            fi
            sleep 0.2
        done
    done

    echo
    "$aliasctl" --server "http://$(node_ip a):5380" cluster
    local leader others=()
    leader=$("$aliasctl" --server "http://$(node_ip a):5380" cluster | awk '$3 == "leader" { print $1 }')
    for n in "${NODES[@]}"; do [[ $n == "$leader" ]] || others+=("$n"); done
    cat <<EOF

The cluster runs (configs, logs and etcd's data in $dir). Try it, from another terminal:

  export PATH="$(dirname "$aliasctl"):\$PATH"
  export ALIASCTL_TOKEN=$token

  # Every node answers DNS and proxies web from the state in etcd:
  dig @$(node_ip a) -p 5353 web.internal +short           # $(backend_ip web-v1)
  curl http://$(node_ip c):8000/                          # web-v1

  # A change through any node (a follower forwards it to the leader) is answered by all three:
  aliasctl --server http://$(node_ip b):5380 link web web-v2
  for ip in $(node_ip a) $(node_ip b) $(node_ip c); do dig @\$ip -p 5353 web.internal +short; done

  # Kill the leader ($leader): another node leads within lease_ttl (2s) and a second, and
  # continues what the dead one had begun.
  kill -9 \$(cat $dir/$leader.pid)
  aliasctl --server http://$(node_ip "${others[0]}"):5380 cluster
  aliasctl --server http://$(node_ip "${others[1]}"):5380 promote web --to web-v1 --wait

  $0 status $dir   # what runs
  $0 down $dir     # stop it all (DIR stays; \`up\` starts the same cluster again)
EOF
}

status() {
    local name pid first=""
    for name in $(all_names); do
        pid=$(pid_of "$name")
        if [[ -z $pid ]]; then
            printf '%-7s not started\n' "$name"
        elif ours "$pid"; then
            printf '%-7s running (PID %s)\n' "$name" "$pid"
            if [[ -z $first && -f $dir/$name.toml ]]; then first=$name; fi
        else
            printf '%-7s gone (PID %s was recorded)\n' "$name" "$pid"
        fi
    done
    if [[ -n $first ]]; then
        echo
        echo "the cluster as node $first sees it:"
        "$(binary aliasctl "${ALIASCTL_BIN:-}")" --server "http://$(node_ip "$first"):5380" cluster
    fi
}

down() {
    # The nodes first (each hands its leadership over as it stops), then the backends, then etcd.
    stop_group "${NODES[@]}"
    stop_group "${BACKENDS[@]}"
    stop_group $(for m in "${MEMBERS[@]}"; do echo "e$m"; done)
    echo "stopped; $dir keeps the configs, logs and etcd's data"
}

# SIGTERM to each named process that still runs, then up to 15 s for them to end, then SIGKILL.
stop_group() {
    local name pid running=()
    for name in "$@"; do
        pid=$(pid_of "$name")
        if ours "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            running+=("$name")
        fi
    done
    local deadline=$((SECONDS + 15)) left
    while true; do
        left=()
        for name in "${running[@]}"; do
            ours "$(pid_of "$name")" && left+=("$name")
        done
        ((${#left[@]})) || break
        if ((SECONDS >= deadline)); then
            for name in "${left[@]}"; do
                echo "$name did not stop within 15 s of SIGTERM: SIGKILL" >&2
                kill -KILL "$(pid_of "$name")" 2>/dev/null || true
            done
            sleep 0.2
            break
        fi
        sleep 0.1
    done
    for name in "$@"; do
        rm -f "$dir/$name.pid" "$dir/$name.ready"
        [[ " ${running[*]} " == *" $name "* ]] && echo "stopped $name"
    done
    return 0
}

case $command in
up) up ;;
status) status ;;
down) down ;;
esac
