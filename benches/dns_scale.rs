//! DNS switch latency and scale, on the real `aliasd` binary over loopback:
//!
//! - **switch latency**: from the API's reply to a relink (and from the event of a promotion's
//!   phase change) until a UDP query sees the new set, under query load; median and max;
//! - **scale**: a small config (10 aliases) and a large one (10,000 aliases of 10 endpoints, plus
//!   100,000 static records and 1,000 health-checked endpoints): `aliasd check` time, start-up
//!   time, resident memory, alias and NXDOMAIN queries per second, and the time of one relink
//!   through the API (median and max), also while the 1,000 endpoints flap all at once.
//!
//! `cargo bench --bench dns_scale` measures; under `cargo test` it runs a tiny version so the
//! benchmark itself is kept working. `bash benches/dns.sh` runs it after the side-by-side
//! comparison with Knot and NSD.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aliasd::api::dto::{Change, EventDto, PromoteRequest};
use aliasd::client::Client;
use aliasd::daemon::Ready;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-token-0123456789";

struct Sizes {
    aliases: usize,
    endpoints: usize,
    statics: usize,
    flapping: usize,
    switches: usize,
    promotions: usize,
    relinks: usize,
    qps_secs: f64,
}

/// A config of `aliases` aliases (`a0`..) with `endpoints` endpoints each, `statics` static A
/// records, the aliases `web` (linked to `blue`, which `green` may replace) and `flap` (a
/// service of `flapping` endpoints checked over HTTP), in `dir`.
fn write_config(dir: &Path, s: &Sizes, flap_endpoints: &[SocketAddr]) {
    let mut zone = String::from(
        "$TTL 300\n@ IN SOA ns1.internal. hostmaster.internal. ( 1 3600 600 86400 5 )\n  IN NS ns1.internal.\nns1 IN A 127.0.0.1\n",
    );
    for i in 0..s.statics {
        zone.push_str(&format!(
            "h{i} IN A 10.{}.{}.{}\n",
            100 + (i >> 16 & 63),
            i >> 8 & 255,
            i & 255
        ));
    }
    std::fs::write(dir.join("internal.zone"), zone).unwrap();
    let quoted = |eps: Vec<String>| {
        eps.iter()
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut config = format!(
        r#"[dns]
listen = ["127.0.0.1:0"]
udp_sockets = 1
alias_ttl = 0
negative_ttl = 0
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
[promotion]
observe = "100ms"
warm_timeout = "10s"
drain_grace = "0s"
[[service]]
name = "blue"
endpoints = ["10.250.0.1:80", "10.250.0.2:80", "10.250.0.3:80"]
[[service]]
name = "green"
endpoints = ["10.251.0.1:80", "10.251.0.2:80", "10.251.0.3:80"]
[[alias]]
name = "web"
targets = ["blue"]
"#
    );
    if !flap_endpoints.is_empty() {
        config.push_str(&format!(
            "[[service]]\nname = \"flap\"\nendpoints = [{}]\n[service.health]\nkind = \"http\"\npath = \"/healthz\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1\n[[alias]]\nname = \"flap\"\ntargets = [\"flap\"]\nif_none_healthy = \"none\"\n",
            quoted(flap_endpoints.iter().map(ToString::to_string).collect())
        ));
    }
    for i in 0..s.aliases {
        let eps: Vec<String> = (0..s.endpoints)
            .map(|j| {
                format!(
                    "10.{}.{}.{}:{}",
                    i >> 14 & 63,
                    i >> 6 & 255,
                    (i & 63) * 4 + j % 4,
                    8000 + j
                )
            })
            .collect();
        config.push_str(&format!(
            "[[service]]\nname = \"s{i}\"\nendpoints = [{}]\n[[alias]]\nname = \"a{i}\"\ntargets = [\"s{i}\"]\n",
            quoted(eps)
        ));
    }
    std::fs::write(dir.join("aliasd.toml"), config).unwrap();
}

struct Running {
    child: Child,
    ready: Ready,
    started_in: Duration,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Running {
    let ready_path = dir.join("ready.json");
    let t0 = Instant::now();
    let mut running = Running {
        child: Command::new(env!("CARGO_BIN_EXE_aliasd"))
            .args(["run", "--config"])
            .arg(dir.join("aliasd.toml"))
            .arg("--ready-file")
            .arg(&ready_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aliasd"),
        ready: Ready {
            pid: 0,
            dns: Vec::new(),
            api: "127.0.0.1:0".parse().unwrap(),
            proxies: Vec::new(),
        },
        started_in: Duration::ZERO,
    };
    // The child is killed and waited for when `running` drops, on every path.
    loop {
        if let Ok(bytes) = std::fs::read(&ready_path) {
            running.ready = serde_json::from_slice(&bytes).expect("ready file");
            running.started_in = t0.elapsed();
            return running;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "aliasd did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Resident memory of `pid` in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn query_bytes(name: &str, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// The A records of `name` as the server answers now.
fn resolve(socket: &UdpSocket, server: SocketAddr, name: &str) -> BTreeSet<String> {
    let id = rand_id();
    socket.send_to(&query_bytes(name, id), server).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            return BTreeSet::new();
        };
        let Ok(m) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if m.metadata.id != id {
            continue;
        }
        return m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
    }
}

fn rand_id() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    (NEXT.fetch_add(7919, Ordering::Relaxed) % 65_521) as u16
}

/// Queries per second for `names`, closed loop with 64 queries outstanding, for `secs`.
fn qps(server: SocketAddr, names: &[String], secs: f64) -> f64 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let queries: Vec<Vec<u8>> = (0..names.len())
        .map(|i| query_bytes(&names[i], i as u16))
        .collect();
    let mut next = 0usize;
    for _ in 0..64 {
        socket
            .send_to(&queries[next % queries.len()], server)
            .unwrap();
        next += 1;
    }
    let t0 = Instant::now();
    let mut answered = 0u64;
    let mut buf = [0u8; 4096];
    while t0.elapsed().as_secs_f64() < secs {
        match socket.recv_from(&mut buf) {
            Ok(_) => {
                answered += 1;
                socket
                    .send_to(&queries[next % queries.len()], server)
                    .unwrap();
                next += 1;
            }
            // A lost query: put another in its place.
            Err(_) => {
                socket
                    .send_to(&queries[next % queries.len()], server)
                    .unwrap();
                next += 1;
            }
        }
    }
    answered as f64 / t0.elapsed().as_secs_f64()
}

/// A background query load until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(server: SocketAddr, name: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name) = (stop.clone(), vec![name.to_owned()]);
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                qps(server, &name, 0.2);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn median_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], *v.last().unwrap())
}

