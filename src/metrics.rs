//! What `GET /metrics` appends after its own lines: any part of aliasd that keeps counters
//! writes them in the Prometheus text format (version 0.0.4) through [`MetricsSource`].
//!
//! Below every module that has metrics to show (the front proxies, the secondaries' state), so
//! they implement it without depending on the API that serves them.

/// Something that writes Prometheus text-format metrics.
pub trait MetricsSource: Send + Sync {
    fn render_prometheus(&self, out: &mut String);
}
