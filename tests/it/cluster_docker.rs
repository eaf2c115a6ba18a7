//! Docker on every host of a cluster: two `aliasd run` nodes over a real 3-member etcd share the
//! machine's one Docker daemon and play two hosts, each discovering only the containers
//! labelled for it (`[docker] labels = ["<lab>-host=a"]`, `...host=b`).
//!
//! - Each node writes its own containers to etcd (`hosts/<node>/docker`), and both nodes' DNS
//!   answers the endpoints of both hosts.
//! - kill -9 of node b: its containers leave the answers once its lease ended (within the
//!   lease's TTL and a few seconds), both in one change.
//! - b restarted lists its Docker again; a hands the leadership to b (SIGTERM) and comes back;
//!   a promotion with `--stop-old` whose old version runs on both hosts stops every old
//!   container, each through the node whose Docker runs it (the leader b asks a for its own).
//!
//! The lab (`lab.rs`) labels and removes every container, the network and the image, also
//! when the test fails; the nodes and etcd are killed when dropped.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use hickory_proto::rr::RecordType;

use crate::etcd::{AliasdNode, EtcdCluster};
use crate::lab::{Container, Lab, eventually};
use crate::support::{Fixture, TOKEN, Transport, addresses, query, run_bin_within};

const ALIASCTL: &str = env!("CARGO_BIN_EXE_aliasctl");
/// Every node's lease: short, so a dead host leaves the answers quickly.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// How long the whole scenario may take.
const LIMIT: Duration = Duration::from_secs(90);
/// How long any one wait may take.
const WAIT: Duration = Duration::from_secs(20);

/// The label that says which "host" a container runs on: the lab's own, and not under its
/// prefix (aliasd reads every label there and would skip a container with one it does not know).
fn host_key(lab: &Lab) -> String {
    format!("{}-host", lab.name)
}

/// A backend of `service` on "host" `host`: labelled for discovery and with the host label.
fn backend(lab: &Lab, name: &str, service: &str, host: &str) -> Container {
    let service_label = format!("{}service={service}", lab.prefix);
    let port_label = format!("{}port=8080", lab.prefix);
    let host_label = format!("{}={host}", host_key(lab));
    lab.run(
        name,
        &[
            "--label",
            &service_label,
            "--label",
            &port_label,
            "--label",
            &host_label,
            "--stop-timeout",
            "10",
        ],
        &[
            "backend",
            "--listen",
            "0.0.0.0:8080",
            "--name",
            service,
            "--stop-delay",
            "0s",
        ],
    )
}

/// The config of the node that plays host `host`.
fn node_fixture(lab: &Lab, etcd: &EtcdCluster, host: &str) -> Fixture {
    let endpoints = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    // The first lines go into the lab's `[docker]` table.
    let extra = format!(
        "labels = [\"{}={host}\"]\n\n[cluster]\netcd = [{endpoints}]\nnode = \"{host}\"\n\
         advertise = \"127.0.0.1\"\nlease_ttl = \"{}s\"",
        host_key(lab),
        LEASE_TTL.as_secs()
    );
    lab.fixture(&[("web", &["web-v1"])], None, false, &extra)
}

fn ips(containers: &[&Container]) -> Vec<String> {
    let mut out: Vec<String> = containers.iter().map(|c| c.ip.to_string()).collect();
    out.sort();
    out
}

/// The addresses `web.internal.` resolves to at `node`, sorted.
async fn web(node: &AliasdNode) -> Vec<String> {
    addresses(&query(node.dns(), "web.internal.", RecordType::A, Transport::Udp).await)
}

