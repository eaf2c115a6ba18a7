//! NOTIFY (RFC 1996) to the secondaries of each zone on every serial change, and what serial
//! each secondary serves, read from it over DNS.
//!
//! One task per secondary, each with its own socket, so a dead secondary slows no other. A task
//! follows the serial its zone should have ([`watch`]: a burst of changes is one NOTIFY, for
//! the last serial) and sends NOTIFY over UDP until the secondary acknowledges it, backing off
//! from 250 ms to 30 s, starting over at once when a newer serial supersedes the one it is
//! telling. After each acknowledgement, and every [`POLL_EVERY`] besides, it asks the secondary
//! for the zone's SOA and records the serial it serves ([`SecondaryState`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::xfr::{Transfers, serial_lt, sign, verify_response};
use crate::clock::now_ms;
use crate::config::{Secondary, TsigKey};
use crate::controller::SourceUpdate;
use crate::snapshot::SharedSnapshot;

/// How long one NOTIFY or SOA query waits for its answer.
const ANSWER_WITHIN: Duration = Duration::from_millis(1_000);
/// The first retry of an unacknowledged NOTIFY, doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a secondary's serial is read when nothing changes.
pub const POLL_EVERY: Duration = Duration::from_secs(5);
/// After a NOTIFY, the serial is read this often until the secondary serves it.
const CATCH_UP_POLL: Duration = Duration::from_millis(50);

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
    fn want(&self, zone: usize, serial: u32, now: u64) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for s in all.iter_mut().filter(|s| s.zone_index == zone) {
            if s.wanted != serial {
                s.wanted = serial;
                s.wanted_since_ms = now;
            }
        }
    }

    pub fn all(&self) -> Vec<SecondaryState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes entry `index`; returns it when what it says changed (not only when it was
    /// last asked).
    fn update(&self, index: usize, f: impl FnOnce(&mut SecondaryState)) -> Option<SecondaryState> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let s = all.get_mut(index)?;
        let before = (s.serial, s.caught_up(), s.error.clone(), s.notified);
        f(s);
        let after = (s.serial, s.caught_up(), s.error.clone(), s.notified);
        (before != after).then(|| s.clone())
    }
}

