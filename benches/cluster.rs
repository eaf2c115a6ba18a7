//! aliasd as a cluster on a real 3-member etcd (Debian's `etcd-server`, started here on
//! 127.0.N.1–3 with its data in a temporary directory), three `aliasd run` nodes on loopback:
//!
//! - (a) a relink acknowledged → answered by all three nodes: median and max over 100 relinks
//!   (each node's DNS polled over UDP until it answers the new target);
//! - (b) kill -9 of the leader → first change a survivor accepts: median over 10 kills;
//! - (c) sustained relinks per second with etcd against the local journal (one node, the same
//!   config without `[cluster]`), side by side, 1 and 8 clients, 5 s each;
//! - (d) a node's memory (RSS) and start-up time (spawn → ready file) with 10,000 aliases in
//!   etcd, against a single node with the same 10,000 aliases in its journal.
//!
//! It prints figures and never fails on time. `cargo bench --bench cluster` measures; run
//! without `--bench` (under `cargo test --benches`) it does a little of each, so the benchmark
//! itself is kept working.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aliasd::client::Client;
use aliasd::daemon::Ready;

const TOKEN: &str = "bench-token-0123456789";
/// Every node's lease.
const LEASE_TTL: &str = "2s";
const BLUE: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);
const GREEN: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 2);
/// Aliases the concurrent relink clients take, one each.
const CLIENTS: usize = 8;

/// How much of each figure to measure.
struct Sizes {
    relinks: usize,
    kills: usize,
    rate_secs: f64,
    aliases: usize,
    restarts: usize,
}

// ---- etcd ----

