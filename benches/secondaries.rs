//! Propagation to real secondaries: the time from the API's reply to a relink until Knot DNS and
//! NSD, secondaries of aliasd fed by NOTIFY and IXFR (TSIG-signed), each answer the new set;
//! median and max over 100 switches, each secondary measured the same switches side by side.
//! The same time for aliasd itself is printed for scale.
//!
//! `cargo bench --bench secondaries` measures 100 switches; under `cargo test` it runs 5 so the
//! benchmark itself is kept working.

// The tests use all of it (restarting a secondary, say); the benchmark only some.
#[allow(dead_code)]
#[path = "../tests/it/secondary_servers.rs"]
mod secondary_servers;

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aliasd::client::Client;
use aliasd::daemon::Ready;
use secondary_servers::{KEY_NAME, Kind, SECRET, Secondary, free_port};

const TOKEN: &str = "bench-token-0123456789";

/// The aliasd process, killed (by its PID) and reaped when dropped.
struct Aliasd(Child);

impl Drop for Aliasd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// aliasd on `dns_port`, with `web` linked to `blue` (10.8.0.1) or `green` (10.8.0.2), and
/// the two secondaries.
fn start_aliasd(
    dir: &std::path::Path,
    dns_port: u16,
    knot: SocketAddr,
    nsd: SocketAddr,
) -> (Aliasd, Ready) {
    std::fs::write(
        dir.join("internal.zone"),
        "$TTL 300\n@ IN SOA ns1.internal. hostmaster.internal. ( 1 3600 600 86400 5 )\n  IN NS ns1.internal.\nns1 IN A 127.0.0.1\n",
    )
    .unwrap();
    let config = format!(
        r#"
[dns]
listen = ["127.0.0.1:{dns_port}"]
udp_sockets = 1
alias_ttl = 1

[[zone]]
origin = "internal."
file = "internal.zone"
secondaries = [
  {{ address = "{knot}", tsig_key = "{KEY_NAME}" }},
  {{ address = "{nsd}", tsig_key = "{KEY_NAME}" }},
]

[[tsig_key]]
name = "{KEY_NAME}"
secret = "{SECRET}"

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
endpoints = ["10.8.0.1:80"]

[[service]]
name = "green"
endpoints = ["10.8.0.2:80"]

[[alias]]
name = "web"
targets = ["blue"]
"#
    );
    std::fs::write(dir.join("aliasd.toml"), config).unwrap();
    let ready = dir.join("ready.json");
    let child = Aliasd(
        Command::new(env!("CARGO_BIN_EXE_aliasd"))
            .args(["run", "--config"])
            .arg(dir.join("aliasd.toml"))
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aliasd"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(bytes) = std::fs::read(&ready) {
            return (child, serde_json::from_slice(&bytes).expect("ready file"));
        }
        assert!(Instant::now() < deadline, "aliasd not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The A answer of `server` for web.internal over UDP, one query (`None` when none came).
fn answer(socket: &std::net::UdpSocket, server: SocketAddr, id: u16) -> Option<Vec<IpAddr>> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(
        Name::from_ascii("web.internal.").unwrap(),
        RecordType::A,
    ));
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

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:>8}: median {:7.2} ms   max {:7.2} ms   ({} switches)",
        ms(times[times.len() / 2]),
        ms(*times.last().unwrap()),
        times.len()
    );
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let switches = if measuring { 100 } else { 5 };
    let dir = tempfile::tempdir().unwrap();
    let knot_ip: IpAddr = "127.0.0.43".parse().unwrap();
    let nsd_ip: IpAddr = "127.0.0.44".parse().unwrap();
    let knot_addr = SocketAddr::new(knot_ip, free_port(knot_ip));
    let nsd_addr = SocketAddr::new(nsd_ip, free_port(nsd_ip));
    let dns_port = free_port("127.0.0.1".parse().unwrap());
    let (aliasd, ready) = start_aliasd(dir.path(), dns_port, knot_addr, nsd_addr);
    let knot = Secondary::start(Kind::Knot, knot_addr, ready.dns[0]);
    let nsd = Secondary::start(Kind::Nsd, nsd_addr, ready.dns[0]);
    knot.wait_for("web.internal", &["10.8.0.1"], Duration::from_secs(30));
    nsd.wait_for("web.internal", &["10.8.0.1"], Duration::from_secs(30));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::new(&format!("http://{}", ready.api), Some(TOKEN.to_owned())).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let servers = [
        ("aliasd", ready.dns[0]),
        ("knot", knot_addr),
        ("nsd", nsd_addr),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); servers.len()];
    let mut id: u16 = 1;
    for i in 0..switches {
        let (to, want): (&str, IpAddr) = if i % 2 == 0 {
            ("green", "10.8.0.2".parse().unwrap())
        } else {
            ("blue", "10.8.0.1".parse().unwrap())
        };
        runtime
            .block_on(client.link("web", &[to.to_owned()]))
            .expect("relink");
        let acked = Instant::now();
        let mut pending: Vec<usize> = (0..servers.len()).collect();
        // Bounded: 10 s per switch at most.
        while !pending.is_empty() && acked.elapsed() < Duration::from_secs(10) {
            pending.retain(|&s| {
                id = id.wrapping_add(1);
                if answer(&socket, servers[s].1, id) == Some(vec![want]) {
                    times[s].push(acked.elapsed());
                    false
                } else {
                    true
                }
            });
        }
        assert!(
            pending.is_empty(),
            "switch {i}: {pending:?} did not follow in 10 s"
        );
    }
    println!("propagation from the API's ack of a relink to the new answer, polled over UDP:");
    for ((name, _), t) in servers.iter().zip(times) {
        summary(name, t);
    }
    drop((knot, nsd, aliasd));
}
