//! TCP mode: each client connection goes to one active member, chosen by the power of two
//! choices on open connections, and bytes are copied both ways until either side closes.
//!
//! A connection stays with its member for its whole life: a switch only changes where new
//! connections go. Once a member has left the active set for `drain_deadline`, the proxy's
//! watcher cancels the member's token and every connection still open to it is closed, so a
//! drained version does not keep long-lived clients forever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::net::TcpStream;
use tracing::debug;

use super::{Flight, Proxy};
use crate::conns::{Activity, Metered};
use crate::model::Endpoint;

/// Serves one client connection: connect to a member (retrying others), then copy.
pub(super) async fn serve_connection(
    proxy: Arc<Proxy>,
    client: TcpStream,
    peer: SocketAddr,
    activity: Arc<Activity>,
) {
    let choice = proxy.choice_for(peer.ip());
    if choice.active().is_empty() {
        proxy
            .entry
            .local
            .unavailable
            .fetch_add(1, Ordering::Relaxed);
        debug!(proxy = %proxy.addr, %peer, "no active member; closing the connection");
        return;
    }
    let mut failed: Vec<Endpoint> = Vec::new();
    let (member, mut upstream) = loop {
        let Some(member) = proxy.pick(&choice, &failed) else {
            proxy
                .entry
                .local
                .bad_gateway
                .fetch_add(1, Ordering::Relaxed);
            debug!(proxy = %proxy.addr, %peer, "no member could be reached; closing the connection");
            return;
        };
        let started = Instant::now();
        match proxy.connect(&member).await {
            Ok(stream) => {
                let took = started.elapsed();
                member.stats.observe(took);
                if let Some(service) = choice.service_of(&member.endpoint) {
                    service.finished(false, Some(took));
                }
                break (member, stream);
            }
            Err(error) => {
                proxy.connect_failed(&member, &choice, &error);
                failed.push(member.endpoint);
                if failed.len() >= super::MAX_CONNECT_TRIES {
                    proxy
                        .entry
                        .local
                        .bad_gateway
                        .fetch_add(1, Ordering::Relaxed);
                    debug!(proxy = %proxy.addr, %peer, error, "no member could be reached; closing the connection");
                    return;
                }
            }
        }
    };
    let _open = Flight::connection(member.clone());
    let drained = member.watch_drain();
    let _ = client.set_nodelay(true);
    let mut client = Metered {
        inner: client,
        activity: activity.clone(),
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(error) = copied {
                debug!(proxy = %proxy.addr, %peer, member = %member.endpoint, %error, "connection ended with an error");
            }
        }
        () = drained.cancelled() => {
            debug!(proxy = %proxy.addr, %peer, member = %member.endpoint, "closing: the member left the answers");
        }
        () = activity.idle(proxy.config.idle_timeout) => {
            debug!(proxy = %proxy.addr, %peer, member = %member.endpoint, "closing an idle connection");
        }
    }
}
