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
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::model::{Endpoint, ServiceName};

/// What is known of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not checked enough yet (just started). Answered, like a server HAProxy assumes up.
    Unknown,
    Healthy,
    Unhealthy,
}

/// How one service is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// `GET path`; healthy when the status is in `expect`.
    Http {
        path: String,
        expect: RangeInclusive<u16>,
        host: Option<String>,
    },
    /// A TCP connect.
    Tcp,
    /// Not checked: always healthy.
    None,
}

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
        Health::Unknown if passes >= rise => Health::Healthy,
        Health::Unknown if failures >= fall => Health::Unhealthy,
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
}

/// Every endpoint's latest status, readable without a lock.
#[derive(Debug, Default)]
pub struct HealthBoard {
    entries: HashMap<(ServiceName, Endpoint), ArcSwap<EndpointStatus>>,
}

impl HealthBoard {
    /// A board for these services, each endpoint starting Unknown (or Healthy when unchecked).
    pub fn new<'a>(
        services: impl Iterator<Item = (&'a ServiceName, &'a [Endpoint], &'a CheckConfig)>,
    ) -> Self {
        let mut entries = HashMap::new();
        for (service, endpoints, check) in services {
            let start = if check.kind == CheckKind::None {
                Health::Healthy
            } else {
                Health::Unknown
            };
            for e in endpoints {
                entries.insert(
                    (service.clone(), *e),
                    ArcSwap::from_pointee(EndpointStatus::new(start)),
                );
            }
        }
        Self { entries }
    }

    pub fn get(&self, service: &ServiceName, endpoint: &Endpoint) -> Option<Arc<EndpointStatus>> {
        self.entries
            .get(&(service.clone(), *endpoint))
            .map(|s| s.load_full())
    }

    /// The health of every endpoint, for the controller's first state.
    pub fn healths(&self) -> HashMap<(ServiceName, Endpoint), Health> {
        self.entries
            .iter()
            .map(|(k, v)| (k.clone(), v.load().health))
            .collect()
    }

    fn store(&self, service: &ServiceName, endpoint: &Endpoint, status: EndpointStatus) {
        if let Some(slot) = self.entries.get(&(service.clone(), *endpoint)) {
            slot.store(Arc::new(status));
        }
    }
}

/// One endpoint to check.
pub struct Target {
    pub service: ServiceName,
    pub endpoint: Endpoint,
    pub check: CheckConfig,
}

/// Checks every target until `shutdown`, at most `concurrency` at a time.
pub fn spawn_checks(
    targets: Vec<Target>,
    board: Arc<HealthBoard>,
    changes: mpsc::Sender<HealthChange>,
    concurrency: usize,
    shutdown: CancellationToken,
) -> tokio::task::JoinSet<()> {
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let seed = RandomState::new();
    let mut tasks = tokio::task::JoinSet::new();
    for target in targets {
        if target.check.kind == CheckKind::None {
            continue;
        }
        let (board, changes, limit, shutdown) = (
            board.clone(),
            changes.clone(),
            limit.clone(),
            shutdown.clone(),
        );
        let salt = seed.hash_one((&target.service, target.endpoint));
        tasks.spawn(check_loop(target, board, changes, limit, shutdown, salt));
    }
    tasks
}

/// A fraction in [0, 1) from a salt and a counter: enough randomness to spread checks.
fn jitter(salt: u64, n: u64) -> f64 {
    let x = RandomState::new().hash_one((salt, n));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

async fn check_loop(
    target: Target,
    board: Arc<HealthBoard>,
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
        let result = run_check(&target.check, target.endpoint).await;
        let before = board
            .get(&target.service, &target.endpoint)
            .unwrap_or_else(|| Arc::new(EndpointStatus::new(Health::Unknown)));
        let after = observe(
            &before,
            result,
            target.check.rise,
            target.check.fall,
            crate::controller::now_ms(),
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
        };
        board.store(&target.service, &target.endpoint, after);
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
