//! Active health checks: each endpoint of each service is checked on its own schedule and its
//! health follows HAProxy's rise/fall rule.
//!
//! The pure part is [`observe`], which turns one check result into the next status. The shell
//! runs one task per endpoint (with jitter so checks do not beat in step) under a semaphore that
//! bounds how many checks run at once, writes every result to the [`HealthBoard`] (lock-free,
//! for the API) and sends only *changes* of health to the controller, so a steady fleet costs
//! the writer nothing.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::RangeInclusive;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::check::{CheckConfig, CheckKind, Health};
use crate::clock::now_ms;
use crate::model::{Endpoint, ServiceName};

/// The latest of one endpoint, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    pub health: Health,
    pub last_check_ms: Option<u64>,
    pub last_error: Option<String>,
    pub passes: u32,
    pub failures: u32,
}

impl EndpointStatus {
    pub const fn new(health: Health) -> Self {
        Self {
            health,
            last_check_ms: None,
            last_error: None,
            passes: 0,
            failures: 0,
        }
    }
}

/// The next status after one check. Pure.
pub fn observe(
    status: &EndpointStatus,
    result: Result<(), String>,
    rise: u32,
    fall: u32,
    now_ms: u64,
) -> EndpointStatus {
    let (passes, failures, last_error) = match &result {
        Ok(()) => (status.passes.saturating_add(1), 0, None),
        Err(e) => (0, status.failures.saturating_add(1), Some(e.clone())),
    };
    let health = match status.health {
        Health::Healthy if failures >= fall => Health::Unhealthy,
        Health::Unhealthy if passes >= rise => Health::Healthy,
        Health::Unknown | Health::Starting if passes >= rise => Health::Healthy,
        Health::Unknown | Health::Starting if failures >= fall => Health::Unhealthy,
        h => h,
    };
    EndpointStatus {
        health,
        last_check_ms: Some(now_ms),
        last_error,
        passes,
        failures,
    }
}

/// A change of health, sent to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    pub service: ServiceName,
    pub endpoint: Endpoint,
    pub health: Health,
    pub error: Option<String>,
    /// Which run of the endpoint's checker saw it: a change from a checker that was stopped
    /// since (the endpoint left and came back) is stale.
    pub epoch: u64,
}

/// An endpoint of a service: what a check and its status belong to.
pub type Key = (ServiceName, Endpoint);

/// One endpoint's latest status, written by its checker.
#[derive(Debug)]
struct Slot {
    epoch: u64,
    status: ArcSwap<EndpointStatus>,
}

/// Every endpoint's latest status, readable without a lock. The set of endpoints changes with
/// the registry: the [`Checker`] swaps in a new map, and each checker writes its own slot.
///
/// A cluster's follower runs no checks: what it shows is the health the leader decided, as
/// its replica renders it ([`HealthBoard::follow`]), in place of its own (stale or absent)
/// checkers' slots.
#[derive(Debug, Default)]
pub struct HealthBoard {
    slots: ArcSwap<HashMap<Key, Arc<Slot>>>,
    followed: ArcSwapOption<HashMap<Key, Health>>,
}

impl HealthBoard {
    pub fn get(&self, service: &ServiceName, endpoint: &Endpoint) -> Option<Arc<EndpointStatus>> {
        if let Some(followed) = &*self.followed.load() {
            let health = followed.get(&(service.clone(), *endpoint))?;
            return Some(Arc::new(EndpointStatus::new(*health)));
        }
        self.slots
            .load()
            .get(&(service.clone(), *endpoint))
            .map(|s| s.status.load_full())
    }

    /// The run of the endpoint's checker now, if it is checked.
    pub fn epoch(&self, key: &Key) -> Option<u64> {
        self.slots.load().get(key).map(|s| s.epoch)
    }

    /// The health of every endpoint.
    pub fn healths(&self) -> HashMap<Key, Health> {
        if let Some(followed) = &*self.followed.load() {
            return (**followed).clone();
        }
        self.slots
            .load()
            .iter()
            .map(|(k, v)| (k.clone(), v.status.load().health))
            .collect()
    }

    /// On a follower, `Some` of the health the leader decided, which `get` and `healths` then
    /// answer from; `None` when this node leads and its own checkers decide again.
    pub fn follow(&self, health: Option<HashMap<Key, Health>>) {
        self.followed.store(health.map(Arc::new));
    }
}

/// The health an endpoint starts with before its first checks: unchecked ones are healthy.
/// Those known when aliasd starts are answered until checked, so a restart answers at once;
/// those that appear while it runs wait for their checks to pass (`Starting`), so a container
/// that is still booting gets no traffic.
pub fn starting_health(check: &CheckConfig, at_start: bool) -> Health {
    if check.kind == CheckKind::None {
        Health::Healthy
    } else if at_start {
        Health::Unknown
    } else {
        Health::Starting
    }
}

/// A running checker.
struct Running {
    check: CheckConfig,
    stop: CancellationToken,
}

/// Runs one checker per endpoint and keeps that set equal to the registry's, at most
/// `concurrency` checks at a time. Owned by the controller, which reconciles it after every
/// change of the registry.
pub struct Checker {
    board: Arc<HealthBoard>,
    running: HashMap<Key, Running>,
    changes: mpsc::Sender<HealthChange>,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    seed: RandomState,
    next_epoch: u64,
}

