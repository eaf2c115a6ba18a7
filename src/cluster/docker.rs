//! `--stop-old` in a cluster: each retired container is stopped by the node whose Docker daemon
//! runs it, asked through etcd.
//!
//! The leader's writer sends its `DockerCommand::Stop` to [`route_stops`] instead of to the
//! local discovery. For each node whose `hosts/<node>/docker` view lists some of the
//! containers, the leader writes `hosts/<node>/stop/<alias>/<op>` (a [`StopRequest`] with that
//! node's containers) under the node's own lease, fenced by its leadership, so a request to a
//! node that dies goes with it. Every node runs [`serve_stops`]: it lists and watches its own
//! `hosts/<node>/stop/`, hands each request to its local discovery (the same `DockerCommand`
//! channel a single node uses), and, when discovery reports the stop, writes
//! `hosts/<node>/stopped/<alias>/<op>` (a [`StopReport`]) under its lease and deletes the
//! request in the same transaction. The leader waits until every node it asked has answered,
//! or has left the cluster (its `hosts/<node>/docker` key went, with its lease), deletes the
//! answers and gives its writer one `SourceUpdate::Stopped` whose report names each node's
//! part. A new leader asks again (its writer does not know what the last one asked), and
//! stopping a stopped container again is harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::controller::{DockerCommand, SourceUpdate};
use crate::model::AliasName;
use crate::registry::{ContainerRef, DockerEndpoint};

use super::etcd::{Key, Keys, describe};

/// How long to wait before asking etcd again after a failure.
const RETRY: Duration = Duration::from_millis(300);
/// How often a node tries to write its answer before it gives up on it (the leader then
/// counts the node as gone once its lease ends, or a new leader asks again).
const ANSWER_TRIES: usize = 3;

/// `hosts/<node>/stop/<alias>/<op>`: the containers a node is to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    /// The alias, as its key names it (`web.internal.`).
    pub alias: String,
    pub op: u64,
    pub containers: Vec<ContainerRef>,
}

/// `hosts/<node>/stopped/<alias>/<op>`: what the node's stop did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopReport {
    pub report: String,
}

/// What discovery reports of a stop it carried out: the alias, the operation and the report.
pub type Done = (AliasName, u64, String);

/// The part of a `hosts/<node>/docker` view the routing reads (the rest is ignored).
#[derive(Debug, Deserialize)]
struct Runs {
    services: BTreeMap<String, Vec<DockerEndpoint>>,
}

/// The leader's side, for one term: takes the writer's stop commands, asks the nodes that run
/// the containers, and sends the writer one `Stopped` per command once they answered.
pub async fn route_stops(
    client: Client,
    keys: Keys,
    fence: i64,
    mut commands: mpsc::Receiver<DockerCommand>,
    writer: mpsc::Sender<SourceUpdate>,
    term: CancellationToken,
) {
    let mut asks = JoinSet::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(DockerCommand::Stop { alias, op, containers, notes }) => {
                    let ask = Ask {
                        client: client.clone(),
                        keys: keys.clone(),
                        fence,
                        alias,
                        op,
                    };
                    let writer = writer.clone();
                    asks.spawn(async move {
                        if let Some(update) = ask.run(containers, notes).await {
                            let _ = writer.send(update).await;
                        }
                    });
                }
                None => break,
            },
            Some(_) = asks.join_next(), if !asks.is_empty() => {}
            () = term.cancelled() => break,
        }
    }
    asks.abort_all();
}

/// One stop command as the leader carries it out.
struct Ask {
    client: Client,
    keys: Keys,
    fence: i64,
    alias: AliasName,
    op: u64,
}

/// Who runs what, as `hosts/` says at one revision.
struct Hosts {
    revision: i64,
    /// Per node, the lease of its `docker` key and the ids of the containers it reports.
    runs: BTreeMap<String, (i64, BTreeSet<String>)>,
    /// Answers already there, per node.
    stopped: BTreeMap<String, String>,
}

impl Ask {
    fn alias_key(&self) -> String {
        self.alias.name().to_ascii()
    }

