//! The election and the leader's term: campaign, takeover, the writer, and the term's end.

use super::*;

/// Campaigns until this node is elected; returns the fence (the revision its `leader` key was
/// created at).
pub(super) async fn campaign(ctx: &Ctx) -> Option<i64> {
    let mut client = ctx.client.clone();
    let mut lease_rx = ctx.lease_rx.clone();
    let node = ctx.settings.node.clone();
    loop {
        let lease = *lease_rx.borrow_and_update();
        if lease == 0 {
            if lease_rx.changed().await.is_err() {
                return None;
            }
            continue;
        }
        let leader = ctx.keys.leader();
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                leader.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                leader.clone(),
                node.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else(vec![TxnOp::get(leader.clone(), None)]);
        let response = match client.txn(txn).await {
            Ok(r) => r,
            Err(e) => {
                ctx.reach.failed(&describe(&e));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            info!(node = %node, revision, "elected leader");
            return Some(revision);
        }
        let holder = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().cloned(),
            _ => None,
        });
        if let Some(kv) = &holder
            && kv.value() == node.as_bytes()
        {
            // This node's own key, left by a lease it lost (a restart) or a term that ended
            // without removing it: this node campaigns, so no writer runs under that key.
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    leader.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then(vec![TxnOp::delete(leader.clone(), None)]);
            let _ = client.txn(txn).await;
            continue;
        }
        // Wait for the key to go (its holder resigned, or its lease expired).
        let watched = client
            .watch(
                leader.clone(),
                Some(WatchOptions::new().with_start_revision(revision + 1)),
            )
            .await;
        let Ok(mut stream) = watched else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        loop {
            tokio::select! {
                m = stream.message() => match m {
                    Ok(Some(r)) if r.events().iter().any(|e| e.event_type() == EventType::Delete) => break,
                    Ok(Some(r)) if !r.canceled() => {}
                    _ => {
                        tokio::time::sleep(RETRY).await;
                        break;
                    }
                },
                // A lost lease means campaigning again under the new one.
                _ = lease_rx.changed() => break,
            }
        }
    }
}

/// One term as the leader: takes over from what etcd holds and runs the writer until the
/// term ends.
pub(super) async fn lead(ctx: &Ctx, fence: i64, shutdown: &CancellationToken) {
    run_term(ctx, fence, shutdown).await;
    // However the term ended (shutdown, a lease it could not renew, a write etcd refused, a
    // takeover that failed), its `leader` key goes: left under a lease that still holds, it
    // would keep every node, this one too, waiting for a leader that runs no writer. The
    // delete is fenced: a newer leader's key is never touched.
    let mut client = ctx.client.clone();
    let txn = Txn::new()
        .when(vec![Compare::create_revision(
            ctx.keys.leader(),
            CompareOp::Equal,
            fence,
        )])
        .and_then(vec![TxnOp::delete(ctx.keys.leader(), None)]);
    let resigned = tokio::time::timeout(Duration::from_secs(2), client.txn(txn)).await;
    if shutdown.is_cancelled() {
        info!("resigned the leadership");
        return;
    }
    if !matches!(resigned, Ok(Ok(_))) {
        warn!("could not remove this node's leader key; it goes with the lease");
    }
    warn!(node = %ctx.settings.node, "no longer the leader: following again");
    // Its `leader` key may outlive the term (while etcd has no quorum): the status must not go
    // on naming this node, whose writer is gone. The members' watch names the next leader
    // when it sees one.
    let me = ctx.settings.node.as_str();
    ctx.reach.status.send_if_modified(|s| {
        let stale = s.leader.as_deref() == Some(me);
        if stale {
            s.leader = None;
            for n in &mut s.nodes {
                n.leader = false;
            }
        }
        stale
    });
}

