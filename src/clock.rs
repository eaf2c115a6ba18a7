//! The wall clock, read in one place. Pure code takes the time as a parameter instead.

use std::time::{SystemTime, UNIX_EPOCH};

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
