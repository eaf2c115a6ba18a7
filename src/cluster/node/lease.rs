//! This node's lease in etcd: granted, renewed, and granted again when lost.

use super::*;

/// Keeps this node's lease: grants one, renews it every third of its TTL (sooner again after
/// a failed renewal), and grants a new one only when it is known or feared lost. `until` is
/// how long the lease is known to hold: when the last renewal etcd answered was sent, plus
/// the TTL. A slow or failed renewal is tried again until then; a term never outlives it.
pub(super) async fn keep_lease(
    mut client: Client,
    ttl: i64,
    lease_tx: watch::Sender<i64>,
    until: Arc<Mutex<Instant>>,
    reach: Reach,
    shutdown: CancellationToken,
) {
    let ttl_d = Duration::from_secs(ttl as u64);
    let every = ttl_d / 3;
    let held = |until: &Arc<Mutex<Instant>>| *until.lock().unwrap_or_else(|p| p.into_inner());
    while !shutdown.is_cancelled() {
        let sent = Instant::now();
        let granted = match client.lease_grant(ttl, None).await {
            Ok(g) => g,
            Err(e) => {
                reach.failed(&describe(&e));
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        reach.ok();
        let id = granted.id();
        *until.lock().unwrap_or_else(|p| p.into_inner()) = sent + ttl_d;
        lease_tx.send_replace(id);
        let mut keeper = None;
        let mut wait = every;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
            let now = Instant::now();
            if now >= held(&until) {
                warn!(
                    "this node's lease in etcd ran out before it could be renewed; taking a new one"
                );
                break;
            }
            wait = RETRY;
            let (k, stream) = match &mut keeper {
                Some(k) => k,
                None => match client.lease_keep_alive(id).await {
                    Ok(k) => keeper.insert(k),
                    Err(e) => {
                        reach.failed(&describe(&e));
                        continue;
                    }
                },
            };
            let renewed = async {
                k.keep_alive().await?;
                stream.message().await
            };
            let left = held(&until).saturating_duration_since(now);
            match tokio::time::timeout(left.max(Duration::from_millis(100)), renewed).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    reach.ok();
                    *until.lock().unwrap_or_else(|p| p.into_inner()) = now + ttl_d;
                    wait = every;
                }
                Ok(Ok(Some(_))) => {
                    warn!("this node's lease in etcd expired; taking a new one");
                    break;
                }
                Ok(Ok(None)) => {
                    reach.failed("etcd closed the lease keep-alive stream");
                    keeper = None;
                }
                Ok(Err(e)) => {
                    reach.failed(&describe(&e));
                    keeper = None;
                }
                Err(_) => {
                    reach.failed("etcd did not answer a lease renewal in time");
                    keeper = None;
                }
            }
        }
        lease_tx.send_replace(0);
    }
}