/// The term itself: takeover, then the writer until the term ends.
pub(super) async fn run_term(ctx: &Ctx, fence: i64, shutdown: &CancellationToken) {
    let term = shutdown.child_token();
    let mut client = ctx.client.clone();
    let now = ctx.setup.clock.now_ms();
    let listed = etcd::list(&mut client, &ctx.keys).await;
    let listed = match listed {
        Ok(l) if l.leader.as_ref().map(|(_, r)| *r) == Some(fence) => l,
        Ok(_) => {
            warn!("elected, but the leadership was gone before the state was read");
            return;
        }
        Err(e) => {
            ctx.reach.failed(&describe(&e));
            return;
        }
    };
    let (history, problems) =
        match etcd::list_history(&mut client, &ctx.keys, listed.revision).await {
            Ok(h) => h,
            Err(e) => {
                ctx.reach.failed(&describe(&e));
                return;
            }
        };
    for p in problems {
        error!("{p}");
    }
    let taken = takeover(&ctx.base, &listed.data, history, now);
    for note in &taken.notes {
        warn!("{note}");
    }
    // Watches the lease: past its end, or under a new lease, this term is over.
    {
        let term = term.clone();
        let until = ctx.lease_until.clone();
        let mut lease_rx = ctx.lease_rx.clone();
        let lease = *lease_rx.borrow_and_update();
        tokio::spawn(async move {
            loop {
                let end = *until.lock().unwrap_or_else(|p| p.into_inner());
                if Instant::now() >= end || *lease_rx.borrow() != lease {
                    warn!("this node's lease could not be renewed in time: stepping down");
                    term.cancel();
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(end.into()) => {}
                    _ = lease_rx.changed() => {}
                    () = term.cancelled() => return,
                }
            }
        });
    }
    let seqs: BTreeSet<u64> = taken.entries.iter().map(|e| e.seq).collect();
    let mut store = EtcdStore::new(
        ctx.client.clone(),
        ctx.keys.clone(),
        tokio::runtime::Handle::current(),
        fence,
        listed.meta_revision,
        seqs,
        term.clone(),
        ctx.lease_until.clone(),
        ctx.applied.clone(),
    );
    let bootstrap = {
        let units = taken.bootstrap;
        tokio::task::spawn_blocking(move || {
            for (delta, entries, live) in units {
                store.commit(delta, &entries, &live, &StoredState::default)?;
            }
            Ok::<_, crate::controller::store::StoreError>(store)
        })
        .await
    };
    let store = match bootstrap {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => {
            error!(error = %e, "could not take over the cluster's state; stepping down");
            term.cancel();
            return;
        }
        Err(e) => {
            error!(error = %e, "the takeover task failed");
            term.cancel();
            return;
        }
    };
    let (health_tx, health_rx) = mpsc::channel(1024);
    let checker = Checker::new(
        ctx.setup.board.clone(),
        health_tx,
        ctx.setup.health_concurrency,
        term.clone(),
    );
    let (sources_tx, sources_rx) = mpsc::channel(64);
    let (drained_tx, drained_rx) = mpsc::unbounded_channel();
    {
        let mut slot = ctx.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.sources = Some(sources_tx.clone());
        slot.drained = Some(drained_tx);
        // Under the lock, so a newer status that forward_inputs passes on comes after it.
        if let Some(status) = slot.docker_status.clone() {
            let _ = sources_tx.try_send(SourceUpdate::DockerStatus(status));
        }
    }
    let s = &ctx.setup;
    // The writer's stops go to the nodes whose Docker runs the containers, through etcd.
    let (stops_tx, stops_rx) = mpsc::channel(64);
    let stops = s.docker_tx.is_some().then(|| {
        tokio::spawn(crate::cluster::docker::route_stops(
            ctx.client.clone(),
            ctx.keys.clone(),
            fence,
            stops_rx,
            sources_tx.clone(),
            term.clone(),
        ))
    });
    let (controller, _handle, _shared) = Controller::start(StartParts {
        base: ctx.base.clone(),
        store: Box::new(store),
        state: taken.state,
        topology: taken.topology,
        history: taken.entries,
        board: s.board.clone(),
        checker,
        health_rx,
        sources_rx,
        docker_tx: stops.is_some().then_some(stops_tx),
        docker_endpoint: s.docker_endpoint.clone(),
        proxies: s.proxies.clone(),
        drained_rx,
        drain_deadline: s.drain_deadline,
        measurements: Some(s.measurements.clone()),
        secondaries: s.secondaries.clone(),
        clock: s.clock.clone(),
        takeover: Some(Takeover {
            handle: ctx.handle.clone(),
            shared: ctx.shared.clone(),
            health: listed.data.health_map(),
            last_good: listed.data.last_good_map(),
        }),
    });
    // This node's checkers decide from now on (the writer reconciled them at its start).
    ctx.setup.board.follow(None);
    info!(node = %ctx.settings.node, fence, "leading: the writer runs here");
    let peers = tokio::spawn(feed_peers(
        ctx.members.clone(),
        ctx.settings.node.clone(),
        ctx.base.clone(),
        sources_tx.clone(),
        term.clone(),
    ));
    let hosts = tokio::spawn(merge_hosts(
        ctx.client.clone(),
        ctx.keys.clone(),
        sources_tx,
        term.clone(),
    ));
    controller.run(term.clone()).await;
    term.cancel();
    hosts.abort();
    peers.abort();
    if let Some(stops) = stops {
        stops.abort();
    }
    ctx.handle.detach();
    {
        let mut slot = ctx.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.sources = None;
        slot.drained = None;
    }
}