fn blue() -> BTreeSet<String> {
    ["10.250.0.1", "10.250.0.2", "10.250.0.3"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn green() -> BTreeSet<String> {
    ["10.251.0.1", "10.251.0.2", "10.251.0.3"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Waits until `web` answers `want`; the time it took, in µs.
fn seen_after(
    socket: &UdpSocket,
    server: SocketAddr,
    want: &BTreeSet<String>,
    from: Instant,
) -> f64 {
    loop {
        if resolve(socket, server, "web.internal.") == *want {
            return from.elapsed().as_secs_f64() * 1e6;
        }
        assert!(
            from.elapsed() < Duration::from_secs(5),
            "the switch never showed"
        );
    }
}

/// The time of `n` relinks through the API, in ms (median, max).
async fn relinks(client: &Client, n: usize, alias: &str, a: &str, b: &str) -> (f64, f64) {
    let mut times = Vec::new();
    for i in 0..n {
        let to = if i % 2 == 0 { b } else { a };
        let t0 = Instant::now();
        client.link(alias, &[to.to_owned()]).await.expect("relink");
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    median_max(times)
}

async fn switch_latencies(running: &Running, s: &Sizes) {
    let server = running.ready.dns[0];
    let client = Client::new(&format!("http://{}", running.ready.api), Some(TOKEN.into())).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let _load = Load::start(server, "a1.internal.");
    let mut relink_us = Vec::new();
    let mut stale_first = 0;
    for i in 0..s.switches {
        let (to, want) = if i % 2 == 0 {
            ("green", green())
        } else {
            ("blue", blue())
        };
        client.link("web", &[to.to_owned()]).await.expect("relink");
        let t0 = Instant::now();
        if resolve(&socket, server, "web.internal.") != want {
            stale_first += 1;
        }
        relink_us.push(seen_after(&socket, server, &want, t0));
    }
    let (med, max) = median_max(relink_us);
    println!(
        "relink -> first UDP answer with the new set ({} switches under load): median {med:.0} µs, max {max:.0} µs; first query after the reply stale: {stale_first}",
        s.switches
    );
    // Promotions: from the event of the drain (v1 out of the answers) to a query without v1.
    let mut events = client.events().await.expect("events");
    let mut phase_us = Vec::new();
    let mut current = if s.switches.is_multiple_of(2) {
        "blue"
    } else {
        "green"
    };
    for _ in 0..s.promotions {
        let (to, want) = if current == "blue" {
            ("green", green())
        } else {
            ("blue", blue())
        };
        let request = PromoteRequest {
            to: aliasd::api::dto::OneOrMany::One(to.into()),
            ..PromoteRequest::default()
        };
        client
            .promote("web", &request, false)
            .await
            .expect("promote");
        loop {
            match events.next_event().await {
                Some(Ok(EventDto::Change { entry, .. }))
                    if entry.alias == "web.internal" && entry.change == Change::Draining =>
                {
                    let t0 = Instant::now();
                    phase_us.push(seen_after(&socket, server, &want, t0));
                }
                Some(Ok(EventDto::Change { entry, .. }))
                    if entry.alias == "web.internal" && entry.change == Change::Completed =>
                {
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("events stream: {other:?}"),
            }
        }
        current = to;
    }
    if !phase_us.is_empty() {
        let (med, max) = median_max(phase_us);
        println!(
            "promotion phase change (draining event) -> UDP answer without the old set ({} promotions): median {med:.0} µs, max {max:.0} µs",
            s.promotions
        );
    }
}

/// In-process HTTP backends whose health the bench flips, all at once.
async fn flapping_backends(n: usize, stop: &CancellationToken) -> Vec<aliasd::backend::Backend> {
    let mut out = Vec::new();
    for i in 0..n {
        let ip = format!("127.{}.{}.{}", 60 + i / 60_000, i / 250 % 240, i % 250 + 1);
        out.push(
            aliasd::backend::spawn(format!("{ip}:0").parse().unwrap(), "flap", stop.clone())
                .await
                .expect("backend"),
        );
    }
    out
}

struct Figures {
    check_s: f64,
    start_s: f64,
    rss_mb: f64,
    alias_qps: f64,
    nx_qps: f64,
    relink: (f64, f64),
    relink_flapping: Option<(f64, f64)>,
}

async fn scale_run(s: &Sizes, flap: usize) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let backends = flapping_backends(flap, &stop).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    write_config(dir.path(), s, &[]);
    let t0 = Instant::now();
    let check = Command::new(env!("CARGO_BIN_EXE_aliasd"))
        .args(["check", "--config"])
        .arg(dir.path().join("aliasd.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let check_s = t0.elapsed().as_secs_f64();
    let running = start(dir.path());
    let server = running.ready.dns[0];
    let client = Client::new(&format!("http://{}", running.ready.api), Some(TOKEN.into())).unwrap();
    let aliases: Vec<String> = (0..s.aliases.min(1000))
        .map(|i| format!("a{i}.internal."))
        .collect();
    let missing: Vec<String> = (0..1000).map(|i| format!("nope{i}.internal.")).collect();
    // Medians of three, alternating, so one disturbed second does not decide the ratio.
    let (mut alias_runs, mut nx_runs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        alias_runs.push(qps(server, &aliases, s.qps_secs / 3.0));
        nx_runs.push(qps(server, &missing, s.qps_secs / 3.0));
    }
    let (alias_qps, nx_qps) = (median_max(alias_runs).0, median_max(nx_runs).0);
    let relink = relinks(&client, s.relinks, "web", "blue", "green").await;
    let rss = rss_mb(running.child.id());
    let start_s = running.started_in.as_secs_f64();
    drop(running);
    // The same with endpoints that flap: another instance, so their checks do not disturb the
    // figures above.
    let relink_flapping = if flap > 0 {
        write_config(dir.path(), s, &addrs);
        let _ = std::fs::remove_dir_all(dir.path().join("state"));
        let _ = std::fs::remove_file(dir.path().join("ready.json"));
        let running = start(dir.path());
        let client =
            Client::new(&format!("http://{}", running.ready.api), Some(TOKEN.into())).unwrap();
        // Every endpoint comes up first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Every endpoint of `flap` fails, then passes, every 600 ms: 1,000 health changes at once.
        let flipping = Arc::new(AtomicBool::new(true));
        let f = flipping.clone();
        let flipper = tokio::spawn(async move {
            let mut healthy = false;
            while f.load(Ordering::Relaxed) {
                for b in &backends {
                    b.set_healthy(healthy);
                }
                healthy = !healthy;
                tokio::time::sleep(Duration::from_millis(600)).await;
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = relinks(&client, s.relinks, "web", "blue", "green").await;
        flipping.store(false, Ordering::Relaxed);
        let _ = flipper.await;
        Some(r)
    } else {
        None
    };
    stop.cancel();
    Figures {
        check_s,
        start_s,
        rss_mb: rss,
        alias_qps,
        nx_qps,
        relink,
        relink_flapping,
    }
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let full = if measuring {
        Sizes {
            aliases: 10_000,
            endpoints: 10,
            statics: 100_000,
            flapping: 1_000,
            switches: 1_000,
            promotions: 50,
            relinks: 50,
            qps_secs: 6.0,
        }
    } else {
        Sizes {
            aliases: 100,
            endpoints: 3,
            statics: 200,
            flapping: 10,
            switches: 10,
            promotions: 2,
            relinks: 5,
            qps_secs: 0.3,
        }
    };
    let small = Sizes {
        aliases: 10,
        endpoints: 10,
        statics: 100,
        ..full
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("== switch latency (10 aliases, alias TTL 0)");
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), &small, &[]);
        let running = start(dir.path());
        switch_latencies(&running, &full).await;
        drop(running);

        println!(
            "\n== scale: {} aliases x {} endpoints + {} static records (+{} flapping endpoints) vs 10 aliases",
            full.aliases, full.endpoints, full.statics, full.flapping
        );
        let s = scale_run(&small, 0).await;
        let l = scale_run(&full, full.flapping).await;
        println!("{:<44} {:>14} {:>14} {:>8}", "", "10 aliases", format!("{} aliases", full.aliases), "ratio");
        let row = |what: &str, a: f64, b: f64, unit: &str| {
            println!("{what:<44} {:>11.1} {unit:<2} {:>11.1} {unit:<2} {:>8.2}", a, b, b / a);
        };
        row("aliasd check", s.check_s * 1e3, l.check_s * 1e3, "ms");
        row("start-up (until serving)", s.start_s * 1e3, l.start_s * 1e3, "ms");
        row("resident memory", s.rss_mb, l.rss_mb, "MB");
        row("alias A queries/s (closed loop, 64 out)", s.alias_qps, l.alias_qps, "");
        row("NXDOMAIN queries/s", s.nx_qps, l.nx_qps, "");
        row("relink through the API, median", s.relink.0, l.relink.0, "ms");
        row("relink through the API, max", s.relink.1, l.relink.1, "ms");
        if let Some((med, max)) = l.relink_flapping {
            println!(
                "{:<44} {:>14} {:>11.1} ms {:>8.2}",
                format!("relink while {} endpoints flap, median", full.flapping),
                "",
                med,
                med / l.relink.0
            );
            println!("{:<44} {:>14} {:>11.1} ms", "relink while they flap, max", "", max);
        }
    });
}
