//! Faults of a cluster on a real 3-member etcd: a leader frozen past its lease, etcd without a
//! quorum, one node cut off from etcd (and a compaction meanwhile), and etcd over TLS with
//! client certificates and authentication (a wrong password too). Three aliasd nodes run on
//! 127.0.N.10–12 of the etcd cluster's net (`EtcdCluster::ip`), with a 2 s lease.
//!
//! Every wait is a poll with a deadline; everything a test starts (etcd members, aliasd nodes,
//! relays, backends, directories) is stopped and removed when its guards drop, also when an
//! assertion fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aliasd::client::Client;
use aliasd::cluster::ClusterStatus;
use etcd_client::GetOptions;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::etcd::{AliasdNode, EtcdCluster, Relay};
use crate::support::{StopOnDrop, TOKEN, TOKEN_NAME, Transport, ZONE, addresses, soa_serial};

/// The lease every node of these tests holds.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// etcd's key prefix (aliasd's default).
const PREFIX: &str = "/aliasd";
/// Where `web-v1` and `web-v2` answer when no real backend runs.
const V1: &str = "10.77.0.1";
const V2: &str = "10.77.0.2";
/// The names of the three nodes; node `i` is on 127.0.N.(10 + i).
const NAMES: [&str; 3] = ["a", "b", "c"];

/// The `[cluster]` table's keys besides `etcd`, `node`, `advertise` and `lease_ttl`.
#[derive(Default, Clone)]
struct ClusterExtra(String);

/// What one node's config says.
struct NodeSpec<'a> {
    name: &'a str,
    /// The last octet of its address in the etcd cluster's net.
    host: u8,
    etcd: Vec<String>,
    cluster: ClusterExtra,
    /// The endpoints of `web-v1` and `web-v2`, as `ip:port`.
    v1: String,
    v2: String,
    /// A `[[proxy]]` for `web` on its address.
    proxy: bool,
}

/// Writes `<dir>/node-<name>.toml` (its state in `state-<name>`) and returns its path. Every
/// node has the same zone, services and alias, so the same definitions.
fn write_config(dir: &Path, etcd: &EtcdCluster, spec: &NodeSpec<'_>) -> PathBuf {
    let ip = etcd.ip(spec.host);
    let endpoints = spec
        .etcd
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let proxy = if spec.proxy {
        format!("\n[[proxy]]\nlisten = \"{ip}:0\"\nalias = \"web\"\n")
    } else {
        String::new()
    };
    let text = format!(
        "[dns]\nlisten = [\"{ip}:0\"]\nudp_sockets = 1\nalias_ttl = 1\nnegative_ttl = 1\n\n\
         [[zone]]\norigin = \"internal.\"\nfile = \"internal.zone\"\n\n\
         [api]\nlisten = \"{ip}:0\"\n\n\
         [[api.token]]\nname = \"{TOKEN_NAME}\"\nsecret = \"{TOKEN}\"\n\n\
         [state]\ndir = \"state-{name}\"\n\n[health]\nkind = \"none\"\n\n\
         [[service]]\nname = \"web-v1\"\nendpoints = [\"{v1}\"]\n\n\
         [[service]]\nname = \"web-v2\"\nendpoints = [\"{v2}\"]\n\n\
         [[alias]]\nname = \"web\"\ntargets = [\"web-v1\"]\n{proxy}\n\
         [cluster]\netcd = [{endpoints}]\nnode = \"{name}\"\nadvertise = \"{ip}\"\n\
         lease_ttl = \"{ttl}s\"\n{extra}\n",
        name = spec.name,
        v1 = spec.v1,
        v2 = spec.v2,
        ttl = LEASE_TTL.as_secs(),
        extra = spec.cluster.0,
    );
    let path = dir.join(format!("node-{}.toml", spec.name));
    std::fs::write(&path, text).expect("write a node's config");
    path
}

/// A directory with the zone file the nodes share.
fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("internal.zone"), ZONE).expect("write zone");
    dir
}

