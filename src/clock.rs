//! The wall clock, read in one place. Pure code takes the time as a parameter instead; the
//! writer reads it through a [`Clock`], so a test can run it in virtual time.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where the writer reads the time (Unix milliseconds) from.
pub trait Clock: Send + Sync + Debug {
    fn now_ms(&self) -> u64;
}

/// A clock shared by the tasks that read it.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wall;

impl Clock for Wall {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// The wall clock as tokio's timer sees it: a start time plus the time tokio says has passed.
/// Under `tokio::time::pause()` time moves only when every task waits on a timer (or the test
/// advances it), so the writer's deadlines and its timers agree while a test runs an hour of
/// promotion in no time.
#[derive(Debug, Clone, Copy)]
pub struct Tokio {
    wall_at_start: u64,
    start: tokio::time::Instant,
}

impl Tokio {
    /// A clock that reads `wall_at_start` now.
    pub fn starting_at(wall_at_start: u64) -> Self {
        Self {
            wall_at_start,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for Tokio {
    fn now_ms(&self) -> u64 {
        let passed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.wall_at_start.saturating_add(passed)
    }
}
