//! What the proxies measure of each version: per alias fronted and per service, cumulative
//! counts of the attempts on its members (requests finished, errors, latency to the answer's
//! head), which the writer reads as [`Window`]s to judge a promotion's step ([`crate::gates`]).
//!
//! An attempt is one request sent to one member (HTTP) or one connection opened to one (TCP),
//! counted for the service the member belongs to in the alias's answers when it ends. Errors are
//! what a version is to blame for: a failed connect, a request the member did not answer or
//! broke off, and (HTTP) a 5xx answer. Each attempt counts, retries included, so a member that
//! fails a connect and a retry that succeeds elsewhere give one error to the first member's
//! service and one good request to the other's. Latency is the time from sending a request to
//! its answer's head (HTTP) or the time to connect (TCP).
//!
//! The hot path takes no lock and makes nothing: each proxy keeps, per published snapshot, a map
//! from the alias's endpoints to their service's counters ([`ServiceMap`]), rebuilt only when the
//! generation changes, and an attempt adds to atomics.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Grow, escape};
use crate::gates::{self, BUCKETS, Histogram, UPPER_BOUNDS_US, Window};
use crate::model::{AliasName, Endpoint, ServiceName};
use crate::snapshot::Snapshot;

/// The cumulative counters of one service behind the proxies of one alias. Atomics only.
#[derive(Debug)]
pub struct ServiceCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    /// Answers per bucket of [`gates::UPPER_BOUNDS_US`].
    latency: [AtomicU64; BUCKETS],
}

impl Default for ServiceCounters {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl ServiceCounters {
    /// One attempt ended: an error or not, and answered after `head` if it was (public for
    /// the `measure` benchmark).
    pub fn finished(&self, error: bool, head: Option<Duration>) {
        if let Some(took) = head {
            self.latency[gates::bucket_of(took)].fetch_add(1, Ordering::Relaxed);
        }
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn window(&self) -> Window {
        let latency = Histogram::from_counts(std::array::from_fn(|i| {
            self.latency[i].load(Ordering::Relaxed)
        }));
        let errors = self.errors.load(Ordering::Relaxed);
        // Read last, and written last: never fewer requests than errors.
        let requests = self.requests.load(Ordering::Relaxed).max(errors);
        Window {
            requests,
            errors,
            latency,
        }
    }
}

/// Every proxy's figures per alias fronted and service, shared by the proxies (which count) and
/// the writer (which reads [`Measurements::window`] to judge a step).
#[derive(Debug, Default)]
pub struct Measurements {
    /// The aliases some proxy fronts, sorted.
    fronted: Vec<AliasName>,
    counters: Grow<(AliasName, ServiceName), Arc<ServiceCounters>>,
    /// Per alias in a weighted step, the step (operation id, index) and both versions'
    /// cumulative windows when it was first asked for after it took effect: what a step's
    /// figures count from. Kept here so the writer (which judges) and the API (which shows)
    /// count from the same moment. Counters start at zero with the process, and so does a step
    /// judged across a restart.
    baselines: std::sync::Mutex<HashMap<AliasName, StepBaseline>>,
}

/// A step (operation id, index) and the new and old versions' windows when it was first asked for.
type StepBaseline = ((u64, u32), Window, Window);

impl Measurements {
    /// Measurements for proxies fronting `aliases`.
    pub fn new(aliases: impl IntoIterator<Item = AliasName>) -> Self {
        let mut fronted: Vec<AliasName> = aliases.into_iter().collect();
        fronted.sort();
        fronted.dedup();
        Self {
            fronted,
            counters: Grow::default(),
            baselines: std::sync::Mutex::default(),
        }
    }

    /// The figures of `new` and `old` behind the proxies of `alias` since step `step` (an
    /// operation id and a step index) was first asked for; `None` when no proxy fronts the
    /// alias. The first call for a step takes its baseline (and forgets the alias's earlier
    /// step), so call it only once the step is in effect.
    pub fn since_step(
        &self,
        alias: &AliasName,
        step: (u64, u32),
        new: &[ServiceName],
        old: &[ServiceName],
    ) -> Option<(Window, Window)> {
        if !self.fronts(alias) {
            return None;
        }
        let (new_now, old_now) = (self.window(alias, new), self.window(alias, old));
        let mut baselines = self
            .baselines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match baselines.get(alias) {
            Some((seen, new_base, old_base)) if *seen == step => {
                Some((new_now.minus(new_base), old_now.minus(old_base)))
            }
            _ => {
                baselines.insert(alias.clone(), (step, new_now, old_now));
                Some((Window::default(), Window::default()))
            }
        }
    }

