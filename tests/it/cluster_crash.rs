//! kill -9 of random nodes of a 3-node cluster at random moments, while promotions, aborts,
//! rollbacks and relinks are sent through random live nodes (a follower forwards them to the
//! leader), over a real 3-member etcd.
//!
//! Each round starts operators on the live nodes, kills a node (the leader or a follower, by
//! the coin) at a random moment, restarts it after a random short delay, and stops the
//! operators. At the end, with every node up and one leader: every change the cluster
//! acknowledged is in the alias's history at the revision it was answered with, as every
//! node's API shows it and as etcd itself holds it (the `history/` keys, read directly); the
//! history's revisions have no gap; and the three nodes answer DNS alike, SOA serial included.
//!
//! The moments are random; the seed is printed, and `ALIASD_CRASH_SEED=<seed>` runs the same
//! schedule again. The number of rounds, kills and restarts is fixed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aliasd::api::dto::RollbackRequest;
use aliasd::api::dto::{Change, HistoryDto, OneOrMany, OpOutcome, Phase, PromoteRequest};
use aliasd::client::{Client, Promotion};
use aliasd::controller::history::{HistoryEntry, WireEntry};
use etcd_client::GetOptions;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::etcd::{AliasdNode, EtcdCluster};
use crate::support::{
    ConfigText, Fixture, StopOnDrop, TOKEN, Transport, addresses, exchange_raw, query_message,
    soa_serial, spawn_backends,
};

/// Rounds, each with one kill -9 and one restart.
const ROUNDS: usize = 6;
/// Nodes of the cluster.
const NODES: usize = 3;
/// Operators sending changes at once, each through a random live node per request.
const OPERATORS: usize = 2;
/// Every node's lease: short, so a failover takes a couple of seconds.
const LEASE_TTL: &str = "2s";
/// How long any one wait of the final checks may take.
const WAIT: Duration = Duration::from_secs(30);
/// How long one API call may take: a forwarded change waits for a leader up to the lease's TTL
/// and a second, and is answered once etcd committed it.
const CALL_LIMIT: Duration = Duration::from_secs(15);
/// The alias the operators change, as its history names it.
const ALIAS: &str = "web.internal";

/// A small xorshift generator: enough for a schedule, and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Promote,
    Rollback,
    Abort,
    Link,
}

/// A change the cluster acknowledged: the round and node it went through, the revision the
/// answer named (the alias may have moved on by itself before answering, a promotion from
/// warming to mixed say), the operation it started or ended, and for a link its targets.
#[derive(Debug, Clone)]
struct Ack {
    round: usize,
    node: usize,
    what: What,
    revision: u64,
    op: Option<u64>,
    targets: Vec<String>,
}

/// Each node's API base URL while it is up; `None` from the moment it is to be killed until
/// it is ready again.
type Urls = Arc<Mutex<Vec<Option<String>>>>;

fn client_of(url: &str) -> Client {
    Client::new(url, Some(TOKEN.to_owned())).expect("client")
}

/// A random node that is up now, with its URL.
fn pick(urls: &Urls, rng: &mut Rng) -> Option<(usize, String)> {
    let up: Vec<(usize, String)> = urls
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .filter_map(|(i, u)| Some((i, u.clone()?)))
        .collect();
    if up.is_empty() {
        return None;
    }
    Some(up[rng.below(up.len() as u64) as usize].clone())
}