/// The specs of the three nodes `a`, `b`, `c` on `etcd`'s members, with no backends.
fn specs(etcd: &EtcdCluster) -> Vec<NodeSpec<'static>> {
    NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| NodeSpec {
            name,
            host: 10 + i as u8,
            etcd: etcd.endpoints(),
            cluster: ClusterExtra::default(),
            v1: format!("{V1}:80"),
            v2: format!("{V2}:80"),
            proxy: false,
        })
        .collect()
}

/// The nodes of a test and their directory; the nodes are killed before the directory goes.
struct Nodes {
    nodes: Vec<AliasdNode>,
    _dir: tempfile::TempDir,
}

impl Nodes {
    /// Writes every spec's config and starts the nodes one after the other, in order.
    fn start(etcd: &EtcdCluster, specs: &[NodeSpec<'_>], env: &[(&str, &str)]) -> Self {
        let dir = config_dir();
        let nodes = specs
            .iter()
            .map(|spec| AliasdNode::start(&write_config(dir.path(), etcd, spec), env))
            .collect();
        Self { nodes, _dir: dir }
    }

    fn all(&self) -> Vec<&AliasdNode> {
        self.nodes.iter().collect()
    }

    fn index(&self, name: &str) -> usize {
        NAMES
            .iter()
            .position(|n| *n == name)
            .expect("a node's name")
    }

    /// Every node's log, for a failure message.
    fn logs(&self) -> String {
        self.nodes
            .iter()
            .zip(NAMES)
            .map(|(n, name)| format!("---- node {name} ----\n{}", tail(&n.log(), 60)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `GET /v1/cluster`, or `None` if the node did not answer within 2 s.
async fn status(node: &AliasdNode) -> Option<ClusterStatus> {
    tokio::time::timeout(Duration::from_secs(2), node.client().cluster())
        .await
        .ok()?
        .ok()
}

/// Waits until every one of `nodes` names the same leader (one of them) and lists all of
/// them as live; returns the leader's name.
async fn wait_leader(nodes: &[&AliasdNode], limit: Duration, logs: impl Fn() -> String) -> String {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        seen.clear();
        for node in nodes {
            seen.push(status(node).await);
        }
        let leaders: Vec<Option<&str>> = seen
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.leader.as_deref()))
            .collect();
        let all_listed = seen
            .iter()
            .all(|s| s.as_ref().is_some_and(|s| s.nodes.len() == nodes.len()));
        if let Some(Some(leader)) = leaders.first()
            && leaders.iter().all(|l| l == &Some(*leader))
            && all_listed
        {
            return (*leader).to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no leader agreed on by all {} nodes within {limit:?}: {seen:#?}\n{}",
            nodes.len(),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `message` to `dns` over UDP; `None` without an answer within a second.
async fn ask(dns: SocketAddr, name: &str, rtype: RecordType) -> Option<Message> {
    let message = crate::support::query_message(name, rtype, Some(1232));
    let bytes = message.to_vec().expect("encode");
    let raw = tokio::time::timeout(
        Duration::from_secs(1),
        crate::support::exchange_raw(dns, &bytes, Transport::Udp),
    )
    .await
    .ok()??;
    Message::from_vec(&raw).ok()
}

/// What a node answers: `web.internal.`'s addresses and the zone's SOA serial.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answers {
    web: Vec<String>,
    serial: u32,
}

async fn answers(node: &AliasdNode) -> Option<Answers> {
    let web = ask(node.dns(), "web.internal.", RecordType::A).await?;
    let soa = ask(node.dns(), "internal.", RecordType::SOA).await?;
    Some(Answers {
        web: addresses(&web),
        serial: soa_serial(&soa),
    })
}

/// Waits until every node answers `web.internal.` with `web` and all give the same SOA serial;
/// returns that serial.
async fn wait_converged(
    nodes: &[&AliasdNode],
    web: &[&str],
    limit: Duration,
    logs: impl Fn() -> String,
) -> u32 {
    let deadline = Instant::now() + limit;
    let want: Vec<String> = web.iter().map(|s| (*s).to_owned()).collect();
    loop {
        let mut seen = Vec::new();
        for node in nodes {
            seen.push(answers(node).await);
        }
        if let Some(Some(first)) = seen.first()
            && first.web == want
            && seen.iter().all(|a| a.as_ref() == Some(first))
        {
            return first.serial;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not all answer web with {want:?} and one serial within {limit:?}: \
             {seen:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Links `web` to `targets` through `node`; the API's answer (bounded: 15 s).
async fn link(node: &AliasdNode, targets: &[&str]) -> Result<(), aliasd::client::ClientError> {
    let targets: Vec<String> = targets.iter().map(|t| (*t).to_owned()).collect();
    let client: Client = node.client();
    tokio::time::timeout(Duration::from_secs(15), client.link("web", &targets))
        .await
        .expect("the API answered a link within 15 s")
        .map(|_| ())
}

/// The leader's AliasdNode and the others'.
fn split<'a>(nodes: &'a Nodes, leader: &str) -> (&'a AliasdNode, Vec<&'a AliasdNode>) {
    let i = nodes.index(leader);
    let others = nodes
        .nodes
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, n)| n)
        .collect();
    (&nodes.nodes[i], others)
}

/// Every key under `under` (below the prefix) with its mod revision, and etcd's revision.
async fn keys_under(client: &mut etcd_client::Client, under: &str) -> (i64, Vec<(String, i64)>) {
    let got = client
        .get(
            format!("{PREFIX}/{under}"),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .expect("read etcd");
    let revision = got.header().expect("a header").revision();
    let keys = got
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.mod_revision(),
            )
        })
        .collect();
    (revision, keys)
}

/// The `leader` key's value and create revision.
async fn leader_key(client: &mut etcd_client::Client) -> Option<(String, i64)> {
    let got = client
        .get(format!("{PREFIX}/leader"), None)
        .await
        .expect("read the leader key");
    got.kvs().first().map(|kv| {
        (
            String::from_utf8_lossy(kv.value()).into_owned(),
            kv.create_revision(),
        )
    })
}

/// Polls `done` every 50 ms until it holds; panics with `what` and the logs after `limit`.
async fn poll<F, Fut>(limit: Duration, what: &str, logs: impl Fn() -> String, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "not {what} within {limit:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_leader_steps_down() {
    let etcd = EtcdCluster::start().await;
    let nodes = Nodes::start(&etcd, &specs(&etcd), &[]);
    let logs = || nodes.logs();
    let old = wait_leader(&nodes.all(), Duration::from_secs(10), logs).await;
    let (frozen, others) = split(&nodes, &old);
    link(others[0], &["web-v2"]).await.expect("a relink");
    wait_converged(&nodes.all(), &[V2], Duration::from_secs(10), logs).await;
    let mut kv = etcd.client().await;
    let (_, old_fence) = leader_key(&mut kv).await.expect("a leader key");

    // Frozen for twice its lease: the others elect a new leader meanwhile, and a change
    // through a follower is taken by it.
    frozen.sigstop();
    let froze = Instant::now();
    // A change a follower forwarded to the frozen leader before the others noticed: it
    // waits, and is refused when the old leader wakes up, having changed nothing.
    let early = {
        let client = others[0].client();
        tokio::spawn(async move {
            let targets = ["web-v1".to_owned(), "web-v2".to_owned()];
            tokio::time::timeout(Duration::from_secs(20), client.link("web", &targets)).await
        })
    };
    let new = loop {
        if let Some(l) = status(others[0]).await.and_then(|s| s.leader)
            && l != old
        {
            break l;
        }
        assert!(
            froze.elapsed() < LEASE_TTL + Duration::from_secs(3),
            "no new leader within {:?} of the freeze\n{}",
            LEASE_TTL + Duration::from_secs(3),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let failover = froze.elapsed();
    link(others[1], &["web-v1"])
        .await
        .expect("a relink through a follower while the old leader is frozen");
    let (holder, new_fence) = leader_key(&mut kv).await.expect("a leader key");
    assert_eq!(holder, new);
    assert!(new_fence > old_fence, "{new_fence} <= {old_fence}");
    let (_, alias) = keys_under(&mut kv, "state/alias/web").await;
    assert!(
        alias.iter().all(|(_, rev)| *rev > new_fence),
        "web's state was not written by the new leader's term (fence {new_fence}): {alias:?}"
    );
    wait_converged(&others, &[V1], Duration::from_secs(10), logs).await;
    if let Some(wait) = (LEASE_TTL * 2).checked_sub(froze.elapsed()) {
        // The freeze itself is the fault under test: it lasts twice the lease.
        tokio::time::sleep(wait).await;
    }
    let mut before = Vec::new();
    for under in ["state/", "live/", "history/", "leader"] {
        before.extend(keys_under(&mut kv, under).await.1);
    }
    let (thawed_at, _) = keys_under(&mut kv, "state/").await;

    frozen.sigcont();
    let new_name = new.as_str();
    poll(
        Duration::from_secs(10),
        "the old leader stepped down and follows the new one",
        logs,
        || async move {
            let log = frozen.log();
            let stepped = log.contains("stepping down") || log.contains("no longer the leader");
            stepped
                && status(frozen)
                    .await
                    .is_some_and(|s| s.leader.as_deref() == Some(new_name) && !s.is_leader())
        },
    )
    .await;
    let serial = wait_converged(&nodes.all(), &[V1], Duration::from_secs(10), logs).await;
    let refused = early
        .await
        .expect("the early change's task")
        .expect("the early change answered within 20 s")
        .expect_err("a change forwarded to the frozen leader");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(503), "{refused}");
    // Which of the old leader's parts refuses it depends on the order they wake up in; that
    // it was not applied shows in every node's answers above.
    let text = refused.to_string();

    // It wrote nothing: no key of the state, the live answers, the history or the leadership
    // changed since it woke up, and the leadership is still the new leader's.
    let mut after = Vec::new();
    for under in ["state/", "live/", "history/", "leader"] {
        after.extend(keys_under(&mut kv, under).await.1);
    }
    let touched: Vec<&(String, i64)> = after.iter().filter(|(_, r)| *r > thawed_at).collect();
    assert!(
        touched.is_empty() && after == before,
        "keys written after the old leader woke up (revision {thawed_at}): {touched:?}\n{}",
        logs()
    );
    assert_eq!(
        leader_key(&mut kv).await,
        Some((new.clone(), new_fence)),
        "the leadership changed after the old leader woke up"
    );

    // As a follower it forwards a change to the new leader, and every node converges on it.
    link(frozen, &["web-v2"])
        .await
        .expect("a relink through the old leader, now a follower");
    let next = wait_converged(&nodes.all(), &[V2], Duration::from_secs(10), logs).await;
    assert!(next > serial, "serial {next} after {serial}");
    eprintln!(
        "frozen_leader_steps_down: new leader {new} (was {old}) {failover:?} after the freeze; \
         the change sent to it frozen: {text}"
    );
}

/// `GET /` through the proxy at `addr`; the backend's name it answered with, or why not.
async fn proxy_get(addr: SocketAddr) -> Result<String, String> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut bytes = Vec::new();
        stream
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("not 200: {head}"));
        }
        Ok(body.trim().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer from the proxy {addr} within 3 s")))
}

/// Whether `node` says etcd is `connected` (or not).
async fn etcd_connected(node: &AliasdNode, connected: bool) -> bool {
    status(node)
        .await
        .and_then(|s| s.etcd)
        .is_some_and(|e| e.connected == connected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_without_quorum() {
    let mut etcd = EtcdCluster::start().await;
    let stop = CancellationToken::new();
    let _stop = StopOnDrop(stop.clone());
    let net = etcd.net();
    let v1 = crate::support::spawn_backends(net, 50, 1, "web-v1", &stop).await;
    let v2 = crate::support::spawn_backends(net, 51, 1, "web-v2", &stop).await;
    let specs: Vec<NodeSpec<'_>> = specs(&etcd)
        .into_iter()
        .map(|s| NodeSpec {
            v1: v1[0].addr.to_string(),
            v2: v2[0].addr.to_string(),
            proxy: true,
            ..s
        })
        .collect();
    let nodes = Nodes::start(&etcd, &specs, &[]);
    let logs = || nodes.logs();
    let (ip1, ip2) = (v1[0].addr.ip().to_string(), v2[0].addr.ip().to_string());
    let leader = wait_leader(&nodes.all(), Duration::from_secs(10), logs).await;
    let (_, followers) = split(&nodes, &leader);
    link(followers[0], &["web-v2"]).await.expect("a relink");
    let serial = wait_converged(&nodes.all(), &[&ip2], Duration::from_secs(10), logs).await;
    for node in &nodes.nodes {
        assert_eq!(
            proxy_get(node.ready().proxies[0]).await.as_deref(),
            Ok("web-v2")
        );
    }

    etcd.stop_member(1);
    etcd.stop_member(2);
    let lost = Instant::now();
    // The member left has no quorum once it noticed (until then, as raft's leader, it still
    // renews leases): from then on no node can reach etcd.
    let alone = etcd.endpoint(0);
    poll(
        Duration::from_secs(10),
        "the member left saying it has no leader",
        logs,
        || async {
            let options = etcd_client::ConnectOptions::new()
                .with_timeout(Duration::from_secs(1))
                .with_require_leader(true);
            match etcd_client::Client::connect([alone.as_str()], Some(options)).await {
                Ok(mut c) => c.get("/", None).await.is_err(),
                Err(_) => true,
            }
        },
    )
    .await;
    // Every node sees etcd gone; meanwhile and after, each answers DNS and proxies with its
    // last state.
    for node in &nodes.nodes {
        poll(
            Duration::from_secs(10),
            "etcd shown disconnected",
            logs,
            || etcd_connected(node, false),
        )
        .await;
    }
    let noticed = lost.elapsed();
    for (node, name) in nodes.nodes.iter().zip(NAMES) {
        assert_eq!(
            answers(node).await,
            Some(Answers {
                web: vec![ip2.clone()],
                serial
            }),
            "node {name} without etcd"
        );
        assert_eq!(
            proxy_get(node.ready().proxies[0]).await.as_deref(),
            Ok("web-v2"),
            "node {name}'s proxy without etcd"
        );
    }
    // A change is refused, through any node, with a 503 that says why.
    for (node, name) in nodes.nodes.iter().zip(NAMES) {
        let started = Instant::now();
        let error = link(node, &["web-v1"])
            .await
            .expect_err("a change without an etcd quorum");
        let took = started.elapsed();
        assert_eq!(
            error.status().map(|s| s.as_u16()),
            Some(503),
            "node {name}: {error}"
        );
        let text = error.to_string();
        assert!(
            text.contains("etcd has no quorum or cannot be reached"),
            "node {name}'s refusal does not say etcd has no quorum: {text}"
        );
        assert!(
            took < Duration::from_secs(10),
            "node {name} took {took:?} to refuse"
        );
        eprintln!("etcd_without_quorum: node {name} refused in {took:?}: {text}");
    }
    for node in &nodes.nodes {
        assert_eq!(answers(node).await.map(|a| a.web), Some(vec![ip2.clone()]));
    }

    etcd.start_member(1);
    etcd.start_member(2);
    etcd.wait_healthy().await;
    let back = Instant::now();
    let deadline = back + Duration::from_secs(20);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match link(&nodes.nodes[attempts % 3], &["web-v1"]).await {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no change accepted within 20 s after etcd's quorum returned: {e}\n{}",
                logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let accepted = back.elapsed();
    let after = wait_converged(&nodes.all(), &[&ip1], Duration::from_secs(10), logs).await;
    assert!(after > serial, "serial {after} after {serial}");
    for node in &nodes.nodes {
        assert_eq!(
            proxy_get(node.ready().proxies[0]).await.as_deref(),
            Ok("web-v1")
        );
        poll(
            Duration::from_secs(10),
            "etcd shown connected again",
            logs,
            || etcd_connected(node, true),
        )
        .await;
    }
    eprintln!(
        "etcd_without_quorum: disconnection shown after {noticed:?}; a change accepted {accepted:?} \
         after the quorum returned ({attempts} attempts)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_cut_from_etcd() {
    let etcd = EtcdCluster::start().await;
    let mut relays: Vec<Relay> = (0..3).map(|i| etcd.relay(20 + i as u8, i)).collect();
    let mut specs = specs(&etcd);
    specs[2].etcd = relays.iter().map(Relay::url).collect();
    // The cut node starts last, so one of the others leads.
    let nodes = Nodes::start(&etcd, &specs, &[]);
    let logs = || nodes.logs();
    let leader = wait_leader(&nodes.all(), Duration::from_secs(10), logs).await;
    assert_ne!(leader, "c", "the node to cut leads:\n{}", logs());
    let cut = &nodes.nodes[2];
    let rest = [&nodes.nodes[0], &nodes.nodes[1]];
    link(cut, &["web-v2"])
        .await
        .expect("a relink through the node to cut");
    let serial = wait_converged(&nodes.all(), &[V2], Duration::from_secs(10), logs).await;

    for relay in &mut relays {
        relay.stop();
    }
    let cut_at = Instant::now();
    // Its lease runs out: the others no longer count it.
    poll(
        LEASE_TTL + Duration::from_secs(3),
        "the cut node's lease expired for the others",
        logs,
        || async {
            status(rest[0])
                .await
                .is_some_and(|s| s.nodes.len() == 2 && s.nodes.iter().all(|n| n.name != "c"))
        },
    )
    .await;
    let expired = cut_at.elapsed();
    // Changes go on through the others.
    link(rest[0], &["web-v1"])
        .await
        .expect("a relink through a");
    link(rest[1], &["web-v1", "web-v2"])
        .await
        .expect("a relink through b");
    let latest = wait_converged(&rest, &[V1, V2], Duration::from_secs(10), logs).await;
    assert!(latest > serial, "serial {latest} after {serial}");
    let compacted = etcd.compact().await;
    poll(
        Duration::from_secs(10),
        "etcd shown disconnected on the cut node",
        logs,
        || etcd_connected(cut, false),
    )
    .await;
    // The cut node serves its last state all along.
    assert_eq!(
        answers(cut).await,
        Some(Answers {
            web: vec![V2.to_owned()],
            serial
        }),
        "the cut node's answers"
    );
    let cut_for = cut_at.elapsed();

    for relay in &mut relays {
        relay.start();
    }
    let reconnected = Instant::now();
    wait_converged(&nodes.all(), &[V1, V2], Duration::from_secs(15), logs).await;
    let caught_up = reconnected.elapsed();
    poll(
        Duration::from_secs(10),
        "etcd shown connected again on the cut node",
        logs,
        || etcd_connected(cut, true),
    )
    .await;
    // It is a live node again, and takes changes.
    wait_leader(&nodes.all(), Duration::from_secs(10), logs).await;
    link(cut, &["web-v2"])
        .await
        .expect("a relink through the node that was cut");
    wait_converged(&nodes.all(), &[V2], Duration::from_secs(10), logs).await;
    eprintln!(
        "node_cut_from_etcd: its lease gone for the others {expired:?} after the cut; cut \
         {cut_for:?}, etcd compacted at revision {compacted}; caught up \
         {caught_up:?} after the relays returned"
    );
}

/// An `aliasd run` that is not expected to become ready: killed and reaped when dropped.
struct Unready {
    child: Child,
    ready: PathBuf,
    log: PathBuf,
}

impl Unready {
    fn start(config: &Path, env: &[(&str, &str)]) -> Self {
        let dir = config.parent().expect("a directory");
        let log = dir.join("unready.log");
        let ready = dir.join("unready-ready.json");
        let child = Command::new(env!("CARGO_BIN_EXE_aliasd"))
            .args(["run", "--config"])
            .arg(config)
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn aliasd");
        Self { child, ready, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Unready {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_auth() {
    let mut etcd = EtcdCluster::start_tls().await;
    etcd.enable_auth("aliasd", "s3cret").await;
    let tls = ClusterExtra(format!(
        "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nusername = \"aliasd\"\n\
         password_env = \"ALIASD_ETCD_PASSWORD\"\n",
        etcd.ca_file().display(),
        etcd.client_cert().display(),
        etcd.client_key().display()
    ));
    let mut specs = specs(&etcd);
    for spec in &mut specs {
        assert!(spec.etcd.iter().all(|e| e.starts_with("https://")));
        spec.cluster = tls.clone();
    }
    let nodes = Nodes::start(&etcd, &specs, &[("ALIASD_ETCD_PASSWORD", "s3cret")]);
    let logs = || nodes.logs();
    let leader = wait_leader(&nodes.all(), Duration::from_secs(10), logs).await;
    let (_, followers) = split(&nodes, &leader);
    link(followers[1], &["web-v2"])
        .await
        .expect("a relink through a follower");
    wait_converged(&nodes.all(), &[V2], Duration::from_secs(10), logs).await;
    let mut kv = etcd.client().await;
    let (_, keys) = keys_under(&mut kv, "state/alias/").await;
    assert!(
        keys.iter()
            .any(|(k, _)| k.ends_with("/state/alias/web.internal.")),
        "no alias in etcd: {keys:?}"
    );

    // A fourth node with a wrong password: it says why and keeps trying, and serves nothing.
    let dir = config_dir();
    let spec = NodeSpec {
        name: "d",
        host: 13,
        etcd: etcd.endpoints(),
        cluster: tls,
        v1: format!("{V1}:80"),
        v2: format!("{V2}:80"),
        proxy: false,
    };
    let wrong = Unready::start(
        &write_config(dir.path(), &etcd, &spec),
        &[("ALIASD_ETCD_PASSWORD", "wrong")],
    );
    let started = Instant::now();
    let unready = &wrong;
    poll(
        Duration::from_secs(10),
        "the wrong password's refusal logged twice (it retries)",
        || unready.log(),
        || async move {
            unready
                .log()
                .lines()
                .filter(|l| l.contains("authentication failed"))
                .count()
                >= 2
        },
    )
    .await;
    let log = wrong.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("authentication failed"))
        .expect("a line");
    assert!(
        refusal.contains("WARN") || refusal.contains("ERROR"),
        "not a warning: {refusal}"
    );
    assert!(
        refusal.contains("username") && refusal.contains("password_env"),
        "the refusal does not say which settings to check: {refusal}"
    );
    assert!(
        !wrong.ready.exists(),
        "a node that cannot log in to etcd became ready:\n{log}"
    );
    let mut wrong = wrong;
    assert!(
        wrong.child.try_wait().expect("wait").is_none(),
        "it gave up instead of retrying:\n{log}"
    );
    let seen = status(&nodes.nodes[0]).await.expect("a's status");
    assert!(
        seen.nodes.iter().all(|n| n.name != "d"),
        "a node that cannot log in is listed: {seen:?}"
    );
    eprintln!(
        "tls_and_auth: leader {leader}; the wrong password refused twice within {:?}: {refusal}",
        started.elapsed()
    );
}