    /// Asks, waits and reports. `None` if this node stopped leading meanwhile (the next
    /// leader asks again).
    async fn run(self, containers: Vec<ContainerRef>, notes: Vec<String>) -> Option<SourceUpdate> {
        let hosts = self.hosts().await;
        // Each container goes to the first node (by name) that reports it.
        let mut asked: BTreeMap<String, (i64, Vec<ContainerRef>)> = BTreeMap::new();
        let mut nowhere = Vec::new();
        for c in containers {
            match hosts.runs.iter().find(|(_, (_, ids))| ids.contains(&c.id)) {
                Some((node, (lease, _))) => {
                    asked
                        .entry(node.clone())
                        .or_insert_with(|| (*lease, Vec::new()))
                        .1
                        .push(c);
                }
                None => nowhere.push(c),
            }
        }
        let mut gone: BTreeMap<String, Vec<ContainerRef>> = BTreeMap::new();
        let mut pending: BTreeMap<String, (i64, Vec<ContainerRef>)> = BTreeMap::new();
        for (node, (lease, containers)) in asked {
            match self.request(&node, lease, &containers).await? {
                true => {
                    info!(alias = %self.alias, op = self.op, node = %node, containers = %names(&containers), "asked the node to stop the retired containers its Docker runs");
                    pending.insert(node, (lease, containers));
                }
                false => {
                    gone.insert(node, containers);
                }
            }
        }
        let answers = self.wait(&mut pending, &mut gone).await;
        self.clean(answers.keys()).await;
        let report = compose(&answers, &gone, &nowhere, notes);
        Some(SourceUpdate::Stopped {
            alias: self.alias,
            op: self.op,
            report,
        })
    }

