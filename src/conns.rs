//! Client connections of a listener: how busy each one is, and a cap on how many are open where
//! idle ones make room for new ones.
//!
//! Every TCP listener of aliasd (the API, DNS over TCP, the HTTP proxy) admits each accepted
//! connection through its [`Slots`] before serving it. Below the cap a connection is admitted at
//! once. At the cap, the oldest *idle* connection (nothing in flight: a keep-alive connection
//! between requests, or one that has not finished sending its first request) is told to close
//! and the new one takes its place, as nginx reuses keep-alive connections; only when every
//! connection is busy does the new one wait, and the listener with it (the kernel's backlog holds
//! the rest). So idle and slow clients can hold slots, but never keep a working client out.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// When a client connection last moved bytes, and how many requests it has open: it is idle
/// when nothing is open, and idle *for* a time when nothing moved for that long either.
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
    /// A connection that is never idle again (a TCP-mode proxy connection is a member
    /// connection from its first moment; an HTTP one that became a tunnel is one from then).
    pinned: AtomicBool,
    /// Set once admitted: whom to tell when it goes idle while new connections wait.
    wake: OnceLock<Arc<Wake>>,
}

/// New connections waiting at the cap, and how to wake them.
#[derive(Default)]
struct Wake {
    waiting: AtomicUsize,
    notify: Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Self::build(false)
    }

    /// An activity that never counts as idle for [`Slots`]: the connection keeps its slot until
    /// it closes.
    pub fn pinned() -> Arc<Self> {
        Self::build(true)
    }

    fn build(pinned: bool) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            pinned: AtomicBool::new(pinned),
            wake: OnceLock::new(),
        })
    }

    pub fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Marks a request open until the guard drops.
    pub fn begin(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.clone())
    }

    /// From now on the connection is never idle for [`Slots`] (its idle timeout still runs).
    pub fn pin(&self) {
        self.pinned.store(true, Ordering::Release);
    }

    /// Nothing is in flight on it.
    pub fn is_idle(&self) -> bool {
        !self.pinned.load(Ordering::Acquire) && self.busy.load(Ordering::Acquire) == 0
    }

    /// Completes once the connection has been idle for `limit`.
    pub async fn idle(&self, limit: Duration) {
        loop {
            let now = self.epoch.elapsed();
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let wait = if self.busy.load(Ordering::Acquire) > 0 {
                limit
            } else if now >= last + limit {
                return;
            } else {
                last + limit - now
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// An open request on a client connection.
pub struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touch();
        let was = self.0.busy.fetch_sub(1, Ordering::AcqRel);
        if was == 1
            && let Some(wake) = self.0.wake.get()
            && wake.waiting.load(Ordering::Acquire) > 0
        {
            wake.notify.notify_one();
        }
    }
}

/// A stream that records its activity: every read or write that moved bytes.
pub struct Metered<S> {
    pub inner: S,
    pub activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The connection cap of one listener (shared by all its accept loops).
pub struct Slots {
    max: usize,
    state: Mutex<Open>,
    wake: Arc<Wake>,
    evictions: AtomicU64,
}

#[derive(Default)]
struct Open {
    next: u64,
    /// Every admitted connection by admission order, so the first idle one is the oldest.
    conns: BTreeMap<u64, Entry>,
    /// Of `conns`, those not told to close: what the cap counts.
    counted: usize,
}

struct Entry {
    activity: Arc<Activity>,
    close: CancellationToken,
}

impl Slots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            state: Mutex::default(),
            wake: Arc::default(),
            evictions: AtomicU64::new(0),
        })
    }

    /// Connections admitted and not told to close.
    pub fn open(&self) -> usize {
        self.lock().counted
    }

    /// Idle connections closed so far to make room for new ones.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection whose work `activity` tracks: at once below the cap; at the cap
    /// by closing the oldest idle connection; otherwise once a connection ends or goes idle.
    pub async fn admit(self: &Arc<Self>, activity: Arc<Activity>) -> Slot {
        let _ = activity.wake.set(self.wake.clone());
        if let Some(slot) = self.try_admit(&activity) {
            return slot;
        }
        self.wake.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.wake);
        loop {
            let freed = self.wake.notify.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.try_admit(&activity) {
                return slot;
            }
            freed.await;
        }
    }

    fn try_admit(self: &Arc<Self>, activity: &Arc<Activity>) -> Option<Slot> {
        let mut open = self.lock();
        if open.counted >= self.max {
            let victim = open
                .conns
                .values()
                .find(|e| !e.close.is_cancelled() && e.activity.is_idle())?;
            victim.close.cancel();
            open.counted -= 1;
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        let id = open.next;
        open.next += 1;
        let close = CancellationToken::new();
        open.conns.insert(
            id,
            Entry {
                activity: activity.clone(),
                close: close.clone(),
            },
        );
        open.counted += 1;
        Some(Slot {
            slots: self.clone(),
            id,
            close,
        })
    }
}

