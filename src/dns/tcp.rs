//! DNS over TCP (RFC 7766): aliasd's own accept loop, with the limits every aliasd listener has.
//! Each connection is read one message at a time (two length bytes, then the message) and each
//! query is answered by the full path ([`super::slow`], hickory's `Catalog`, up to 64 KiB) in
//! order. A connection must bring its next whole query within `dns.tcp_idle_timeout` of the last
//! answer (or of connecting), so a query that trickles in byte by byte is cut off like an idle
//! connection; at `dns.tcp_max_connections` the oldest connection with no query in flight is
//! closed to make room ([`crate::conns`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use hickory_server::zone_handler::Catalog;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::xfr::Transfers;
use crate::conns::{Accepted, Activity, Metered, Slot, Slots, accept_all};
use crate::snapshot::SharedSnapshot;

/// The limits of one DNS-over-TCP listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// What answers on a DNS-over-TCP connection: zone transfers first, then the `Catalog`.
pub struct Answerers {
    pub catalog: Arc<Catalog>,
    pub snapshots: SharedSnapshot,
    pub transfers: Arc<Transfers>,
}

/// Serves `listener` until `shutdown`, then lets each connection finish the query it is on.
pub async fn serve(
    listener: TcpListener,
    answerers: Arc<Answerers>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Slots::new(limits.max_connections);
    let serve = |a: Accepted| {
        let (answerers, shutdown) = (answerers.clone(), shutdown.clone());
        async move {
            let (peer, activity, slot) = (a.peer, a.activity, a.slot);
            let stream = Metered {
                inner: a.stream,
                activity: activity.clone(),
            };
            let why = connection(
                stream, peer, &answerers, &activity, &slot, limits, &shutdown,
            )
            .await;
            debug!(%peer, why, "dns tcp connection closed");
        }
    };
    let mut conns = accept_all(listener, &slots, false, &shutdown, "dns tcp", serve).await;
    while conns.join_next().await.is_some() {}
}

/// Answers queries on one connection until it closes; says why it ended.
async fn connection(
    mut stream: Metered<TcpStream>,
    peer: SocketAddr,
    answerers: &Answerers,
    activity: &Arc<Activity>,
    slot: &Slot,
    limits: Limits,
    shutdown: &CancellationToken,
) -> &'static str {
    let _ = stream.inner.set_nodelay(true);
    let mut message = Vec::new();
    loop {
        let read = async {
            let len = stream.read_u16().await?;
            message.resize(usize::from(len), 0);
            stream.read_exact(&mut message).await?;
            Ok::<_, std::io::Error>(())
        };
        tokio::select! {
            read = tokio::time::timeout(limits.idle_timeout, read) => match read {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return "closed by the client",
                Err(_) => return "no whole query within the idle timeout",
            },
            () = slot.evicted() => return "closed to make room",
            () = shutdown.cancelled() => return "shutting down",
        }
        let busy = activity.begin();
        let snapshot = answerers.snapshots.load_full();
        let answers = match answerers.transfers.answer(&snapshot, &message, peer) {
            Some(messages) => messages,
            None => {
                let catalog = &answerers.catalog;
                match super::slow::respond_over(catalog, &message, peer, Protocol::Tcp).await {
                    Some(answer) => vec![answer],
                    // Too short for a header, or a response: nothing to answer, as over UDP.
                    None => continue,
                }
            }
        };
        let mut framed = Vec::with_capacity(answers.iter().map(|a| 2 + a.len()).sum());
        for answer in &answers {
            let Ok(len) = u16::try_from(answer.len()) else {
                return "answer too large";
            };
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(answer);
        }
        let write = async {
            stream.write_all(&framed).await?;
            stream.flush().await
        };
        match tokio::time::timeout(limits.idle_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return "closed by the client",
            Err(_) => return "the client did not read its answer within the idle timeout",
        }
        drop(busy);
    }
}