    /// Lists `hosts/` until etcd answers.
    async fn hosts(&self) -> Hosts {
        let mut client = self.client.clone();
        loop {
            match client
                .get(self.keys.hosts(), Some(GetOptions::new().with_prefix()))
                .await
            {
                Ok(got) => {
                    let mut hosts = Hosts {
                        revision: got.header().map_or(0, |h| h.revision()),
                        runs: BTreeMap::new(),
                        stopped: BTreeMap::new(),
                    };
                    for kv in got.kvs() {
                        self.take_in(&mut hosts, kv);
                    }
                    return hosts;
                }
                Err(e) => {
                    warn!(error = %describe(&e), "cannot read the hosts' containers to stop the retired ones; trying again");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    fn take_in(&self, hosts: &mut Hosts, kv: &KeyValue) {
        let Ok(raw) = kv.key_str() else { return };
        match self.keys.classify(raw) {
            Some(Key::Host(node)) => {
                let ids = serde_json::from_slice::<Runs>(kv.value())
                    .map(|r| {
                        r.services
                            .into_values()
                            .flatten()
                            .map(|e| e.container.id)
                            .collect()
                    })
                    .unwrap_or_default();
                hosts.runs.insert(node.to_owned(), (kv.lease(), ids));
            }
            Some(Key::Stopped { node, alias, op }) if self.is_mine(alias, op) => {
                hosts.stopped.insert(node.to_owned(), report_of(kv.value()));
            }
            _ => {}
        }
    }

    fn is_mine(&self, alias: &str, op: u64) -> bool {
        op == self.op && alias == self.alias_key()
    }

    /// Writes the request to `node` under its lease. `Some(false)` if the lease is gone (the
    /// node left), `None` if this node no longer leads.
    async fn request(&self, node: &str, lease: i64, containers: &[ContainerRef]) -> Option<bool> {
        let alias = self.alias_key();
        let value = serde_json::to_vec(&StopRequest {
            alias: alias.clone(),
            op: self.op,
            containers: containers.to_vec(),
        })
        .unwrap_or_default();
        let txn = || {
            Txn::new()
                .when(vec![Compare::create_revision(
                    self.keys.leader(),
                    CompareOp::Equal,
                    self.fence,
                )])
                .and_then(vec![
                    // An answer to an earlier ask of the same stop is not this one's.
                    TxnOp::delete(self.keys.host_stopped(node, &alias, self.op), None),
                    TxnOp::put(
                        self.keys.host_stop(node, &alias, self.op),
                        value.clone(),
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                ])
        };
        let mut client = self.client.clone();
        loop {
            match client.txn(txn()).await {
                Ok(r) if r.succeeded() => return Some(true),
                Ok(_) => return None,
                Err(e) if e.to_string().contains("lease not found") => return Some(false),
                Err(e) => {
                    warn!(node, error = %describe(&e), "cannot ask the node to stop its retired containers; trying again");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Waits until every node in `pending` answered (its answers are returned) or left (it
    /// moves to `gone`).
    async fn wait(
        &self,
        pending: &mut BTreeMap<String, (i64, Vec<ContainerRef>)>,
        gone: &mut BTreeMap<String, Vec<ContainerRef>>,
    ) -> BTreeMap<String, String> {
        let mut answers = BTreeMap::new();
        let mut client = self.client.clone();
        while !pending.is_empty() {
            // What is there now; then every change after it.
            let hosts = self.hosts().await;
            for (node, report) in hosts.stopped {
                if pending.remove(&node).is_some() {
                    answers.insert(node, report);
                }
            }
            let left: Vec<String> = pending
                .iter()
                .filter(|(node, (lease, _))| hosts.runs.get(*node).map(|r| r.0) != Some(*lease))
                .map(|(node, _)| node.clone())
                .collect();
            for node in left {
                if let Some((_, containers)) = pending.remove(&node) {
                    gone.insert(node, containers);
                }
            }
            if pending.is_empty() {
                break;
            }
            let watched = client
                .watch(
                    self.keys.hosts(),
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(hosts.revision + 1),
                    ),
                )
                .await;
            let Ok(mut stream) = watched else {
                tokio::time::sleep(RETRY).await;
                continue;
            };
            while !pending.is_empty() {
                let Ok(Some(resp)) = stream.message().await else {
                    break;
                };
                if resp.canceled() {
                    break;
                }
                for event in resp.events() {
                    let Some(kv) = event.kv() else { continue };
                    let Ok(raw) = kv.key_str() else { continue };
                    match (self.keys.classify(raw), event.event_type()) {
                        (Some(Key::Stopped { node, alias, op }), EventType::Put)
                            if self.is_mine(alias, op) && pending.contains_key(node) =>
                        {
                            pending.remove(node);
                            answers.insert(node.to_owned(), report_of(kv.value()));
                        }
                        (Some(Key::Host(node)), EventType::Delete) => {
                            if let Some((_, containers)) = pending.remove(node) {
                                gone.insert(node.to_owned(), containers);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        answers
    }

    /// Deletes the answers read (the rest go with their nodes' leases).
    async fn clean<'a>(&self, nodes: impl Iterator<Item = &'a String>) {
        let alias = self.alias_key();
        let ops: Vec<TxnOp> = nodes
            .map(|n| TxnOp::delete(self.keys.host_stopped(n, &alias, self.op), None))
            .collect();
        if ops.is_empty() {
            return;
        }
        let mut client = self.client.clone();
        if let Err(e) = client.txn(Txn::new().and_then(ops)).await {
            warn!(error = %describe(&e), "could not delete the nodes' stop reports; they go with the nodes' leases");
        }
    }
}

fn report_of(value: &[u8]) -> String {
    serde_json::from_slice::<StopReport>(value).map_or_else(
        |e| format!("its report could not be read ({e})"),
        |r| r.report,
    )
}

fn names(containers: &[ContainerRef]) -> String {
    containers
        .iter()
        .map(|c| format!("{} ({})", c.name, c.short_id()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One report of a stop across nodes: each node's own, in name order, then what no node
/// stopped, then the writer's notes.
pub fn compose(
    answers: &BTreeMap<String, String>,
    gone: &BTreeMap<String, Vec<ContainerRef>>,
    nowhere: &[ContainerRef],
    notes: Vec<String>,
) -> String {
    let mut parts: Vec<String> = answers
        .iter()
        .map(|(node, report)| format!("on node {node}: {report}"))
        .collect();
    parts.extend(gone.iter().map(|(node, containers)| {
        format!(
            "on node {node}: could not stop {}: the node left the cluster (its lease ended) before it answered",
            names(containers)
        )
    }));
    if !nowhere.is_empty() {
        parts.push(format!(
            "could not stop {}: no live node's Docker runs it",
            names(nowhere)
        ));
    }
    parts.extend(notes);
    if parts.is_empty() {
        parts.push("no container of the retired services was running".into());
    }
    parts.join("; ")
}

/// A node's side, for as long as it runs: carries out the stop requests to this node through
/// its local discovery (`docker`), and answers each with what discovery reported (`done`).
pub async fn serve_stops(
    client: Client,
    keys: Keys,
    node: String,
    lease_rx: watch::Receiver<i64>,
    docker: mpsc::Sender<DockerCommand>,
    mut done: mpsc::UnboundedReceiver<Done>,
    shutdown: CancellationToken,
) {
    let mut server = Server {
        client,
        keys,
        node,
        lease_rx,
        docker,
        running: BTreeSet::new(),
    };
    let prefix = server.keys.host_stops(&server.node);
    while !shutdown.is_cancelled() {
        let mut client = server.client.clone();
        let listed = match client
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await
        {
            Ok(l) => l,
            Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        let revision = listed.header().map_or(0, |h| h.revision());
        for kv in listed.kvs() {
            server.start(kv).await;
        }
        let watched = client
            .watch(
                prefix.clone(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            )
            .await;
        let Ok(mut stream) = watched else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        loop {
            tokio::select! {
                message = stream.message() => {
                    let Ok(Some(resp)) = message else { break };
                    if resp.canceled() {
                        break;
                    }
                    for event in resp.events() {
                        if event.event_type() == EventType::Put
                            && let Some(kv) = event.kv()
                        {
                            server.start(kv).await;
                        }
                    }
                }
                Some((alias, op, report)) = done.recv() => server.answer(&alias, op, report).await,
                () = shutdown.cancelled() => return,
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// A node's stops in progress.
struct Server {
    client: Client,
    keys: Keys,
    node: String,
    lease_rx: watch::Receiver<i64>,
    docker: mpsc::Sender<DockerCommand>,
    /// Requests handed to discovery and not answered yet: (alias key, op).
    running: BTreeSet<(String, u64)>,
}

impl Server {
    /// Hands one request to discovery, unless it is already in its hands.
    async fn start(&mut self, kv: &KeyValue) {
        let Ok(raw) = kv.key_str() else { return };
        let Some(Key::Stop { node, alias, op }) = self.keys.classify(raw) else {
            return;
        };
        if node != self.node || self.running.contains(&(alias.to_owned(), op)) {
            return;
        }
        let request = match serde_json::from_slice::<StopRequest>(kv.value()) {
            Ok(r) => r,
            Err(e) => {
                error!(key = raw, error = %e, "a stop request from the leader could not be read; it is left undone");
                return;
            }
        };
        let name = match AliasName::resolve(alias, &hickory_proto::rr::Name::root()) {
            Ok(n) => n,
            Err(e) => {
                error!(key = raw, error = %e, "a stop request names no alias; it is left undone");
                return;
            }
        };
        info!(alias = %name, op, containers = %names(&request.containers), "stopping retired containers, as the leader asked");
        self.running.insert((alias.to_owned(), op));
        let command = DockerCommand::Stop {
            alias: name,
            op,
            containers: request.containers,
            notes: Vec::new(),
        };
        if self.docker.send(command).await.is_err() {
            warn!("Docker discovery has ended: the leader's stop request is left undone");
        }
    }

    /// Writes the answer under this node's lease and deletes the request, if it is still
    /// there (a request gone with an ended lease needs no answer).
    async fn answer(&mut self, alias: &AliasName, op: u64, report: String) {
        let alias = alias.name().to_ascii();
        self.running.remove(&(alias.clone(), op));
        let stop = self.keys.host_stop(&self.node, &alias, op);
        let value = serde_json::to_vec(&StopReport { report }).unwrap_or_default();
        for _ in 0..ANSWER_TRIES {
            let lease = *self.lease_rx.borrow();
            if lease == 0 {
                // Between leases: the request went with the old one.
                return;
            }
            let txn = Txn::new()
                .when(vec![Compare::version(stop.clone(), CompareOp::Greater, 0)])
                .and_then(vec![
                    TxnOp::put(
                        self.keys.host_stopped(&self.node, &alias, op),
                        value.clone(),
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                    TxnOp::delete(stop.clone(), None),
                ]);
            let mut client = self.client.clone();
            match client.txn(txn).await {
                Ok(_) => return,
                Err(e) => {
                    warn!(error = %describe(&e), "cannot give the leader the report of a stop; trying again");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        error!(alias, op, "gave up giving the leader the report of a stop");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, id: &str) -> ContainerRef {
        ContainerRef {
            id: id.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_report_names_each_nodes_part_then_what_no_node_stopped_then_the_notes() {
        let answers = BTreeMap::from([
            ("b".to_owned(), "stopped web-b (bbbb)".to_owned()),
            ("a".to_owned(), "stopped web-a (aaaa)".to_owned()),
        ]);
        let gone = BTreeMap::from([("c".to_owned(), vec![c("web-c", "cccc")])]);
        let report = compose(
            &answers,
            &gone,
            &[c("web-d", "dddd")],
            vec!["web-v0 is still used by alias x, so it was left running".into()],
        );
        assert_eq!(
            report,
            "on node a: stopped web-a (aaaa); on node b: stopped web-b (bbbb); \
             on node c: could not stop web-c (cccc): the node left the cluster (its lease ended) before it answered; \
             could not stop web-d (dddd): no live node's Docker runs it; \
             web-v0 is still used by alias x, so it was left running"
        );
        assert_eq!(
            compose(&BTreeMap::new(), &BTreeMap::new(), &[], Vec::new()),
            "no container of the retired services was running"
        );
    }
}
