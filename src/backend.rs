//! A tiny HTTP backend that answers with its own name: the versioned services of the demo, and
//! the backends that tests point aliases at.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Binds `addr` and answers every request with `name` (body and `x-backend` header) until
/// `shutdown`. Returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    name: &str,
    shutdown: CancellationToken,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        debug!(%error, "backend accept failed");
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("x-backend", name)
                        .header("content-type", "text/plain")
                        .body(Full::new(Bytes::from(format!("{name}\n"))))
                        .expect("static response"),
                )
            });
            let conn_shutdown = shutdown.clone();
            tokio::spawn(async move {
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = conn_shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    });
    Ok(bound)
}