/// Counts a waiter in [`Wake::waiting`] while it waits (also when its future is dropped).
struct Waiting<'a>(&'a Wake);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted connection with its place under the cap.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub activity: Arc<Activity>,
    pub slot: Slot,
}

/// The next connection of `listener` admitted under `slots` (with a [`pinned`](Activity::pinned)
/// activity when `pinned`), or `None` once `shutdown` is cancelled. A failed accept (out of file
/// descriptors, say) is logged as `what`'s and retried after a pause rather than spun on.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Slots>,
    pinned: bool,
    shutdown: &CancellationToken,
    what: &str,
) -> Option<Accepted> {
    let (stream, peer) = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => break a,
                Err(error) => {
                    tracing::warn!(%error, listener = what, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = shutdown.cancelled() => return None,
        }
    };
    let activity = if pinned {
        Activity::pinned()
    } else {
        Activity::new()
    };
    // At the cap an idle connection makes room, or this one waits (and those behind it in the
    // kernel's backlog) until a connection ends or goes idle.
    let slot = tokio::select! {
        slot = slots.admit(activity.clone()) => slot,
        () = shutdown.cancelled() => return None,
    };
    // Its idle time counts from now: a connection that waited for its slot has not been idle.
    activity.touch();
    Some(Accepted {
        stream,
        peer,
        activity,
        slot,
    })
}

/// Accepts on `listener` as [`accept`] does until `shutdown`, and serves each connection with
/// the future `serve` makes of it, in a task of its own. Returns, once the listener is closed,
/// the connections still open, for the caller to wait for or cut short as its shutdown asks.
pub async fn accept_all<F, Fut>(
    listener: TcpListener,
    slots: &Arc<Slots>,
    pinned: bool,
    shutdown: &CancellationToken,
    what: &str,
    mut serve: F,
) -> JoinSet<()>
where
    F: FnMut(Accepted) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    while let Some(accepted) = accept(&listener, slots, pinned, shutdown, what).await {
        // Forget the connections that have ended, so the set holds only the open ones.
        while conns.try_join_next().is_some() {}
        conns.spawn(serve(accepted));
    }
    drop(listener);
    conns
}

/// The pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A connection's place under its listener's cap, given back when it drops.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    close: CancellationToken,
}

impl Slot {
    /// Completes when the connection must close to make room for a new one. It was idle when
    /// told; whatever started since may finish (HTTP closes after it).
    pub fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.close.cancelled()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        if let Some(entry) = open.conns.remove(&self.id)
            && !entry.close.is_cancelled()
        {
            open.counted -= 1;
        }
        drop(open);
        if self.slots.wake.waiting.load(Ordering::Acquire) > 0 {
            self.slots.wake.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_or_never<F: std::future::Future>(f: F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let slots = Slots::new(2);
        let (a, b, c) = (Activity::new(), Activity::new(), Activity::new());
        let busy_a = a.begin();
        let slot_a = now_or_never(slots.admit(a.clone())).expect("below the cap");
        let slot_b = now_or_never(slots.admit(b.clone())).expect("below the cap");
        // At the cap: a is busy, so b (idle) is told to close and c takes its place.
        let slot_c = now_or_never(slots.admit(c.clone())).expect("b was idle");
        assert!(
            now_or_never(slot_b.evicted()).is_some(),
            "b was told to close"
        );
        assert!(now_or_never(slot_a.evicted()).is_none(), "a was busy");
        assert_eq!(slots.open(), 2);
        assert_eq!(slots.evictions(), 1);
        // b closing gives back nothing more: it was already uncounted.
        drop(slot_b);
        assert_eq!(slots.open(), 2);
        // Everyone busy: a new connection waits until one ends.
        let _busy_c = c.begin();
        let d = Activity::new();
        let mut waiting = Box::pin(slots.admit(d));
        assert!(
            now_or_never(waiting.as_mut()).is_none(),
            "all busy: it waits"
        );
        drop(busy_a);
        // a is idle now, so the waiter can take its place.
        assert!(now_or_never(waiting.as_mut()).is_some(), "a went idle");
        assert!(now_or_never(slot_a.evicted()).is_some());
        drop(slot_c);
    }

    #[test]
    fn a_pinned_connection_is_never_taken() {
        let slots = Slots::new(1);
        let pinned = Activity::pinned();
        let slot = now_or_never(slots.admit(pinned)).expect("below the cap");
        let mut waiting = Box::pin(slots.admit(Activity::new()));
        assert!(now_or_never(waiting.as_mut()).is_none());
        drop(slot);
        assert!(now_or_never(waiting.as_mut()).is_some(), "a slot was freed");
    }
}
