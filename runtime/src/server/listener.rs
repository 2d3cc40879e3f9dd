//! Accepting connections: HTTP/1.1 and HTTP/2 on hyper, a cap on open connections, a
//! deadline for every connection to start a request, and a stop in two steps: the open
//! connections take no new requests and finish theirs, while the listener still answers
//! new connections one request each (so `/readyz` is seen to answer 503); then it closes.
//!
//! The deadline (`header_timeout`) runs whenever a connection has no request in flight:
//! from the accept, through protocol detection, the HTTP/2 preface, SETTINGS and the
//! first request's headers, and again after each response is done. A connection that says
//! nothing, or too little, in time is shut down gracefully (HTTP/2 `GOAWAY`) and dropped
//! soon after. A request counts until its response body ends, so event streams and slow
//! tasks keep their connection. With TLS (a sidecar given a certificate) the handshake is
//! part of the first deadline and holds a connection slot like any connection.

use axum::Router;
use axum::body::Body;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// How long a connection may go without a request in flight (from its accept on).
    pub header_timeout: Duration,
    /// Connections open at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
}

/// Counts for metrics, shared with the app.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    refused: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections closed at once because `max_connections` were open.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Connections still open when the server began to stop. The listener stays open meanwhile,
/// so health checks (`/readyz` answering 503) reach the server until they are done.
pub(crate) struct Draining {
    slots: Arc<Semaphore>,
    max: u32,
    /// Drops every connection still open.
    force: CancellationToken,
    /// Accepts one-request connections while the others drain.
    acceptor: tokio::task::JoinHandle<()>,
}

impl Draining {
    /// Waits for the open connections to finish their requests; false if some were still
    /// open after `within` (they are dropped). The listener closes then.
    pub(crate) async fn finish(self, within: Duration) -> bool {
        // Every slot free again: every connection is gone.
        let all_closed = self.slots.acquire_many(self.max);
        let finished = tokio::time::timeout(within, all_closed).await.is_ok();
        self.acceptor.abort();
        self.force.cancel();
        finished
    }
}

/// Connections accepted while the server drains, at most, each for one request.
const DRAIN_CONNECTIONS: usize = 64;

/// While draining: every new connection gets one request (no keep-alive), under its own
/// small cap, so a client polling `/readyz` sees the 503 and the drain is not prolonged.
async fn accept_while_draining(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    force: CancellationToken,
    tls: Option<TlsAcceptor>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false);
    builder.http2().timer(TokioTimer::new());
    let slots = Arc::new(Semaphore::new(DRAIN_CONNECTIONS));
    let stats = Arc::new(ConnectionStats::default());
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        stats.open.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            stream,
            router: router.clone(),
            limits,
            stopping: CancellationToken::new(),
            force: force.clone(),
            _slot: Slot {
                _permit: permit,
                stats: stats.clone(),
            },
        };
        tokio::spawn(connection.serve_over(tls.clone(), builder.clone()));
    }
}

/// Serves `router` on `listener` until `stop` resolves.
pub(crate) async fn accept_until(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    stop: impl Future<Output = ()>,
    tls: Option<TlsAcceptor>,
) -> Draining {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let max = u32::try_from(limits.max_connections)
        .unwrap_or(u32::MAX)
        .max(1);
    let slots = Arc::new(Semaphore::new(max as usize));
    let stopping = CancellationToken::new();
    let force = CancellationToken::new();
    let mut warned = false;
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once, so the client knows now rather than after its own timeout.
            stats.refused.fetch_add(1, Ordering::Relaxed);
            if !std::mem::replace(&mut warned, true) {
                tracing::warn!(
                    max_connections = max,
                    "connection refused: max_connections are open"
                );
            }
            drop(stream);
            continue;
        };
        warned = false;
        stats.open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            _permit: slot,
            stats: stats.clone(),
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            stream,
            router: router.clone(),
            limits,
            stopping: stopping.clone(),
            force: force.clone(),
            _slot: slot,
        };
        tokio::spawn(connection.serve_over(tls.clone(), builder.clone()));
    }
    stopping.cancel();
    let acceptor = tokio::spawn(accept_while_draining(
        listener,
        router,
        limits,
        force.clone(),
        tls,
    ));
    Draining {
        slots,
        max,
        force,
        acceptor,
    }
}

/// One accepted connection and what bounds it.
struct Connection<S> {
    stream: S,
    router: Router,
    limits: ConnectionLimits,
    /// The server stops: finish the requests in flight, take no more.
    stopping: CancellationToken,
    force: CancellationToken,
    _slot: Slot,
}

/// A connection's place under `max_connections`, given back when it is dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<ConnectionStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connection<tokio::net::TcpStream> {
    /// Serves the connection, after its TLS handshake when there is an acceptor. A client
    /// that does not finish the handshake within the header timeout is dropped.
    async fn serve_over(self, tls: Option<TlsAcceptor>, builder: auto::Builder<TokioExecutor>) {
        let Some(acceptor) = tls else {
            return self.serve(builder).await;
        };
        let handshake = tokio::select! {
            done = tokio::time::timeout(self.limits.header_timeout, acceptor.accept(self.stream)) => done,
            () = self.force.cancelled() => return,
        };
        match handshake {
            Ok(Ok(stream)) => {
                let connection = Connection {
                    stream,
                    router: self.router,
                    limits: self.limits,
                    stopping: self.stopping,
                    force: self.force,
                    _slot: self._slot,
                };
                connection.serve(builder).await;
            }
            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake not finished in time"),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    async fn serve(self, builder: auto::Builder<TokioExecutor>) {
        let in_flight = InFlight::default();
        let requests = in_flight.clone();
        let router = self.router;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let guard = requests.begin();
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await?;
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        body,
                        _guard: guard,
                    })
                }))
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(self.stream), service);
        tokio::pin!(connection);
        let idle = tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = in_flight.idle_for(self.limits.header_timeout) => true,
            () = self.stopping.cancelled() => false,
            () = self.force.cancelled() => return,
        };
        if idle {
            tracing::debug!("closing a connection that sent no request in time");
        }
        connection.as_mut().graceful_shutdown();
        // An idle connection has nothing left to finish: it gets one more deadline to go.
        // On a stop, requests in flight finish within the server's grace period.
        let closing = async {
            if idle {
                tokio::time::sleep(self.limits.header_timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = connection.as_mut() => {}
            () = closing => {}
            () = self.force.cancelled() => {}
        }
    }
}

/// Requests in flight on one connection, watched for the idle deadline.
#[derive(Clone, Default)]
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn begin(&self) -> RequestGuard {
        self.0.send_modify(|n| *n += 1);
        RequestGuard(self.0.clone())
    }

    /// Resolves once no request has been in flight for `deadline` in a row.
    async fn idle_for(&self, deadline: Duration) {
        let mut changes = self.0.subscribe();
        loop {
            let busy = *changes.borrow_and_update() > 0;
            if busy {
                // The sender lives as long as `self`: `changed` never fails here.
                let _ = changes.changed().await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep(deadline) => return,
                    _ = changes.changed() => {}
                }
            }
        }
    }
}

/// One request in flight, until its response body is done or dropped.
struct RequestGuard(Arc<watch::Sender<usize>>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that holds its request's place in flight.
struct Tracked {
    body: Body,
    _guard: RequestGuard,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
