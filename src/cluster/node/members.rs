//! What a node announces under `nodes/<node>`, and what it learns of the others: the
//! cluster's status, and the peers a leader's drains wait for.

use super::*;

/// Writes this node's announcement (and its Docker view) under its lease whenever the lease,
/// the revision it renders or its Docker view changes.
#[allow(clippy::too_many_arguments)]
pub(super) async fn announce(
    mut client: Client,
    keys: Keys,
    node: String,
    mut lease_rx: watch::Receiver<i64>,
    mut applied_rx: watch::Receiver<i64>,
    mut host_rx: watch::Receiver<Option<HostView>>,
    mut reported_rx: watch::Receiver<DrainedSet>,
    shared: SharedSnapshot,
    mut announcement: Announcement,
    shutdown: CancellationToken,
) {
    let mut written: Option<(i64, Announcement)> = None;
    let mut host_written: Option<(i64, HostView)> = None;
    loop {
        let lease = *lease_rx.borrow_and_update();
        announcement.applied = *applied_rx.borrow_and_update();
        let snapshot = shared.load();
        announcement.serials = snapshot
            .topology
            .zones
            .iter()
            .zip(&snapshot.zones)
            .map(|(z, v)| (z.origin.name().to_ascii(), v.serial))
            .collect();
        // Only what still drains: a report outlives its drain only until the next change.
        announcement.drained = reported_rx
            .borrow_and_update()
            .iter()
            .filter(|(_, alias, endpoint)| {
                snapshot.aliases.iter().any(|(name, view)| {
                    name.name().to_ascii() == *alias && view.draining.contains(endpoint)
                })
            })
            .cloned()
            .collect();
        let mut failed = false;
        if lease != 0 && written.as_ref() != Some(&(lease, announcement.clone())) {
            let value = serde_json::to_vec(&announcement).unwrap_or_default();
            let put = client.put(
                keys.node(&node),
                value,
                Some(PutOptions::new().with_lease(lease)),
            );
            match put.await {
                Ok(_) => written = Some((lease, announcement.clone())),
                Err(_) => failed = true,
            }
        }
        let host = host_rx.borrow_and_update().clone();
        if let Some(view) = host
            && lease != 0
            && host_written.as_ref() != Some(&(lease, view.clone()))
        {
            let value = serde_json::to_vec(&view).unwrap_or_default();
            let put = client.put(
                keys.host_docker(&node),
                value,
                Some(PutOptions::new().with_lease(lease)),
            );
            match put.await {
                Ok(_) => host_written = Some((lease, view)),
                Err(_) => failed = true,
            }
        }
        let wait = if failed {
            RETRY
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = lease_rx.changed() => {}
            _ = applied_rx.changed() => {}
            _ = host_rx.changed() => {}
            _ = reported_rx.changed() => {}
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Every node's announcement by name, and the leader's name.
pub(super) type Members = (BTreeMap<String, Announcement>, Option<String>);

pub(super) async fn list_members(
    client: &mut Client,
    keys: &Keys,
) -> Result<Members, etcd_client::Error> {
    let nodes = client
        .get(keys.nodes(), Some(GetOptions::new().with_prefix()))
        .await?;
    let leader = client.get(keys.leader(), None).await?;
    let mut members = BTreeMap::new();
    for kv in nodes.kvs() {
        if let Ok(raw) = kv.key_str()
            && let Some(etcd::Key::Node(n)) = keys.classify(raw)
            && let Ok(a) = serde_json::from_slice::<Announcement>(kv.value())
        {
            members.insert(n.to_owned(), a);
        }
    }
    let leader = leader
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
    Ok((members, leader))
}

/// The status from the members and the leader.
pub(super) fn compose(
    s: &mut ClusterStatus,
    members: &BTreeMap<String, Announcement>,
    leader: Option<&str>,
    mine: &str,
) {
    s.leader = leader.map(str::to_owned);
    let reference = leader
        .and_then(|l| members.get(l))
        .map_or(mine, |a| a.config_hash.as_str())
        .to_owned();
    let latest = members.values().map(|a| a.applied).max().unwrap_or(0);
    s.revision = latest;
    s.nodes = members
        .iter()
        .map(|(name, a)| NodeStatus {
            name: name.clone(),
            api: a.api,
            leader: Some(name.as_str()) == leader,
            applied_revision: a.applied,
            behind: latest - a.applied,
            config_hash: a.config_hash.clone(),
            config_matches: a.config_hash == reference,
            started_ms: a.started_ms,
        })
        .collect();
    s.problems = s
        .nodes
        .iter()
        .filter(|n| !n.config_matches)
        .map(|n| {
            format!(
                "node {} answers from other definitions (zones, services, aliases) than the leader {}: its config hash is {}, the leader's {}; give every node the same config files",
                n.name,
                leader.unwrap_or("?"),
                short(&n.config_hash),
                short(&reference)
            )
        })
        .collect();
    if leader.is_none() {
        s.problems.push(
            "no leader: no node holds the leadership in etcd; changes are refused until one does"
                .into(),
        );
    }
}

pub(super) fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Lists and watches the members and the leader into the status.
pub(super) async fn watch_members(
    mut client: Client,
    keys: Keys,
    status: watch::Sender<ClusterStatus>,
    members_tx: watch::Sender<BTreeMap<String, Announcement>>,
    mine: String,
    reach: Reach,
    shutdown: CancellationToken,
) {
    let publish = |members: &BTreeMap<String, Announcement>, leader: Option<&str>| {
        status.send_modify(|s| compose(s, members, leader, &mine));
        members_tx.send_if_modified(|m| {
            let changed = m != members;
            if changed {
                *m = members.clone();
            }
            changed
        });
    };
    while !shutdown.is_cancelled() {
        match list_members(&mut client, &keys).await {
            Ok((members, leader)) => {
                reach.ok();
                let mut members = members;
                let mut leader = leader;
                publish(&members, leader.as_deref());
                let revision = 0;
                let watched = client
                    .watch(
                        keys.all(),
                        Some(
                            WatchOptions::new()
                                .with_prefix()
                                .with_start_revision(revision),
                        ),
                    )
                    .await;
                let Ok(mut stream) = watched else {
                    tokio::time::sleep(RETRY).await;
                    continue;
                };
                // The watch starts now: what changed between the list and here is listed
                // again on the first event.
                let _ = stream.message().await;
                if let Ok((m, l)) = list_members(&mut client, &keys).await {
                    members = m;
                    leader = l;
                    publish(&members, leader.as_deref());
                }
                loop {
                    let message = tokio::select! {
                        m = stream.message() => m,
                        () = shutdown.cancelled() => return,
                    };
                    let Ok(Some(resp)) = message else {
                        reach.failed("the watch of the cluster's members ended");
                        break;
                    };
                    if resp.canceled() {
                        break;
                    }
                    let mut changed = false;
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        let Ok(raw) = kv.key_str() else { continue };
                        match (keys.classify(raw), event.event_type()) {
                            (Some(etcd::Key::Node(n)), EventType::Put) => {
                                if let Ok(a) = serde_json::from_slice(kv.value()) {
                                    members.insert(n.to_owned(), a);
                                    changed = true;
                                }
                            }
                            (Some(etcd::Key::Node(n)), EventType::Delete) => {
                                changed |= members.remove(n).is_some();
                            }
                            (Some(etcd::Key::Leader), EventType::Put) => {
                                leader = Some(String::from_utf8_lossy(kv.value()).into_owned());
                                changed = true;
                            }
                            (Some(etcd::Key::Leader), EventType::Delete) => {
                                leader = None;
                                changed = true;
                            }
                            _ => {}
                        }
                    }
                    if changed {
                        publish(&members, leader.as_deref());
                    }
                }
            }
            Err(e) => reach.failed(&describe(&e)),
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Tells the leader's writer about the other live nodes whenever their announcements change:
/// a drain waits for each to serve the answers without the old version, and for its proxies'
/// open work on it.
pub(super) async fn feed_peers(
    mut members: watch::Receiver<BTreeMap<String, Announcement>>,
    me: String,
    base: Arc<Base>,
    writer: mpsc::Sender<SourceUpdate>,
    term: CancellationToken,
) {
    let root = hickory_proto::rr::Name::root();
    loop {
        let peers: BTreeMap<String, PeerReport> = members
            .borrow_and_update()
            .iter()
            .filter(|(name, _)| **name != me)
            .map(|(name, a)| {
                let alias = |s: &str| AliasName::resolve(s, &root).ok();
                let report = PeerReport {
                    proxies: a
                        .proxies
                        .iter()
                        .filter_map(|(addr, name)| Some((*addr, alias(name)?)))
                        .collect(),
                    serials: base
                        .zones
                        .iter()
                        .map(|z| a.serials.get(&z.origin.name().to_ascii()).copied())
                        .collect(),
                    drained: a
                        .drained
                        .iter()
                        .filter_map(|(proxy, name, endpoint)| {
                            Some(Drained {
                                proxy: *proxy,
                                alias: alias(name)?,
                                endpoint: *endpoint,
                            })
                        })
                        .collect(),
                };
                (name.clone(), report)
            })
            .collect();
        if writer.send(SourceUpdate::Peers(peers)).await.is_err() {
            return;
        }
        tokio::select! {
            r = members.changed() => if r.is_err() { return },
            () = term.cancelled() => return,
        }
    }
}
