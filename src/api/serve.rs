//! The API's listener: its own accept loop instead of `axum::serve`, so it has the limits every
//! aliasd listener has (`[api] max_connections`, `header_timeout`, `idle_timeout`): a request
//! head that trickles in is cut off, an idle connection is closed, and at the cap the oldest idle
//! connection makes room for a new one ([`crate::conns`]), so slow and idle clients cannot keep
//! an operator's `aliasctl` out.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hyper::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::debug;

use crate::config::ApiConfig;
use crate::conns::{Accepted, Activity, BusyGuard, Metered, Slot, Slots, accept_all};

/// The limits of the API listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
}

impl From<&ApiConfig> for Limits {
    fn from(config: &ApiConfig) -> Self {
        Self {
            max_connections: config.max_connections,
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
        }
    }
}

/// Serves `app` on `listener` until `shutdown`; then each connection finishes its requests
/// (the events stream ends by itself when aliasd stops).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Slots::new(limits.max_connections);
    let serve = |a: Accepted| {
        let (app, shutdown) = (app.clone(), shutdown.clone());
        async move {
            connection(a.stream, app, a.activity, a.slot, limits, shutdown).await;
            debug!(peer = %a.peer, "api connection closed");
        }
    };
    let mut conns = accept_all(listener, &slots, false, &shutdown, "api", serve).await;
    while conns.join_next().await.is_some() {}
}

async fn connection(
    stream: TcpStream,
    app: Router,
    activity: Arc<Activity>,
    slot: Slot,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Metered {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            // Busy from the request until its response body has been sent.
            let busy = activity.begin();
            let app = app.clone();
            async move {
                let response = app.oneshot(req.map(Body::new)).await;
                let response = match response {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| Body::new(Held { body, _busy: busy })))
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                debug!(%error, "api connection ended with an error");
            }
            return;
        }
        () = shutdown.cancelled() => {}
        () = activity.idle(limits.idle_timeout) => {}
        () = slot.evicted() => {
            if activity.is_idle() {
                return;
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    if let Err(error) = conn.await {
        debug!(%error, "api connection ended with an error");
    }
}

/// A response body that keeps its connection busy until it has been sent.
struct Held {
    body: Body,
    _busy: BusyGuard,
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
