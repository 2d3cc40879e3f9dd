//! Accepting connections: HTTP/1.1 and HTTP/2 on hyper, a deadline for each request's
//! headers (a client that trickles them in cannot hold a connection open), and a stop in two
//! steps: stop accepting, then let the open connections finish.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// Connections still open after the listener stopped.
pub(crate) struct Draining(GracefulShutdown);

impl Draining {
    /// Waits for the open connections to finish their requests; false if some were still
    /// open after `within` (they are dropped).
    pub(crate) async fn finish(self, within: Duration) -> bool {
        tokio::time::timeout(within, self.0.shutdown())
            .await
            .is_ok()
    }
}

/// Serves `router` on `listener` until `stop` resolves.
pub(crate) async fn accept_until(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> Draining {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors, most likely: give the open ones time to close.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    Draining(graceful)
}
