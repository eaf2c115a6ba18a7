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
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::xfr::{Transfers, sign, verify_response};
use crate::clock::now_ms;
use crate::config::{Secondary, TsigKey};
use crate::secondaries::{Report, Reports, Secondaries, SecondaryState};
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

/// Starts the NOTIFY tasks of every zone's secondaries, which keep `secondaries` up to date
/// and send a [`Report`] to `reports` when what is known of one changes.
pub fn spawn(
    transfers: Arc<Transfers>,
    snapshots: SharedSnapshot,
    mut published: watch::Receiver<u64>,
    secondaries: &Arc<Secondaries>,
    reports: &Reports,
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
            let slot = secondaries.add(SecondaryState {
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
                    reports: reports.clone(),
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
    reports: Reports,
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
                        });

                        break;
                    }
                    Err(error) => {
                        debug!(secondary = %f.secondary.address, serial, error, "NOTIFY not acknowledged; retrying");
                        f.record(|s| s.error = Some(format!("NOTIFY: {error}")));
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
    /// Changes what is known of this secondary, and reports it when that says something new.
    fn record(&self, f: impl FnOnce(&mut SecondaryState)) {
        if let Some(state) = self.secondaries.update(self.slot, f) {
            (self.reports)(Report {
                state,
                at_ms: now_ms(),
            });
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
        });
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