/// A 3-member etcd on 127.0.N.1–3 (client port 2379, peer port 2380), killed and its directory
/// removed when dropped.
struct Etcd {
    net: u8,
    members: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Takes the first net in 180..=199 whose member addresses are free (the integration tests
    /// take 200..=254), starts the members with etcd's default timers and waits (30 s at most)
    /// until each serves a linearizable read.
    fn start(runtime: &tokio::runtime::Runtime) -> Self {
        let free = |net: u8| {
            (1..=3).all(|h| {
                [2379, 2380].iter().all(|&p| {
                    TcpListener::bind(SocketAddr::from((Ipv4Addr::new(127, 0, net, h), p))).is_ok()
                })
            })
        };
        let net = (180..=199)
            .find(|n| free(*n))
            .expect("no free 127.0.N.1-3 (N in 180..=199) for etcd: leftover etcd processes?");
        let dir = tempfile::Builder::new()
            .prefix("aliasd-bench-etcd-")
            .tempdir()
            .unwrap();
        let ip = |i: usize| Ipv4Addr::new(127, 0, net, i as u8 + 1);
        let initial: Vec<String> = (0..3)
            .map(|i| format!("m{i}=http://{}:2380", ip(i)))
            .collect();
        let mut etcd = Self {
            net,
            members: Vec::new(),
            dir,
        };
        for i in 0..3 {
            let log = std::fs::File::create(etcd.dir.path().join(format!("m{i}.log"))).unwrap();
            let child = Command::new("etcd")
                .arg("--name")
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(etcd.dir.path().join(format!("m{i}.etcd")))
                .args(["--listen-client-urls", &format!("http://{}:2379", ip(i))])
                .args(["--advertise-client-urls", &format!("http://{}:2379", ip(i))])
                .args(["--listen-peer-urls", &format!("http://{}:2380", ip(i))])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://{}:2380", ip(i)),
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args([
                    "--initial-cluster-token",
                    &format!("bench-{}", std::process::id()),
                ])
                .args(["--initial-cluster-state", "new"])
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("`etcd` must be installed (Debian: etcd-server)");
            etcd.members.push(child);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for endpoint in etcd.endpoints() {
            loop {
                let serves = runtime.block_on(async {
                    let options = etcd_client::ConnectOptions::new()
                        .with_timeout(Duration::from_secs(1))
                        .with_connect_timeout(Duration::from_millis(500));
                    let Ok(mut c) = etcd_client::Client::connect([&endpoint], Some(options)).await
                    else {
                        return false;
                    };
                    c.get("health", None).await.is_ok()
                });
                if serves {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd at {endpoint} does not serve after 30 s; logs in {}",
                    etcd.dir.path().display()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        etcd
    }

    fn endpoints(&self) -> Vec<String> {
        (1..=3)
            .map(|h| format!("http://127.0.{}.{h}:2379", self.net))
            .collect()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in &mut self.members {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---- aliasd ----

/// Writes `<dir>/aliasd.toml` and the zone: `web` and `w0`..`w7` linked to blue, `extra`
/// aliases `a0`.. more, and with `cluster = Some((endpoints, node, prefix))` a `[cluster]`.
fn write_config(dir: &Path, extra: usize, cluster: Option<(&[String], &str, &str)>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("internal.zone"),
        "$TTL 300\n@ IN SOA ns1.internal. hostmaster.internal. ( 1 3600 600 86400 5 )\n  IN NS ns1.internal.\nns1 IN A 127.0.0.1\n",
    )
    .unwrap();
    let mut config = format!(
        r#"[dns]
listen = ["127.0.0.1:0"]
udp_sockets = 1
alias_ttl = 1

[[zone]]
origin = "internal."
file = "internal.zone"

[api]
listen = "127.0.0.1:0"

[[api.token]]
name = "bench"
secret = "{TOKEN}"

[state]
dir = "state"

[health]
kind = "none"

[[service]]
name = "blue"
endpoints = ["{BLUE}:80"]

[[service]]
name = "green"
endpoints = ["{GREEN}:80"]

[[alias]]
name = "web"
targets = ["blue"]
"#
    );
    for i in 0..CLIENTS {
        config.push_str(&format!(
            "\n[[alias]]\nname = \"w{i}\"\ntargets = [\"blue\"]\n"
        ));
    }
    for i in 0..extra {
        config.push_str(&format!(
            "\n[[alias]]\nname = \"a{i}\"\ntargets = [\"blue\"]\n"
        ));
    }
    if let Some((endpoints, node, prefix)) = cluster {
        let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        config.push_str(&format!(
            "\n[cluster]\netcd = [{}]\nnode = \"{node}\"\nadvertise = \"127.0.0.1\"\n\
             prefix = \"{prefix}\"\nlease_ttl = \"{LEASE_TTL}\"\n",
            endpoints.join(", ")
        ));
    }
    let path = dir.join("aliasd.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// One `aliasd run` process, killed (by its PID) and reaped when dropped.
struct Node {
    config: PathBuf,
    child: Option<Child>,
    ready: Ready,
    /// Spawn → ready file, at its last start.
    started_in: Duration,
}

impl Node {
    fn start(config: PathBuf) -> Self {
        let mut node = Self {
            config,
            child: None,
            ready: Ready {
                pid: 0,
                dns: Vec::new(),
                api: SocketAddr::from(([127, 0, 0, 1], 0)),
                proxies: Vec::new(),
            },
            started_in: Duration::ZERO,
        };
        node.restart();
        node
    }

    /// Starts it (again) and waits (120 s at most) for its ready file.
    fn restart(&mut self) {
        assert!(self.child.is_none());
        let dir = self.config.parent().unwrap();
        let ready = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("aliasd.log"))
            .unwrap();
        let spawned = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_aliasd"))
            .args(["run", "--config"])
            .arg(&self.config)
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("aliasd");
        loop {
            if let Ok(bytes) = std::fs::read(&ready)
                && let Ok(r) = serde_json::from_slice(&bytes)
            {
                self.started_in = spawned.elapsed();
                self.ready = r;
                self.child = Some(child);
                return;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "aliasd ({}) exited with {status} before it was ready; see {}",
                    self.config.display(),
                    dir.join("aliasd.log").display()
                );
            }
            assert!(
                spawned.elapsed() < Duration::from_secs(120),
                "aliasd not ready in 120 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn client(&self) -> Client {
        Client::new(
            &format!("http://{}", self.ready.api),
            Some(TOKEN.to_owned()),
        )
        .unwrap()
    }

    fn dns(&self) -> SocketAddr {
        self.ready.dns[0]
    }

    /// Its resident memory, from /proc.
    fn rss_mb(&self) -> f64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---- DNS ----

/// The A answer of `server` for `name`, one UDP query (`None` when none came in 200 ms).
fn answer(socket: &UdpSocket, server: SocketAddr, name: &str, id: u16) -> Option<Vec<IpAddr>> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    socket.send_to(&m.to_vec().unwrap(), server).ok()?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        let reply = Message::from_vec(&buf[..n]).ok()?;
        if reply.metadata.id != id {
            continue;
        }
        return Some(
            reply
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect(),
        );
    }
}

fn udp() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    socket
}

// ---- figures ----

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median and max, in ms.
fn median_max(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    (ms(v[v.len() / 2]), ms(*v.last().unwrap()))
}

/// The leader's index among `nodes` (named `c0`..`c2`), as node `via` sees it.
fn leader(runtime: &tokio::runtime::Runtime, nodes: &[Node], via: usize) -> Option<usize> {
    let status = runtime.block_on(nodes[via].client().cluster()).ok()?;
    status.leader?.strip_prefix('c')?.parse().ok()
}

/// Waits (60 s at most) until node `via` sees a leader and `count` live nodes.
fn wait_cluster(runtime: &tokio::runtime::Runtime, nodes: &[Node], via: usize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = runtime.block_on(nodes[via].client().cluster())
            && s.leader.is_some()
            && s.nodes.len() == count
        {
            return;
        }
        assert!(Instant::now() < deadline, "no cluster of {count} in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (a): relinks of `web` through each node in turn; per relink, the time from the API's answer
/// until each node's DNS answers the new target. Returns (all three, per node, the answers'
/// own latency).
fn relinks(
    runtime: &tokio::runtime::Runtime,
    nodes: &[Node],
    n: usize,
) -> (Vec<Duration>, Vec<Vec<Duration>>, Vec<Duration>) {
    let socket = udp();
    let mut id: u16 = 1;
    let mut all = Vec::new();
    let mut per_node = vec![Vec::new(); nodes.len()];
    let mut acks = Vec::new();
    for i in 0..n {
        let (to, want) = if i % 2 == 0 {
            ("green", GREEN)
        } else {
            ("blue", BLUE)
        };
        let sent = Instant::now();
        runtime
            .block_on(
                nodes[i % nodes.len()]
                    .client()
                    .link("web", &[to.to_owned()]),
            )
            .expect("relink");
        let acked = Instant::now();
        acks.push(acked - sent);
        let mut pending: Vec<usize> = (0..nodes.len()).collect();
        while !pending.is_empty() && acked.elapsed() < Duration::from_secs(10) {
            pending.retain(|&s| {
                id = id.wrapping_add(1);
                if answer(&socket, nodes[s].dns(), "web.internal.", id) == Some(vec![want.into()]) {
                    per_node[s].push(acked.elapsed());
                    false
                } else {
                    true
                }
            });
        }
        assert!(
            pending.is_empty(),
            "relink {i}: nodes {pending:?} did not follow in 10 s"
        );
        all.push(acked.elapsed());
    }
    (all, per_node, acks)
}

/// (b): kill -9 of the leader, then a relink through a survivor again and again until one is
/// accepted; the killed node is restarted and the cluster waited for before the next kill.
fn failovers(runtime: &tokio::runtime::Runtime, nodes: &mut [Node], kills: usize) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut next = 0usize;
    for k in 0..kills {
        wait_cluster(runtime, nodes, (k + 1) % 3, 3);
        let Some(l) = leader(runtime, nodes, (k + 1) % 3) else {
            panic!("no leader before kill {k}");
        };
        let survivors: Vec<usize> = (0..nodes.len()).filter(|i| *i != l).collect();
        nodes[l].kill9();
        let killed = Instant::now();
        let mut attempt = 0usize;
        loop {
            let via = survivors[attempt % survivors.len()];
            attempt += 1;
            let to = if next.is_multiple_of(2) {
                "green"
            } else {
                "blue"
            };
            let accepted = runtime.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    nodes[via].client().link("web", &[to.to_owned()]),
                )
                .await
            });
            if matches!(accepted, Ok(Ok(_))) {
                next += 1;
                times.push(killed.elapsed());
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "kill {k}: no change accepted in 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        nodes[l].restart();
    }
    wait_cluster(runtime, nodes, 0, 3);
    times
}

/// (c): relinks per second through `client`, sequentially from one client (`web`) or from
/// `CLIENTS` clients at once (each its own alias), for `secs`.
fn rate(runtime: &tokio::runtime::Runtime, client: &Client, clients: usize, secs: f64) -> f64 {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let counts = runtime.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let client = client.clone();
                let alias = if clients == 1 {
                    "web".to_owned()
                } else {
                    format!("w{c}")
                };
                tokio::spawn(async move {
                    let mut done = 0u64;
                    let mut i = 0u64;
                    while Instant::now() < until {
                        let to = if i.is_multiple_of(2) { "green" } else { "blue" };
                        i += 1;
                        if client.link(&alias, &[to.to_owned()]).await.is_ok() {
                            done += 1;
                        }
                    }
                    // Back to blue, so the next run starts from the same links.
                    let _ = client.link(&alias, &["blue".to_owned()]).await;
                    done
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    counts as f64 / started.elapsed().as_secs_f64().max(secs)
}

fn cluster_of(etcd: &Etcd, root: &Path, prefix: &str, extra: usize) -> Vec<Node> {
    (0..3)
        .map(|i| {
            let name = format!("c{i}");
            let config = write_config(
                &root.join(format!("{}-{name}", prefix.trim_start_matches('/'))),
                extra,
                Some((&etcd.endpoints(), &name, prefix)),
            );
            Node::start(config)
        })
        .collect()
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let sizes = if measuring {
        Sizes {
            relinks: 100,
            kills: 10,
            rate_secs: 5.0,
            aliases: 10_000,
            restarts: 3,
        }
    } else {
        Sizes {
            relinks: 5,
            kills: 1,
            rate_secs: 0.5,
            aliases: 300,
            restarts: 1,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "aliasd cluster benchmark: 3 etcd members and 3 aliasd nodes on loopback, lease_ttl {LEASE_TTL}; \
         {} cores, load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let root = tempfile::Builder::new()
        .prefix("aliasd-bench-cluster-")
        .tempdir()
        .unwrap();
    let etcd = Etcd::start(&runtime);
    let mut nodes = cluster_of(&etcd, root.path(), "/bench", 0);
    wait_cluster(&runtime, &nodes, 0, 3);
    let small_rss: Vec<f64> = nodes.iter().map(Node::rss_mb).collect();
    let small_start: Vec<Duration> = nodes.iter().map(|n| n.started_in).collect();

    // (a)
    let (all, per_node, acks) = relinks(&runtime, &nodes, sizes.relinks);
    let l = leader(&runtime, &nodes, 0).expect("a leader");
    let (all_med, all_max) = median_max(all);
    let (ack_med, ack_max) = median_max(acks);
    println!();
    println!(
        "(a) relink acknowledged -> answered by all three nodes ({} relinks, sent through each node in turn):",
        sizes.relinks
    );
    println!("    all three answer the new target: median {all_med:8.2} ms   max {all_max:8.2} ms");
    for (i, t) in per_node.into_iter().enumerate() {
        let (m, x) = median_max(t);
        let role = if i == l { "leader" } else { "follower" };
        println!("    node c{i} ({role:>8}):            median {m:8.2} ms   max {x:8.2} ms");
    }
    println!(
        "    the relink's own answer (API):     median {ack_med:8.2} ms   max {ack_max:8.2} ms"
    );

    // (b)
    let failover = failovers(&runtime, &mut nodes, sizes.kills);
    let (f_med, f_max) = median_max(failover.clone());
    let mut sorted = failover;
    sorted.sort();
    println!();
    println!(
        "(b) kill -9 of the leader -> first change accepted through a survivor ({} kills):",
        sizes.kills
    );
    println!(
        "    median {f_med:8.1} ms   min {:8.1} ms   max {f_max:8.1} ms   (lease_ttl {LEASE_TTL})",
        ms(sorted[0])
    );

    // (c)
    let l = leader(&runtime, &nodes, 0).expect("a leader");
    let follower = (l + 1) % 3;
    let etcd_leader_1 = rate(&runtime, &nodes[l].client(), 1, sizes.rate_secs);
    let etcd_leader_n = rate(&runtime, &nodes[l].client(), CLIENTS, sizes.rate_secs);
    let etcd_follower_1 = rate(&runtime, &nodes[follower].client(), 1, sizes.rate_secs);
    let etcd_follower_n = rate(
        &runtime,
        &nodes[follower].client(),
        CLIENTS,
        sizes.rate_secs,
    );
    let cluster_rss: Vec<f64> = nodes.iter().map(Node::rss_mb).collect();
    drop(nodes);
    let single = Node::start(write_config(&root.path().join("single"), 0, None));
    let journal_1 = rate(&runtime, &single.client(), 1, sizes.rate_secs);
    let journal_n = rate(&runtime, &single.client(), CLIENTS, sizes.rate_secs);
    let single_rss = single.rss_mb();
    let single_start = single.started_in;
    drop(single);
    println!();
    println!(
        "(c) sustained relinks per second ({} s each; every relink durable before its answer):",
        sizes.rate_secs
    );
    println!(
        "    {:<34} {:>10} {:>12}",
        "",
        "1 client",
        format!("{CLIENTS} clients")
    );
    println!(
        "    {:<34} {:>10.0} {:>12.0}",
        "local journal (single node)", journal_1, journal_n
    );
    println!(
        "    {:<34} {:>10.0} {:>12.0}",
        "etcd, through the leader", etcd_leader_1, etcd_leader_n
    );
    println!(
        "    {:<34} {:>10.0} {:>12.0}",
        "etcd, through a follower", etcd_follower_1, etcd_follower_n
    );
    println!(
        "    {:<34} {:>10.2} {:>12.2}",
        "ratio etcd (leader) / journal",
        etcd_leader_1 / journal_1,
        etcd_leader_n / journal_n
    );

    // (d)
    let n = sizes.aliases;
    let mut big = Vec::new();
    // The first node finds the prefix empty: it leads and writes the aliases from its config.
    let first = Node::start(write_config(
        &root.path().join("big-c0"),
        n,
        Some((&etcd.endpoints(), "c0", "/big")),
    ));
    let first_ready = first.started_in;
    let written = Instant::now();
    let name = format!("a{}", n - 1);
    loop {
        let history = runtime.block_on(first.client().history(&name));
        if history.is_ok_and(|h| !h.is_empty()) {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(120),
            "{n} aliases not written in 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_written = first_ready + written.elapsed();
    big.push(first);
    for i in 1..3 {
        big.push(Node::start(write_config(
            &root.path().join(format!("big-c{i}")),
            n,
            Some((&etcd.endpoints(), &format!("c{i}"), "/big")),
        )));
    }
    wait_cluster(&runtime, &big, 0, 3);
    // Restarts of a follower: everything it serves comes from etcd.
    let mut follower_starts = Vec::new();
    for _ in 0..sizes.restarts {
        big[2].kill9();
        big[2].restart();
        follower_starts.push(big[2].started_in);
    }
    let socket = udp();
    let answers = answer(&socket, big[2].dns(), &format!("{name}.internal."), 7);
    assert_eq!(
        answers,
        Some(vec![IpAddr::V4(BLUE)]),
        "the restarted follower answers {name}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let big_rss: Vec<f64> = big.iter().map(Node::rss_mb).collect();
    drop(big);
    // The same aliases on a single node, in its journal: its first start and a restart.
    let mut single = Node::start(write_config(&root.path().join("big-single"), n, None));
    let single_first = single.started_in;
    let mut single_starts = Vec::new();
    for _ in 0..sizes.restarts {
        single.kill9();
        single.restart();
        single_starts.push(single.started_in);
    }
    std::thread::sleep(Duration::from_secs(1));
    let single_big_rss = single.rss_mb();
    drop(single);
    let (fs_med, _) = median_max(follower_starts);
    let (ss_med, _) = median_max(single_starts);
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!();
    println!("(d) memory and start-up with {n} aliases (spawn -> ready file; RSS from /proc):");
    println!("    {:<46} {:>12} {:>10}", "", "start-up", "RSS");
    println!(
        "    {:<46} {:>9.0} ms {:>7.1} MB",
        "cluster node, 10 aliases (median of 3)",
        median_max(small_start).0,
        avg(&small_rss)
    );
    println!(
        "    {:<46} {:>9.0} ms {:>7.1} MB",
        "cluster: first node, empty prefix (leader)",
        ms(first_ready),
        big_rss[0]
    );
    println!(
        "    {:<46} {:>9.0} ms",
        format!("  ... until its {n} aliases were in etcd"),
        ms(first_written)
    );
    println!(
        "    {:<46} {:>9.0} ms {:>7.1} MB",
        format!("cluster: follower restart, {n} in etcd"),
        fs_med,
        big_rss[2]
    );
    println!(
        "    {:<46} {:>9.0} ms {:>7.1} MB",
        "single node, 10 aliases",
        ms(single_start),
        single_rss
    );
    println!(
        "    {:<46} {:>9.0} ms",
        format!("single node: first start, {n} aliases"),
        ms(single_first)
    );
    println!(
        "    {:<46} {:>9.0} ms {:>7.1} MB",
        format!("single node: restart, {n} in its journal"),
        ss_med,
        single_big_rss
    );
    println!(
        "    ratio cluster follower / single node at {n} aliases: start-up {:.2}, RSS {:.2}",
        fs_med / ss_med,
        big_rss[2] / single_big_rss
    );
    println!(
        "    (the cluster nodes after (a)-(c): RSS {})",
        cluster_rss
            .iter()
            .map(|r| format!("{r:.1} MB"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(etcd);
}