    /// Whether a proxy fronts `alias` (else nothing is ever measured of it).
    pub fn fronts(&self, alias: &AliasName) -> bool {
        self.fronted.binary_search(alias).is_ok()
    }

    /// The cumulative figures of `services` behind the proxies of `alias`, summed: the writer
    /// keeps the window taken when a step took effect and subtracts it ([`Window::minus`]).
    pub fn window(&self, alias: &AliasName, services: &[ServiceName]) -> Window {
        let map = self.counters.snapshot();
        let mut window = Window::default();
        for service in services {
            if let Some(c) = map.get(&(alias.clone(), service.clone())) {
                window.add(&c.window());
            }
        }
        window
    }

    /// The counters of `service` behind the proxies of `alias`, made on first use.
    pub(super) fn counters(
        &self,
        alias: &AliasName,
        service: &ServiceName,
    ) -> Arc<ServiceCounters> {
        let key = (alias.clone(), service.clone());
        self.counters.get_or_insert(&key, Arc::default)
    }

    /// Forgets the counters of the services `keep` says no to (gone from the registry), so
    /// versions that come and go do not grow the map without end.
    pub(super) fn retain(&self, keep: impl Fn(&ServiceName) -> bool) {
        self.counters.retain(|(_, service), _| keep(service));
    }

    /// Appends the counters in the Prometheus text format; services never sent anything are
    /// left out.
    pub fn render_prometheus(&self, out: &mut String) {
        let map = self.counters.snapshot();
        let mut seen: Vec<(String, Window)> = map
            .iter()
            .map(|((alias, service), c)| {
                let labels = format!(
                    "alias=\"{}\",service=\"{}\"",
                    escape(&alias.to_string()),
                    escape(service.as_str())
                );
                (labels, c.window())
            })
            .filter(|(_, w)| w.requests > 0)
            .collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let families: [Counter; 2] = [
            (
                "aliasd_proxy_service_requests_total",
                "Requests sent to a service's members (HTTP) or connections opened to them (TCP) behind the proxies of an alias, failed connects included.",
                |w| w.requests,
            ),
            (
                "aliasd_proxy_service_errors_total",
                "Of those, failed connects, requests not answered or broken off, and 5xx answers.",
                |w| w.errors,
            ),
        ];
        for (name, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, w) in &seen {
                let _ = writeln!(out, "{name}{{{labels}}} {}", value(w));
            }
        }
        let name = "aliasd_proxy_service_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP: time from sending a request to a service's member to its answer's head. TCP: time to connect."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (labels, w) in &seen {
            let mut cumulative = 0;
            for (i, count) in w.latency.counts().iter().enumerate() {
                cumulative += count;
                let le = UPPER_BOUNDS_US
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |us| (*us as f64 / 1e6).to_string());
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
        }
    }
}

/// A counter family of one number per window: name, help, and how to read the number.
type Counter = (&'static str, &'static str, fn(&Window) -> u64);

/// One proxy's map from the alias's endpoints to their service's counters, for one published
/// snapshot.
#[derive(Debug, Default)]
pub(super) struct ServiceMap {
    by_endpoint: HashMap<Endpoint, Arc<ServiceCounters>>,
}

impl ServiceMap {
    /// The map for `snapshot`: every endpoint of the services `alias` answers with, then of
    /// those it drains (an endpoint listed by two goes with the first).
    pub(super) fn build(
        measurements: &Measurements,
        alias: &AliasName,
        snapshot: &Snapshot,
    ) -> Self {
        let mut by_endpoint = HashMap::new();
        if let Some(view) = snapshot.aliases.get(alias) {
            let draining = crate::state::draining(&view.state);
            for service in view.answering.iter().chain(&draining) {
                let Some(found) = snapshot.topology.services.get(service) else {
                    continue;
                };
                let counters = measurements.counters(alias, service);
                for endpoint in found.addrs() {
                    by_endpoint
                        .entry(endpoint)
                        .or_insert_with(|| counters.clone());
                }
            }
        }
        Self { by_endpoint }
    }

    /// The counters of the service `endpoint` belongs to.
    pub(super) fn of(&self, endpoint: &Endpoint) -> Option<Arc<ServiceCounters>> {
        self.by_endpoint.get(endpoint).cloned()
    }
}