impl Checker {
    pub fn new(
        board: Arc<HealthBoard>,
        changes: mpsc::Sender<HealthChange>,
        concurrency: usize,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            board,
            running: HashMap::new(),
            changes,
            limit: Arc::new(Semaphore::new(concurrency.max(1))),
            shutdown,
            seed: RandomState::new(),
            next_epoch: 1,
        }
    }

    /// Makes the checkers match `targets` (each endpoint with its check and the health to
    /// start from): starts the new ones, stops those that left, and restarts those whose check
    /// changed, from the health they had.
    pub fn reconcile(&mut self, targets: impl IntoIterator<Item = (Key, CheckConfig, Health)>) {
        let wanted: HashMap<Key, (CheckConfig, Health)> =
            targets.into_iter().map(|(k, c, h)| (k, (c, h))).collect();
        let current = self.board.slots.load_full();
        let mut slots: HashMap<Key, Arc<Slot>> = HashMap::with_capacity(wanted.len());
        self.running.retain(|key, run| {
            let keep = wanted.get(key).is_some_and(|(c, _)| *c == run.check);
            if !keep {
                run.stop.cancel();
            }
            keep
        });
        for (key, (check, health)) in wanted {
            if self.running.contains_key(&key)
                && let Some(slot) = current.get(&key)
            {
                slots.insert(key, slot.clone());
                continue;
            }
            let epoch = self.next_epoch;
            self.next_epoch += 1;
            let slot = Arc::new(Slot {
                epoch,
                status: ArcSwap::from_pointee(EndpointStatus::new(health)),
            });
            slots.insert(key.clone(), slot.clone());
            let stop = self.shutdown.child_token();
            if check.kind != CheckKind::None {
                let salt = self.seed.hash_one(&key);
                let target = Target {
                    service: key.0.clone(),
                    endpoint: key.1,
                    check: check.clone(),
                };
                tokio::spawn(check_loop(
                    target,
                    slot,
                    self.changes.clone(),
                    self.limit.clone(),
                    stop.clone(),
                    salt,
                ));
            }
            self.running.insert(key, Running { check, stop });
        }
        self.board.slots.store(Arc::new(slots));
    }
}

/// One endpoint to check.
pub struct Target {
    pub service: ServiceName,
    pub endpoint: Endpoint,
    pub check: CheckConfig,
}

/// A fraction in [0, 1) from a salt and a counter: enough randomness to spread checks.
fn jitter(salt: u64, n: u64) -> f64 {
    let x = RandomState::new().hash_one((salt, n));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

async fn check_loop(
    target: Target,
    slot: Arc<Slot>,
    changes: mpsc::Sender<HealthChange>,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    salt: u64,
) {
    let interval = target.check.interval;
    // Start somewhere in the first interval so a thousand endpoints do not fire together.
    let mut next = tokio::time::Instant::now() + interval.mul_f64(jitter(salt, 0));
    let mut round = 1u64;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = shutdown.cancelled() => return,
        }
        // ±10% on every interval keeps them spread.
        next += interval.mul_f64(0.9 + 0.2 * jitter(salt, round));
        round += 1;
        let Ok(_permit) = limit.acquire().await else {
            return;
        };
        let result = tokio::select! {
            r = run_check(&target.check, target.endpoint) => r,
            () = shutdown.cancelled() => return,
        };
        let before = slot.status.load_full();
        let after = observe(
            &before,
            result,
            target.check.rise,
            target.check.fall,
            now_ms(),
        );
        let changed = after.health != before.health;
        if changed {
            info!(
                service = %target.service,
                endpoint = %target.endpoint,
                health = ?after.health,
                error = after.last_error.as_deref().unwrap_or(""),
                "endpoint health changed"
            );
        }
        let change = HealthChange {
            service: target.service.clone(),
            endpoint: target.endpoint,
            health: after.health,
            error: after.last_error.clone(),
            epoch: slot.epoch,
        };
        slot.status.store(Arc::new(after));
        if changed && changes.send(change).await.is_err() {
            return;
        }
    }
}

/// Runs one check with its timeout.
pub async fn run_check(check: &CheckConfig, endpoint: Endpoint) -> Result<(), String> {
    let work = async {
        match &check.kind {
            CheckKind::None => Ok(()),
            CheckKind::Tcp => TcpStream::connect(endpoint.addr())
                .await
                .map(drop)
                .map_err(|e| format!("connect: {e}")),
            CheckKind::Http { path, expect, host } => {
                http_check(endpoint, path, expect, host.as_deref()).await
            }
        }
    };
    match tokio::time::timeout(check.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {}ms", check.timeout.as_millis())),
    }
}

async fn http_check(
    endpoint: Endpoint,
    path: &str,
    expect: &RangeInclusive<u16>,
    host: Option<&str>,
) -> Result<(), String> {
    let stream = TcpStream::connect(endpoint.addr())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http: {e}"))?;
    let driver = tokio::spawn(async move {
        if let Err(error) = conn.await {
            debug!(%error, "health check connection ended");
        }
    });
    let host = host.map_or_else(|| endpoint.to_string(), str::to_owned);
    let request = Request::get(path)
        .header("host", host)
        .header("user-agent", "aliasd-health")
        .header("connection", "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("http: {e}"));
    driver.abort();
    let status = response?.status().as_u16();
    if expect.contains(&status) {
        Ok(())
    } else {
        Err(format!(
            "status {status}, expected {}-{}",
            expect.start(),
            expect.end()
        ))
    }
}

#[cfg(test)]
mod tests;