/// Merges every live host's Docker view into one for the leader's writer: lists, watches,
/// and sends the whole merged set on every change.
pub(super) async fn merge_hosts(
    mut client: Client,
    keys: Keys,
    writer: mpsc::Sender<SourceUpdate>,
    term: CancellationToken,
) {
    let mut last: Option<BTreeMap<crate::model::ServiceName, Vec<DockerEndpoint>>> = None;
    while !term.is_cancelled() {
        let listed = client
            .get(keys.hosts(), Some(GetOptions::new().with_prefix()))
            .await;
        let Ok(listed) = listed else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let revision = listed.header().map_or(0, |h| h.revision());
        let mut hosts: BTreeMap<String, HostView> = BTreeMap::new();
        for kv in listed.kvs() {
            if let Ok(raw) = kv.key_str()
                && let Some(etcd::Key::Host(n)) = keys.classify(raw)
                && let Ok(v) = serde_json::from_slice(kv.value())
            {
                hosts.insert(n.to_owned(), v);
            }
        }
        let any_docker = !hosts.is_empty();
        send_merged(&hosts, &writer, &mut last, any_docker).await;
        let watched = client
            .watch(
                keys.hosts(),
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
            let message = tokio::select! {
                m = stream.message() => m,
                () = term.cancelled() => return,
            };
            let Ok(Some(resp)) = message else { break };
            if resp.canceled() {
                break;
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let Ok(raw) = kv.key_str() else { continue };
                let Some(etcd::Key::Host(n)) = keys.classify(raw) else {
                    continue;
                };
                match event.event_type() {
                    EventType::Put => {
                        if let Ok(v) = serde_json::from_slice(kv.value()) {
                            hosts.insert(n.to_owned(), v);
                        }
                    }
                    EventType::Delete => {
                        hosts.remove(n);
                    }
                }
            }
            send_merged(&hosts, &writer, &mut last, true).await;
        }
        tokio::time::sleep(RETRY).await;
    }
}

pub(super) async fn send_merged(
    hosts: &BTreeMap<String, HostView>,
    writer: &mpsc::Sender<SourceUpdate>,
    last: &mut Option<BTreeMap<crate::model::ServiceName, Vec<DockerEndpoint>>>,
    any: bool,
) {
    if !any && last.is_none() {
        return;
    }
    let mut services: BTreeMap<crate::model::ServiceName, Vec<DockerEndpoint>> = BTreeMap::new();
    let mut problems = Vec::new();
    for view in hosts.values() {
        for (name, endpoints) in &view.services {
            if let Ok(n) = name.parse() {
                services
                    .entry(n)
                    .or_default()
                    .extend(endpoints.iter().cloned());
            }
        }
        problems.extend(view.problems.iter().cloned());
    }
    if last.as_ref() == Some(&services) {
        return;
    }
    *last = Some(services.clone());
    let _ = writer
        .send(SourceUpdate::Docker { services, problems })
        .await;
}
