//! What each zone's secondaries serve: the state the NOTIFY tasks (`dns::notify`) keep up to
//! date by asking them, read by the API and the metrics; and the reports of its changes the
//! NOTIFY tasks send on (the daemon forwards them to the writer, whose drains wait for them).
//!
//! A module of its own, below both DNS and the writer, so neither imports the other for it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::clock::now_ms;
use crate::metrics::MetricsSource;
use crate::serial::serial_lt;

/// Where a zone's secondaries stand on the change that took the old version out of the
/// answers (the serial its drain began with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caught {
    /// Every secondary serves that change (or a later one), all of them since this moment
    /// (ms since the epoch); 0 when the zone has no secondaries.
    Since(u64),
    /// Some secondary does not serve it yet.
    Waiting,
}

/// A change in what aliasd knows of one secondary (its serial, whether it caught up, its last
/// error or NOTIFY), and when it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub state: SecondaryState,
    pub at_ms: u64,
}

/// Where the NOTIFY tasks send their [`Report`]s; the daemon decides where they go (today the
/// writer's event stream), so DNS depends on nothing above it.
pub type Reports = Arc<dyn Fn(Report) + Send + Sync>;

/// What aliasd knows of one secondary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondaryState {
    pub zone: String,
    /// The zone's index in the config (and the snapshot).
    pub zone_index: usize,
    pub address: SocketAddr,
    /// The serial it served when last asked, and when that was (ms since the epoch).
    pub serial: Option<u32>,
    pub serial_at_ms: Option<u64>,
    /// When it was first seen serving `serial`.
    pub serial_since_ms: Option<u64>,
    /// The serial it should have, and since when (ms since the epoch).
    pub wanted: u32,
    pub wanted_since_ms: u64,
    /// The last serial it acknowledged a NOTIFY for.
    pub notified: Option<u32>,
    /// Why the last NOTIFY or SOA query failed, if it did.
    pub error: Option<String>,
}

impl SecondaryState {
    /// Whether it serves the serial it should.
    pub fn caught_up(&self) -> bool {
        self.serial
            .is_some_and(|s| s == self.wanted || serial_lt(self.wanted, s))
    }
}

/// Every secondary's state, shared with the API and the metrics.
#[derive(Debug, Default)]
pub struct Secondaries(Mutex<Vec<SecondaryState>>);

impl Secondaries {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Zone `zone`'s secondaries should serve `serial` from `now` on.
    pub fn want(&self, zone: usize, serial: u32, now: u64) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for s in all.iter_mut().filter(|s| s.zone_index == zone) {
            if s.wanted != serial {
                s.wanted = serial;
                s.wanted_since_ms = now;
            }
        }
    }

    /// Adds a secondary to follow; returns its index, for [`Secondaries::update`].
    pub fn add(&self, state: SecondaryState) -> usize {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.push(state);
        all.len() - 1
    }

    pub fn all(&self) -> Vec<SecondaryState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes entry `index`; returns it when what it says changed (not only when it was
    /// last asked).
    pub fn update(
        &self,
        index: usize,
        f: impl FnOnce(&mut SecondaryState),
    ) -> Option<SecondaryState> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let s = all.get_mut(index)?;
        let before = (s.serial, s.caught_up(), s.error.clone(), s.notified);
        f(s);
        let after = (s.serial, s.caught_up(), s.error.clone(), s.notified);
        (before != after).then(|| s.clone())
    }
}

impl MetricsSource for Secondaries {
    fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let all = self.all();
        if all.is_empty() {
            return;
        }
        let now = now_ms();
        let _ = writeln!(
            out,
            "# HELP aliasd_secondary_serial The zone serial each secondary served when last asked."
        );
        let _ = writeln!(out, "# TYPE aliasd_secondary_serial gauge");
        for s in &all {
            if let Some(serial) = s.serial {
                let _ = writeln!(
                    out,
                    "aliasd_secondary_serial{{zone=\"{}\",secondary=\"{}\"}} {serial}",
                    s.zone, s.address
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP aliasd_secondary_behind_seconds How long each secondary has not served the zone's serial (0: caught up)."
        );
        let _ = writeln!(out, "# TYPE aliasd_secondary_behind_seconds gauge");
        for s in &all {
            let behind = if s.caught_up() {
                0.0
            } else {
                now.saturating_sub(s.wanted_since_ms) as f64 / 1000.0
            };
            let _ = writeln!(
                out,
                "aliasd_secondary_behind_seconds{{zone=\"{}\",secondary=\"{}\"}} {behind:.3}",
                s.zone, s.address
            );
        }
    }
}