impl crate::api::MetricsSource for Secondaries {
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

/// Starts the NOTIFY tasks of every zone's secondaries, which keep `secondaries` up to date
/// and tell the writer (`writer`) when what one says changes; the writer sends the event.
pub fn spawn(
    transfers: Arc<Transfers>,
    snapshots: SharedSnapshot,
    mut published: watch::Receiver<u64>,
    secondaries: &Arc<Secondaries>,
    writer: &mpsc::Sender<SourceUpdate>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let first = snapshots.load_full();
    let now = now_ms();
    // Per zone, the serial its secondaries should have.
    let mut wanted: Vec<watch::Sender<u32>> = Vec::new();
    for (index, (origin, settings)) in transfers.zones().iter().enumerate() {
        let serial = first.zones.get(index).map_or(0, |z| z.serial);
        let (tx, _) = watch::channel(serial);
        for secondary in &settings.secondaries {
            let slot = {
                let mut all = secondaries.0.lock().unwrap_or_else(|p| p.into_inner());
                all.push(SecondaryState {
                    zone: origin.to_string(),
                    zone_index: index,
                    address: secondary.address,
                    serial: None,
                    serial_at_ms: None,
                    serial_since_ms: None,
                    wanted: serial,
                    wanted_since_ms: now,
                    notified: None,
                    error: None,
                });
                all.len() - 1
            };
            let key = secondary
                .tsig_key
                .as_ref()
                .and_then(|k| transfers.key(k))
                .cloned();
            tasks.spawn(follow(
                Follower {
                    origin: Name::from(origin.clone()),
                    secondary: secondary.clone(),
                    key,
                    slot,
                    secondaries: secondaries.clone(),
                    snapshots: snapshots.clone(),
                    zone: index,
                    writer: writer.clone(),
                },
                tx.subscribe(),
                shutdown.clone(),
            ));
        }
        wanted.push(tx);
    }
    transfers.remember(&first);
    let (shutdown, secondaries) = (shutdown.clone(), secondaries.clone());
    tasks.spawn(async move {
        loop {
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
            let snapshot = snapshots.load_full();
            transfers.remember(&snapshot);
            let now = now_ms();
            for (index, (zone, tx)) in snapshot.zones.iter().zip(&wanted).enumerate() {
                let changed = tx.send_if_modified(|serial| {
                    let changed = *serial != zone.serial;
                    *serial = zone.serial;
                    changed
                });
                if changed {
                    secondaries.want(index, zone.serial, now);
                }
            }
        }
    });
}

/// One secondary's task and what it needs.
struct Follower {
    origin: Name,
    secondary: Secondary,
    key: Option<TsigKey>,
    slot: usize,
    secondaries: Arc<Secondaries>,
    snapshots: SharedSnapshot,
    zone: usize,
    writer: mpsc::Sender<SourceUpdate>,
}

async fn follow(f: Follower, mut wanted: watch::Receiver<u32>, shutdown: CancellationToken) {
    let bind: SocketAddr = if f.secondary.address.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let socket = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(error) => {
            warn!(secondary = %f.secondary.address, %error, "cannot open a socket for NOTIFY");
            return;
        }
    };
    // The serial told and acknowledged last.
    let mut told: Option<u32> = None;
    loop {
        let serial = *wanted.borrow_and_update();
        if f.secondary.notify && told != Some(serial) {
            let mut backoff = FIRST_BACKOFF;
            loop {
                // A newer serial supersedes this one at once, even while its answer is awaited.
                let answered = tokio::select! {
                    answered = f.notify(&socket, serial) => answered,
                    changed = wanted.changed() => {
                        if changed.is_err() { return }
                        break;
                    }
                    () = shutdown.cancelled() => return,
                };
                match answered {
                    Ok(()) => {
                        told = Some(serial);
                        f.record(|s| {
                            s.notified = Some(serial);
                            s.error = None;
                        })
                        .await;
                        break;
                    }
                    Err(error) => {
                        debug!(secondary = %f.secondary.address, serial, error, "NOTIFY not acknowledged; retrying");
                        f.record(|s| s.error = Some(format!("NOTIFY: {error}")))
                            .await;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    changed = wanted.changed() => {
                        if changed.is_err() { return }
                        break;
                    }
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            if *wanted.borrow() != serial {
                // Superseded while being told: tell the newer one.
                continue;
            }
        }
        // Read what it serves: quickly until it has the serial, then now and then.
        let caught_up = tokio::select! {
            caught_up = f.poll(&socket) => caught_up,
            changed = wanted.changed() => {
                if changed.is_err() { return }
                continue;
            }
            () = shutdown.cancelled() => return,
        };
        let wait = if caught_up { POLL_EVERY } else { CATCH_UP_POLL };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = wanted.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

impl Follower {
    /// Changes what is known of this secondary, and tells the writer when that says
    /// something new.
    async fn record(&self, f: impl FnOnce(&mut SecondaryState)) {
        if let Some(state) = self.secondaries.update(self.slot, f) {
            // The writer gone means aliasd is stopping: there is no one left to tell.
            let _ = self.writer.send(SourceUpdate::Secondary(state)).await;
        }
    }

    /// Sends one NOTIFY for `serial` and waits for its acknowledgement.
    async fn notify(&self, socket: &UdpSocket, serial: u32) -> Result<(), String> {
        let id: u16 = rand_id();
        let mut m = Message::new(id, MessageType::Query, OpCode::Notify);
        m.metadata.authoritative = true;
        let mut q = Query::query(self.origin.clone(), RecordType::SOA);
        q.set_query_class(DNSClass::IN);
        m.add_query(q);
        let snapshot = self.snapshots.load_full();
        if let Some(soa) = snapshot
            .zones
            .get(self.zone)
            .and_then(|z| z.soa().records_without_rrsigs().next().cloned())
            && matches!(&soa.data, RData::SOA(s) if s.serial == serial)
        {
            m.add_answer(soa);
        }
        let answer = self.exchange(socket, m).await?;
        match answer.metadata.response_code {
            ResponseCode::NoError => {
                info!(secondary = %self.secondary.address, zone = %self.origin, serial, "NOTIFY acknowledged");
                Ok(())
            }
            code => Err(format!("answered {code}")),
        }
    }

    /// Reads the serial the secondary serves; says whether it is the one it should have.
    async fn poll(&self, socket: &UdpSocket) -> bool {
        let m = {
            let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
            m.add_query(Query::query(self.origin.clone(), RecordType::SOA));
            m
        };
        let result = self.exchange(socket, m).await.and_then(|answer| {
            answer
                .answers
                .iter()
                .find_map(|r| match &r.data {
                    RData::SOA(s) if LowerName::from(&r.name) == LowerName::from(&self.origin) => {
                        Some(s.serial)
                    }
                    _ => None,
                })
                .ok_or_else(|| format!("no SOA in the answer ({})", answer.metadata.response_code))
        });
        let mut caught_up = false;
        self.record(|s| match result {
            Ok(serial) => {
                let now = now_ms();
                if s.serial != Some(serial) {
                    s.serial_since_ms = Some(now);
                }
                s.serial = Some(serial);
                s.serial_at_ms = Some(now);
                if s.error.as_deref().is_some_and(|e| e.starts_with("SOA")) {
                    s.error = None;
                }
                caught_up = s.caught_up();
            }
            Err(error) => s.error = Some(format!("SOA query: {error}")),
        })
        .await;
        caught_up
    }

    /// Sends `m` (signed with the secondary's key, if it has one) and waits for its answer.
    async fn exchange(&self, socket: &UdpSocket, m: Message) -> Result<Message, String> {
        let id = m.metadata.id;
        let bytes = m.to_vec().map_err(|e| e.to_string())?;
        let (bytes, mac) = match &self.key {
            Some(key) => {
                let (bytes, mac) = sign(bytes, key, None, true, now_ms() / 1000);
                (bytes, Some(mac))
            }
            None => (bytes, None),
        };
        socket
            .send_to(&bytes, self.secondary.address)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
        loop {
            let (n, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
                .await
                .map_err(|_| "no answer".to_owned())?
                .map_err(|e| e.to_string())?;
            if from != self.secondary.address {
                continue;
            }
            let Ok(answer) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if answer.metadata.id != id || answer.metadata.message_type != MessageType::Response {
                // A late answer to an earlier try.
                continue;
            }
            if let (Some(key), Some(mac)) = (&self.key, &mac)
                && super::xfr::signature_of(&answer).is_some()
                && !verify_response(&buf[..n], key, mac)
            {
                return Err("the answer's TSIG does not verify".to_owned());
            }
            return Ok(answer);
        }
    }
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish() as u16
}
