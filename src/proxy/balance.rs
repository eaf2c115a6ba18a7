//! Choosing a member for each request or connection, and passive health.
//!
//! [`pick`] is the power of two choices (Mitzenmacher): draw two eligible members at random and
//! take the one with less work in flight. It spreads load nearly as well as "least loaded"
//! without every request herding onto the same momentarily idle member, and it needs no shared
//! state beyond the in-flight counters. Pure: the loads, the ejections and the random draws come
//! in as arguments, so it is tested without sockets.
//!
//! [`Passive`] counts consecutive connect failures of one member; after [`EJECT_AFTER`] of them
//! the member is ejected (skipped by [`pick`]) until its active health check passes again. The
//! last usable member is never ejected: a proxy that refuses every request because its only
//! member had a bad second is worse than one that keeps trying it.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::model::Endpoint;

/// Consecutive connect failures that eject a member.
pub const EJECT_AFTER: u32 = 3;

/// Picks a member from `active` that is neither draining nor in `exclude`, by the power of two
/// choices on `load`. Members for which `ejected` holds are only picked when no other eligible
/// member is left (the set may have changed since they were ejected, and a member that may
/// work is better than a certain 503). `rand(n)` returns a number in `0..n`.
pub fn pick(
    active: &[Endpoint],
    draining: &[Endpoint],
    exclude: &[Endpoint],
    load: impl Fn(&Endpoint) -> u64,
    ejected: impl Fn(&Endpoint) -> bool,
    rand: &mut dyn FnMut(usize) -> usize,
) -> Option<Endpoint> {
    let index = pick_index(
        active.len(),
        |i| !draining.contains(&active[i]) && !exclude.contains(&active[i]),
        |i| load(&active[i]),
        |i| ejected(&active[i]),
        rand,
    )?;
    Some(active[index])
}

/// [`pick`] over `n` candidates known by index, without allocating: `eligible(i)` says whether
/// candidate `i` may be picked at all, `ejected(i)` whether it is passed over while another
/// eligible one is not.
pub fn pick_index(
    n: usize,
    eligible: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> u64,
    ejected: impl Fn(usize) -> bool,
    rand: &mut dyn FnMut(usize) -> usize,
) -> Option<usize> {
    let (mut eligible_count, mut healthy_count) = (0, 0);
    for i in (0..n).filter(|&i| eligible(i)) {
        eligible_count += 1;
        if !ejected(i) {
            healthy_count += 1;
        }
    }
    let only_healthy = healthy_count > 0;
    let in_pool = |i: usize| eligible(i) && (!only_healthy || !ejected(i));
    let size = if only_healthy {
        healthy_count
    } else {
        eligible_count
    };
    // The `k`th candidate of the pool.
    let nth = |k: usize| (0..n).filter(|&i| in_pool(i)).nth(k);
    match size {
        0 => None,
        1 => nth(0),
        size => {
            let a = rand(size) % size;
            // The second draw skips the first, so the two choices always differ.
            let b = (a + 1 + rand(size - 1) % (size - 1)) % size;
            let (a, b) = (nth(a)?, nth(b)?);
            Some(if load(b) < load(a) { b } else { a })
        }
    }
}

/// A cheap random number in `0..n` (xorshift, seeded per thread): load balancing needs spread,
/// not secrecy.
pub fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64) | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % n.max(1) as u64) as usize
    })
}

/// Passive health of one member: consecutive connect failures and the time it was ejected.
#[derive(Debug, Default)]
pub struct Passive {
    failures: AtomicU32,
    /// Unix milliseconds of the ejection; 0 while the member is not ejected.
    ejected_at_ms: AtomicU64,
}

impl Passive {
    /// Records a failed connect at `now_ms`. Ejects the member (and returns true) when this is
    /// its [`EJECT_AFTER`]th failure in a row and `others_usable` says another active member is
    /// not ejected.
    pub fn failure(&self, now_ms: u64, others_usable: bool) -> bool {
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures < EJECT_AFTER || !others_usable {
            return false;
        }
        self.ejected_at_ms
            .compare_exchange(0, now_ms.max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Records a successful connect: the run of failures is over.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Release);
    }

    /// When the member was ejected, if it is.
    pub fn ejected_since(&self) -> Option<u64> {
        match self.ejected_at_ms.load(Ordering::Acquire) {
            0 => None,
            at => Some(at),
        }
    }

    /// Takes the member back (its health check passed since the ejection).
    pub fn readmit(&self) {
        self.failures.store(0, Ordering::Release);
        self.ejected_at_ms.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