/// The services to link `web` to next: never the ones it has, so a link is a change.
fn other_targets(current: &[String], rng: &mut Rng) -> Vec<String> {
    let choices: [&[&str]; 3] = [&["web-v1"], &["web-v2"], &["web-v1", "web-v2"]];
    let options: Vec<Vec<String>> = choices
        .iter()
        .map(|c| c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        .filter(|c| c != current)
        .collect();
    options[rng.below(options.len() as u64) as usize].clone()
}

/// Operations, one after another, each through a random live node and chosen by the alias's
/// phase: promotions to the other version, rollbacks and relinks while stable, aborts while
/// warming or mixed. Every 2xx answer that changed something is an acknowledged change.
async fn operate(urls: Urls, round: usize, seed: u64, acks: Arc<Mutex<Vec<Ack>>>) {
    let mut rng = Rng(seed | 1);
    // Bounded: the round's end aborts it long before.
    for _ in 0..1_000 {
        let pause = Duration::from_millis(rng.below(150));
        let Some((node, url)) = pick(&urls, &mut rng) else {
            tokio::time::sleep(pause).await;
            continue;
        };
        let client = client_of(&url);
        let Ok(Ok(alias)) = tokio::time::timeout(CALL_LIMIT, client.alias("web")).await else {
            tokio::time::sleep(pause).await;
            continue;
        };
        let roll = rng.below(10);
        let ack = |what, revision, op, targets| Ack {
            round,
            node,
            what,
            revision,
            op,
            targets,
        };
        let acked = match (alias.phase, roll) {
            (Phase::Stable, 0..=4) => {
                let to = if alias.answering == ["web-v1"] {
                    "web-v2"
                } else {
                    "web-v1"
                };
                let request = PromoteRequest {
                    to: OneOrMany::One(to.to_owned()),
                    observe: Some(format!("{}ms", rng.below(400))),
                    ..PromoteRequest::default()
                };
                match tokio::time::timeout(CALL_LIMIT, client.promote("web", &request, false)).await
                {
                    Ok(Ok(Promotion::Operation(reply))) if reply.started => Some(ack(
                        What::Promote,
                        reply.alias.revision,
                        reply.alias.operation.as_ref().map(|o| o.id),
                        Vec::new(),
                    )),
                    _ => None,
                }
            }
            (Phase::Stable, 5..=6) => {
                let request = RollbackRequest {
                    observe: Some("100ms".into()),
                    ..RollbackRequest::default()
                };
                match tokio::time::timeout(CALL_LIMIT, client.rollback("web", &request)).await {
                    Ok(Ok(reply)) if reply.started => Some(ack(
                        What::Rollback,
                        reply.alias.revision,
                        reply.alias.operation.as_ref().map(|o| o.id),
                        Vec::new(),
                    )),
                    _ => None,
                }
            }
            (Phase::Stable, _) => {
                let targets = other_targets(&alias.targets, &mut rng);
                match tokio::time::timeout(CALL_LIMIT, client.link("web", &targets)).await {
                    Ok(Ok(reply)) => Some(ack(What::Link, reply.revision, None, targets)),
                    _ => None,
                }
            }
            (Phase::Warming | Phase::Mixed, 0..=4) => {
                let reason = Some(format!("crash round {round}"));
                match tokio::time::timeout(CALL_LIMIT, client.abort("web", reason)).await {
                    Ok(Ok(reply)) => {
                        let ended = reply.alias.last_operation.as_ref();
                        let op = ended
                            .filter(|l| l.outcome == OpOutcome::Aborted)
                            .map(|l| l.id);
                        Some(ack(What::Abort, reply.alias.revision, op, Vec::new()))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(a) = acked {
            acks.lock().unwrap().push(a);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Checks `history` (the alias's entries, oldest first, from `source`) against every
/// acknowledged change: no gap in its revisions, each acknowledged revision present, and the
/// entry that started or ended each acknowledged operation at or before it.
fn check_history(source: &str, history: &[HistoryDto], acks: &[Ack]) {
    assert!(
        !history.is_empty(),
        "{source}: the history of {ALIAS} is empty"
    );
    for pair in history.windows(2) {
        assert_eq!(
            pair[1].revision,
            pair[0].revision + 1,
            "{source}: the history skips from revision {} to {}",
            pair[0].revision,
            pair[1].revision
        );
    }
    for ack in acks {
        let at = history.iter().find(|e| e.revision == ack.revision);
        let Some(at) = at else {
            panic!(
                "{source}: the {:?} acknowledged through node n{} in round {} at revision {} is \
                 lost; the history has revisions {}..={}",
                ack.what,
                ack.node,
                ack.round,
                ack.revision,
                history[0].revision,
                history.last().unwrap().revision
            );
        };
        let wanted = match ack.what {
            What::Promote | What::Rollback => Some(Change::Started),
            What::Abort => Some(Change::Aborted),
            What::Link => None,
        };
        if let (Some(change), Some(op)) = (wanted, ack.op) {
            assert!(
                history
                    .iter()
                    .any(|e| e.revision <= ack.revision && e.op == Some(op) && e.change == change),
                "{source}: no `{change}` entry of operation {op} at or before revision {} ({ack:?})",
                ack.revision
            );
        }
        if ack.what == What::Link {
            assert_eq!(
                at.targets, ack.targets,
                "{source}: the link acknowledged at revision {} ({ack:?}) is not what the \
                 history holds there: {at:?}",
                ack.revision
            );
        }
    }
}

/// The alias's history as etcd holds it: every `history/` key under the prefix, decoded.
async fn etcd_history(etcd: &EtcdCluster) -> Vec<HistoryDto> {
    let mut client = etcd.client().await;
    let got = client
        .get("/aliasd/history/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("list the history keys");
    let mut entries: Vec<HistoryEntry> = got
        .kvs()
        .iter()
        .map(|kv| {
            let wire: WireEntry = serde_json::from_slice(kv.value()).unwrap_or_else(|e| {
                panic!(
                    "etcd key {} is no history entry: {e}",
                    String::from_utf8_lossy(kv.key())
                )
            });
            HistoryEntry::from(wire)
        })
        .collect();
    entries.sort_by_key(|e| e.seq);
    entries
        .iter()
        .map(HistoryDto::from_entry)
        .filter(|e| e.alias == ALIAS)
        .collect()
}

/// One UDP query to `server`; `None` if no answer came.
async fn ask(server: std::net::SocketAddr, name: &str, rtype: RecordType) -> Option<Message> {
    let query = query_message(name, rtype, Some(1232));
    let raw = exchange_raw(server, &query.to_vec().ok()?, Transport::Udp).await?;
    Message::from_vec(&raw).ok()
}

/// What a node answers: `web`'s addresses and the zone's SOA serial.
async fn answers(node: &AliasdNode) -> Option<(Vec<String>, u32)> {
    let a = ask(node.dns(), "web.internal.", RecordType::A).await?;
    let soa = ask(node.dns(), "internal.", RecordType::SOA).await?;
    Some((addresses(&a), soa_serial(&soa)))
}

/// The last lines of every node's log, for a failure message.
fn logs(nodes: &[AliasdNode]) -> String {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let log = n.log();
            let lines: Vec<&str> = log.lines().collect();
            format!(
                "--- node n{i}, last lines of its log:\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The leader's index, as node `asked` names it.
async fn leader_of(url: &str) -> Option<usize> {
    let status = tokio::time::timeout(Duration::from_secs(5), client_of(url).cluster())
        .await
        .ok()?
        .ok()?;
    status.leader?.strip_prefix('n')?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_random_nodes_during_operations_loses_no_acknowledged_change_on_any_node() {
    let seed = std::env::var("ALIASD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("cluster crash schedule seed: {seed} (ALIASD_CRASH_SEED={seed} repeats it)");
    let mut rng = Rng(seed | 1);
    let began = Instant::now();

    // Declared first, dropped last: the nodes go before etcd, etcd before the directories.
    let etcd = EtcdCluster::start().await;
    let stop_backends = CancellationToken::new();
    let v1 = spawn_backends(etcd.net(), 21, 1, "web-v1", &stop_backends).await;
    let v2 = spawn_backends(etcd.net(), 22, 1, "web-v2", &stop_backends).await;
    let _backends = StopOnDrop(stop_backends);
    let endpoints = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    // The API listens on 127.0.0.1 (the fixtures' head), so that is what each node advertises.
    let dirs: Vec<Fixture> = (0..NODES)
        .map(|i| {
            ConfigText::new()
                .section(
                    "[promotion]\nobserve = \"300ms\"\nwarm_timeout = \"5s\"\ndrain_grace = \"100ms\"",
                )
                .service("web-v1", [v1[0].addr])
                .service("web-v2", [v2[0].addr])
                .alias("web", ["web-v1"])
                .section(&format!(
                    "[cluster]\netcd = [{endpoints}]\nnode = \"n{i}\"\nadvertise = \"127.0.0.1\"\n\
                     lease_ttl = \"{LEASE_TTL}\""
                ))
                .fixture()
        })
        .collect();
    let mut nodes: Vec<AliasdNode> = tokio::task::block_in_place(|| {
        dirs.iter()
            .map(|d| AliasdNode::start(&d.config(), &[]))
            .collect()
    });
    let urls: Urls = Arc::new(Mutex::new(
        nodes.iter().map(|n| Some(n.server_url())).collect(),
    ));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let mut killed = Vec::new();

    for round in 0..ROUNDS {
        let operators: Vec<JoinHandle<()>> = (0..OPERATORS)
            .map(|_| tokio::spawn(operate(urls.clone(), round, rng.next(), acks.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(300 + rng.below(2_000))).await;

        // The leader by the coin, else any node.
        let leader = if rng.below(2) == 0 {
            let url = urls.lock().unwrap().iter().flatten().next().cloned();
            match url {
                Some(url) => leader_of(&url).await,
                None => None,
            }
        } else {
            None
        };
        let victim = leader.unwrap_or_else(|| rng.below(NODES as u64) as usize);
        urls.lock().unwrap()[victim] = None;
        nodes[victim].kill9();
        killed.push((victim, leader.is_some()));

        tokio::time::sleep(Duration::from_millis(rng.below(2_000))).await;
        tokio::task::block_in_place(|| nodes[victim].restart());
        urls.lock().unwrap()[victim] = Some(nodes[victim].server_url());
        tokio::time::sleep(Duration::from_millis(rng.below(1_000))).await;

        // An answer cut off here was never acknowledged, so it is not checked.
        for operator in operators {
            operator.abort();
            let _ = operator.await;
        }
    }
    let acks = acks.lock().unwrap().clone();
    eprintln!(
        "{ROUNDS} rounds in {:?}: killed {killed:?} (node, whether it led); {} acknowledged \
         changes: {} promotions, {} rollbacks, {} aborts, {} links",
        began.elapsed(),
        acks.len(),
        acks.iter().filter(|a| a.what == What::Promote).count(),
        acks.iter().filter(|a| a.what == What::Rollback).count(),
        acks.iter().filter(|a| a.what == What::Abort).count(),
        acks.iter().filter(|a| a.what == What::Link).count(),
    );
    assert!(
        acks.len() >= ROUNDS,
        "too few changes were acknowledged to mean much: {acks:?}\n{}",
        logs(&nodes)
    );

    // Every node up; one leader that all three name, and the alias stable again.
    let deadline = Instant::now() + WAIT;
    let leader = loop {
        let mut named = Vec::new();
        for node in &nodes {
            let status = tokio::time::timeout(Duration::from_secs(5), node.client().cluster())
                .await
                .ok()
                .and_then(Result::ok);
            named.push(status.map(|s| (s.leader, s.nodes.len())));
        }
        if let Some(Some((Some(leader), 3))) = named.first()
            && named.iter().all(|n| n == &named[0])
        {
            break leader.strip_prefix('n').unwrap().parse::<usize>().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the nodes do not agree on a leader of 3 nodes within {WAIT:?}: {named:?}\n{}",
            logs(&nodes)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deadline = Instant::now() + WAIT;
    let settled = loop {
        let views = {
            let mut views = Vec::new();
            for node in &nodes {
                views.push(node.client().alias("web").await.ok());
            }
            views
        };
        let stable = views
            .iter()
            .flatten()
            .filter(|v| v.phase == Phase::Stable)
            .count();
        let revisions: Vec<Option<u64>> = views
            .iter()
            .map(|v| v.as_ref().map(|v| v.revision))
            .collect();
        if stable == NODES && revisions.iter().all(|r| *r == revisions[0]) {
            break views[leader].clone().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the alias is not stable at one revision on every node within {WAIT:?}: {views:?}\n{}",
            logs(&nodes)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The history, through each node's API (a follower's is the leader's) and from etcd itself.
    for (i, node) in nodes.iter().enumerate() {
        let history = node.client().history("web").await.expect("history");
        check_history(&format!("node n{i}'s API"), &history, &acks);
        assert_eq!(
            history.last().map(|e| e.revision),
            Some(settled.revision),
            "node n{i}: the history does not end at the alias's revision"
        );
    }
    let stored = etcd_history(&etcd).await;
    check_history("etcd's history/ keys", &stored, &acks);
    let through_api = nodes[leader]
        .client()
        .history("web")
        .await
        .expect("history");
    assert_eq!(
        stored.iter().map(|e| e.revision).collect::<Vec<_>>(),
        through_api.iter().map(|e| e.revision).collect::<Vec<_>>(),
        "etcd and the leader's API hold different revisions"
    );
    for ack in &acks {
        assert!(
            settled.revision >= ack.revision,
            "{ack:?} is past {settled:?}"
        );
    }

    // DNS: the three nodes answer alike, with the same serial, and with what the alias says.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut seen = Vec::new();
        for node in &nodes {
            seen.push(answers(node).await);
        }
        let want = settled
            .endpoints
            .iter()
            .map(|e| {
                e.rsplit_once(':')
                    .map_or(e.as_str(), |(ip, _)| ip)
                    .to_owned()
            })
            .collect::<Vec<_>>();
        let mut want = want;
        want.sort();
        want.dedup();
        if seen
            .iter()
            .all(|s| s.is_some() && s == &seen[0] && s.as_ref().unwrap().0 == want)
        {
            eprintln!(
                "every node answers {want:?} with serial {}; history checked on 3 nodes and in \
                 etcd ({} entries of {ALIAS}), {} acknowledged changes kept, in {:?}",
                seen[0].as_ref().unwrap().1,
                stored.len(),
                acks.len(),
                began.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes do not answer alike within {WAIT:?} (want {want:?}): {seen:?}\n{}",
            logs(&nodes)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