/// Waits until `web.internal.` resolves to exactly `want` at every node of `nodes`.
async fn answers(nodes: &[&AliasdNode], want: &[String], what: &str) {
    eventually(WAIT, what, async || {
        for node in nodes {
            if web(node).await != want {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// Waits until `service` has `count` endpoints, every one healthy, as `node` sees it.
async fn healthy(node: &AliasdNode, service: &str, count: usize) {
    let what = format!("{count} healthy endpoints of {service}");
    eventually(WAIT, &what, async || {
        let s = node.client().service(service).await.ok()?;
        (s.endpoints.len() == count
            && s.endpoints
                .iter()
                .all(|e| e.health == aliasd::api::dto::Health::Healthy))
        .then_some(())
    })
    .await;
}

/// The ids of the containers `hosts/<node>/docker` lists in etcd (`None` without the key).
async fn host_view(etcd: &EtcdCluster, node: &str) -> Option<BTreeSet<String>> {
    let mut client = etcd.client().await;
    let got = client
        .get(format!("/aliasd/hosts/{node}/docker"), None)
        .await
        .expect("read the host's view");
    let kv = got.kvs().first()?;
    let view: serde_json::Value = serde_json::from_slice(kv.value()).expect("a host view is JSON");
    Some(
        view["services"]
            .as_object()
            .into_iter()
            .flat_map(|s| s.values())
            .flat_map(|endpoints| endpoints.as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["container"]["id"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// Everything under `hosts/` in etcd, for a failure message.
async fn raw_hosts(etcd: &EtcdCluster) -> String {
    let mut client = etcd.client().await;
    let got = client
        .get("/aliasd/hosts/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("list hosts/");
    got.kvs()
        .iter()
        .map(|kv| {
            format!(
                "{} = {}",
                String::from_utf8_lossy(kv.key()),
                String::from_utf8_lossy(kv.value())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ids(containers: &[&Container]) -> BTreeSet<String> {
    containers.iter().map(|c| c.id.clone()).collect()
}

/// The lines of `log` that say the node stopped retired containers.
fn stop_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("stopping retired containers, as the leader asked"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_discover_their_own_containers_a_dead_host_leaves_and_stop_old_stops_on_each() {
    // Past the limit the scenario is dropped, and with it every node, etcd and container.
    tokio::time::timeout(LIMIT, two_hosts())
        .await
        .unwrap_or_else(|_| panic!("the scenario did not end within {LIMIT:?}"));
}

async fn two_hosts() {
    let started = Instant::now();
    let etcd = EtcdCluster::start().await;
    let lab = Lab::new();
    let v1a = backend(&lab, "web-v1-a", "web-v1", "a");
    let v1b1 = backend(&lab, "web-v1-b1", "web-v1", "b");
    let v1b2 = backend(&lab, "web-v1-b2", "web-v1", "b");
    let fixture_a = node_fixture(&lab, &etcd, "a");
    let fixture_b = node_fixture(&lab, &etcd, "b");

    // a first, and leading before b starts: the leader is not the node killed below.
    let mut a = tokio::task::block_in_place(|| AliasdNode::start(&fixture_a.config(), &[]));
    eventually(WAIT, "node a leading", async || {
        let status = a.client().cluster().await.ok()?;
        (status.leader.as_deref() == Some("a")).then_some(())
    })
    .await;
    let mut b = tokio::task::block_in_place(|| AliasdNode::start(&fixture_b.config(), &[]));
    let logs = |a: &AliasdNode, b: &AliasdNode| format!("--- a:\n{}\n--- b:\n{}", a.log(), b.log());

    // Each node discovers its own host's containers, and only those.
    let want = (Some(ids(&[&v1a])), Some(ids(&[&v1b1, &v1b2])));
    let deadline = Instant::now() + WAIT;
    loop {
        let got = (host_view(&etcd, "a").await, host_view(&etcd, "b").await);
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hosts' views in etcd are {got:?}, not {want:?}: {}\n{}",
            raw_hosts(&etcd).await,
            logs(&a, &b)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every endpoint healthy first: until one is, an alias answers all of them anyway.
    healthy(&a, "web-v1", 3).await;
    let all = ips(&[&v1a, &v1b1, &v1b2]);
    answers(
        &[&a, &b],
        &all,
        "both hosts' endpoints answered by both nodes",
    )
    .await;

    // kill -9 of b: its two containers leave a's answers together once its lease ended.
    b.kill9();
    let killed = Instant::now();
    let only_a = ips(&[&v1a]);
    let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
    let limit = LEASE_TTL + Duration::from_secs(4);
    loop {
        let got = web(&a).await;
        seen.insert(got.clone());
        if got == only_a {
            break;
        }
        assert!(
            killed.elapsed() < limit,
            "b's containers still answered {:?} after its kill (lease {LEASE_TTL:?}): {got:?}\n{}",
            killed.elapsed(),
            logs(&a, &b)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone_after = killed.elapsed();
    println!("b's containers left the answers {gone_after:?} after its kill -9");
    assert_eq!(
        seen,
        BTreeSet::from([all.clone(), only_a.clone()]),
        "the answers went through other sets than before and after"
    );
    assert_eq!(
        host_view(&etcd, "b").await,
        None,
        "b's containers left the answers ({seen:?}), but its view is still in etcd: {}\n{}",
        raw_hosts(&etcd).await,
        logs(&a, &b)
    );

    // b back: it lists its Docker again and its containers return.
    tokio::task::block_in_place(|| b.restart());
    healthy(&a, "web-v1", 3).await;
    answers(&[&a, &b], &all, "b's containers back after its restart").await;

    // a hands the leadership over (SIGTERM) and comes back: b leads now, elected long after
    // its Docker discovery connected.
    let status = tokio::task::block_in_place(|| a.terminate());
    assert!(status.success(), "{status}\n{}", logs(&a, &b));
    eventually(WAIT, "node b leading", async || {
        let status = b.client().cluster().await.ok()?;
        (status.leader.as_deref() == Some("b")).then_some(())
    })
    .await;
    tokio::task::block_in_place(|| a.restart());
    healthy(&b, "web-v1", 3).await;
    answers(&[&a, &b], &all, "a's containers back after its restart").await;

    // The new version on both hosts, then a promotion that stops the old one.
    let v2a = backend(&lab, "web-v2-a", "web-v2", "a");
    let v2b = backend(&lab, "web-v2-b", "web-v2", "b");
    healthy(&b, "web-v2", 2).await;
    let server = b.server_url();
    let out = tokio::task::spawn_blocking(move || {
        run_bin_within(
            ALIASCTL,
            &[
                "promote",
                "web",
                "--to",
                "web-v2",
                "--wait",
                "--stop-old",
                "--timeout",
                "40s",
            ],
            &[
                ("ALIASCTL_SERVER", server.as_str()),
                ("ALIASCTL_TOKEN", TOKEN),
            ],
            Duration::from_secs(45),
        )
    })
    .await
    .expect("aliasctl");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{printed}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs(&a, &b)
    );
    let history = b.client().history("web").await.expect("web's history");
    let stopped = history
        .iter()
        .find(|e| e.change == aliasd::api::dto::Change::Stopped)
        .unwrap_or_else(|| panic!("no stopped entry: {history:?}\n{}", logs(&a, &b)));
    let reason = stopped.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("on node a: stopped") && reason.contains("on node b: stopped"),
        "{reason}"
    );
    for c in [&v1a, &v1b1, &v1b2] {
        assert!(reason.contains(&c.name), "{} not in: {reason}", c.name);
        assert!(!c.running(), "{} still runs", c.name);
    }
    for c in [&v2a, &v2b] {
        assert!(c.running(), "{} was stopped", c.name);
    }
    // Each container was stopped by the node whose Docker runs it.
    let (on_a, on_b) = (
        stop_lines(&a.log()).join("\n"),
        stop_lines(&b.log()).join("\n"),
    );
    assert!(
        on_a.contains(&v1a.name) && !on_a.contains(&v1b1.name) && !on_a.contains(&v1b2.name),
        "node a's stops: {on_a}"
    );
    assert!(
        on_b.contains(&v1b1.name) && on_b.contains(&v1b2.name) && !on_b.contains(&v1a.name),
        "node b's stops: {on_b}"
    );
    // The requests and answers are gone from etcd.
    let mut client = etcd.client().await;
    let left = client
        .get("/aliasd/hosts/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("list hosts/");
    let keys: Vec<String> = left
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok().map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        vec!["/aliasd/hosts/a/docker", "/aliasd/hosts/b/docker"],
        "stop requests or answers left in etcd"
    );
    answers(
        &[&a, &b],
        &ips(&[&v2a, &v2b]),
        "web-v2 answered by both nodes",
    )
    .await;
    println!("the whole test took {:?}", started.elapsed());
}
