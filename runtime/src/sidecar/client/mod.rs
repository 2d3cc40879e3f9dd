//! The orchestrator's client of a `toolgate sidecar`: the seam over HTTP. Its health checks
//! (when it is lost) are in `health`, what it is shipped (policy sets, plugins) in
//! `shipping`, and the relay of each session's events in `stream`.

mod health;
mod shipping;
mod stream;

use super::relay::Relay;
use super::server::{PluginRef, TaskBody, WireCredential};
use super::wire::{SessionSpec, SidecarHealth, SidecarState, TaskFinished};
use super::{RunTask, Sidecar, SidecarError, SidecarFuture};
use crate::policy::PolicyEngine;
use crate::sandbox::Catalog;
use crate::store::Store;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How to reach a sidecar, from the `[[sidecars]]` of the config.
#[derive(Debug, Clone)]
pub struct SidecarEndpoint {
    pub id: String,
    /// `https://host:port` or `http://host:port`.
    pub url: String,
    pub token: String,
    /// Roots trusted for `https`; empty: the public web roots.
    pub ca_certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Between health checks.
    pub health_interval: Duration,
    /// Without an answer this long, the sidecar is lost and its sessions end `host_lost`.
    pub health_timeout: Duration,
}

/// What a remote sidecar needs of its orchestrator: what to ship, where events are stored,
/// whom to tell when it is lost.
#[derive(Clone)]
pub struct RemoteContext {
    pub policy: Arc<PolicyEngine>,
    pub catalog: Arc<Catalog>,
    pub store: Store,
    /// Told when a sidecar, or one session on it, is lost: the orchestrator ends them.
    pub lost: mpsc::UnboundedSender<Loss>,
}

/// What was lost on a remote sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub sidecar: String,
    /// One session the sidecar no longer holds; `None`: the sidecar and all its sessions.
    pub session: Option<String>,
}

/// Time for one call; a plugin upload (compiled on arrival) gets longer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// A relay connection that brings nothing, not even a keep-alive, for this long is dropped.
const RELAY_SILENCE: Duration = Duration::from_secs(15);
/// How long past a remote task's deadline its outcome is waited for (time queued on a busy
/// sidecar, the relay catching up after a cut) before the task is failed here.
const OUTCOME_GRACE: Duration = Duration::from_secs(60);
/// How often the stored frames are acknowledged.
const ACK_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct RemoteSidecar {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: SidecarEndpoint,
    base: String,
    /// Calls: HTTP/1.1, a pool of connections (the lowest latency per request).
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Sessions' event streams: HTTP/2, all of them over one connection however many
    /// sessions are open.
    streams: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    context: RemoteContext,
    health: Mutex<Health>,
    relays: Mutex<HashMap<String, Arc<Relay>>>,
    /// Sessions ended as lost that the sidecar may still hold (told to close when it answers).
    orphans: Mutex<Vec<String>>,
    /// What was shipped lately, by what it is (`policy:VERSION`, `plugin:DIGEST`): tasks that
    /// all find a fresh sidecar lacking the same thing ship it once, in turn.
    shipped: tokio::sync::Mutex<HashMap<String, Instant>>,
}

struct Health {
    state: SidecarState,
    last_ok: Instant,
    boot: Option<String>,
    /// The sidecar's wall clock minus ours (ms), from the last health answer that said.
    clock_offset_ms: Option<i64>,
    /// Its machine, from the last health answer that said.
    machine: Option<crate::sidecar::Machine>,
    /// Why the last health check of a sidecar that never answered failed (logged once).
    last_error: Option<String>,
}

impl RemoteSidecar {
    /// A client of the sidecar at `endpoint`; its health checks and acknowledgements run
    /// until the last clone is dropped.
    pub fn new(
        endpoint: SidecarEndpoint,
        context: RemoteContext,
    ) -> Result<Self, super::tls::TlsError> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        connector.enforce_http(false);
        let tls = super::tls::client_config(&endpoint.ca_certificates)?;
        let calls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector.clone());
        // Idle connections are let go before the sidecar's own idle deadline (10 s) closes
        // them, so a call never lands on one the sidecar is closing.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(256)
            .build(calls);
        let h2 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(connector);
        let streams = Client::builder(TokioExecutor::new())
            .http2_only(true)
            // Windows sized for many busy streams; pings find a dead connection between
            // frames (the relay's own silence timeout is the backstop).
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .http2_keep_alive_timeout(Duration::from_secs(5))
            .timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build(h2);
        let inner = Arc::new(Inner {
            base: endpoint.url.trim_end_matches('/').to_owned(),
            endpoint,
            client,
            streams,
            context,
            health: Mutex::new(Health {
                // Not ready until it has answered once.
                state: SidecarState::Lost,
                last_ok: Instant::now(),
                boot: None,
                clock_offset_ms: None,
                machine: None,
                last_error: None,
            }),
            relays: Mutex::default(),
            orphans: Mutex::default(),
            shipped: tokio::sync::Mutex::default(),
        });
        tokio::spawn(health::health_loop(Arc::downgrade(&inner)));
        tokio::spawn(stream::ack_loop(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// Checks health once now; an answer makes the sidecar ready (or draining) at once.
    pub async fn check(&self) -> Result<SidecarHealth, SidecarError> {
        let answer = self.inner.check_health().await?;
        let mut health = self.inner.health.lock().unwrap_or_else(|e| e.into_inner());
        if health.boot.is_none() {
            health.boot = Some(answer.boot.clone());
            health.state = answer.state;
            health.last_ok = Instant::now();
        }
        Ok(answer)
    }
}

impl Inner {
    fn unreachable(&self, message: impl std::fmt::Display) -> SidecarError {
        SidecarError::Unreachable {
            sidecar: self.endpoint.id.clone(),
            message: message.to_string(),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: &str,
    ) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.endpoint.token),
            )
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .expect("a request of known parts")
    }

    /// One call; a problem answer becomes its typed error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: &str,
        timeout: Duration,
    ) -> Result<Bytes, SidecarError> {
        let request = self.request(method, path, body, content_type);
        self.send(request, timeout).await
    }

    /// A call stamped with the moment (in the sidecar's clock) this orchestrator will give
    /// it up as lost: should it reach the sidecar later, it is refused rather than run.
    async fn fenced_call(
        &self,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, SidecarError> {
        let mut request = self.request(Method::POST, path, body, "application/json");
        if let Some(not_after) = self.not_after() {
            request.headers_mut().insert(
                super::wire::NOT_AFTER_HEADER,
                http::HeaderValue::from(not_after),
            );
        }
        self.send(request, timeout).await
    }

    /// When, in the sidecar's wall clock, it will be lost unless it answers a health check
    /// first; unknown until it has said what its clock reads.
    fn not_after(&self) -> Option<u64> {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let offset = health.clock_offset_ms?;
        let left = (health.last_ok + self.endpoint.health_timeout)
            .saturating_duration_since(Instant::now());
        let ours =
            super::wire::wall_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(0));
        Some(ours.saturating_add_signed(offset))
    }

    async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Bytes, SidecarError> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| self.unreachable(error_chain(&e)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(e))?
                .to_bytes();
            Ok::<_, SidecarError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| {
                self.unreachable(format!("no answer within {} ms", timeout.as_millis()))
            })??;
        if status.is_success() {
            return Ok(body);
        }
        Err(self.problem(status, &body))
    }

    fn problem(&self, status: StatusCode, body: &[u8]) -> SidecarError {
        let problem: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let detail = problem["detail"].as_str().unwrap_or("").to_owned();
        let arg = || problem["subject"].as_str().unwrap_or_default().to_owned();
        match problem["code"].as_str() {
            Some("unauthorized") => SidecarError::Unauthorized,
            Some("unknown_session") => SidecarError::UnknownSession(arg()),
            Some("policy_version_missing") => SidecarError::PolicyVersionMissing(arg()),
            Some("plugin_missing") => SidecarError::PluginMissing(arg()),
            Some("draining") => SidecarError::Draining,
            Some("invalid_request") => SidecarError::Invalid(detail),
            Some("too_large") => SidecarError::TooLarge(detail),
            Some("stale_request") => SidecarError::Stale(detail),
            Some(_) => SidecarError::Internal(detail),
            None => SidecarError::Protocol(format!("HTTP {status} without a problem body")),
        }
    }

    async fn open(self: Arc<Self>, spec: SessionSpec) -> Result<(), SidecarError> {
        let body = Bytes::from(serde_json::to_vec(&spec).unwrap_or_default());
        // A sidecar that cannot open a session within its health timeout is as good as lost:
        // the session is placed elsewhere rather than keep its client waiting.
        let timeout = self.endpoint.health_timeout.min(CALL_TIMEOUT);
        let opened = self
            .fenced_call("/v1/sidecar/sessions", body, timeout)
            .await;
        if let Err(error) = opened {
            if error.is_lost() {
                // It may yet open it once it answers again: it is told to close it then.
                self.orphans
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(spec.id.clone());
            }
            return Err(error);
        }
        let relay = Relay::new(spec.id.clone());
        self.relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.id, relay.clone());
        tokio::spawn(stream::relay_loop(Arc::downgrade(&self), relay));
        Ok(())
    }

    async fn run(self: Arc<Self>, run: RunTask) -> Result<TaskFinished, SidecarError> {
        let RunTask {
            plugin,
            spec,
            secrets,
            credentials,
            events,
            cancel,
        } = run;
        let session = spec.session().to_owned();
        // No relay: the session was lost with its sidecar (its close follows).
        let relay = self.relay(&session).ok_or_else(|| SidecarError::Lost {
            sidecar: self.endpoint.id.clone(),
            message: format!("session {session} was lost with it"),
        })?;
        let task = spec.id.clone();
        let version = spec.policy_version.clone();
        // However the sidecar fares, nobody waits for a task much past its own deadline.
        let deadline = spec.limits.timeout + OUTCOME_GRACE;
        let mut finished = relay.register(&task, events);
        let body = TaskBody {
            plugin: PluginRef {
                name: plugin.name().to_owned(),
                digest: plugin.digest().to_owned(),
            },
            spec,
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect(),
            credentials: credentials.iter().map(WireCredential::from).collect(),
        };
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let path = format!("/v1/sidecar/sessions/{session}/tasks");
        let send = async {
            let mut sent = Err(SidecarError::Internal("not sent".into()));
            // At most one of each: the policy set, the plugin, then the task is taken or
            // refused.
            for _ in 0..3 {
                sent = self.fenced_call(&path, body.clone(), CALL_TIMEOUT).await;
                let shipped = match &sent {
                    Err(SidecarError::PolicyVersionMissing(_)) => self.ship_policy(&version).await,
                    Err(SidecarError::PluginMissing(_)) => {
                        self.ship_plugin(&PluginRef {
                            name: plugin.name().to_owned(),
                            digest: plugin.digest().to_owned(),
                        })
                        .await
                    }
                    _ => break,
                };
                if let Err(error) = shipped {
                    sent = Err(error);
                    break;
                }
            }
            sent
        };
        // The outcome can come first: the sidecar was lost while the task was being sent (a
        // frozen sidecar never answers the post), or the task finished before its 202 arrived.
        let sent = tokio::select! {
            sent = send => sent,
            result = &mut finished => {
                return result.unwrap_or_else(|_| Err(self.unreachable("the relay stopped")));
            }
        };
        if let Err(error) = sent {
            relay.forget(&task);
            return Err(error);
        }
        // A cancel is passed on; the task's outcome still comes through the relay.
        let cancel_path = format!("/v1/sidecar/sessions/{session}/tasks/{task}/cancel");
        let waited = tokio::time::timeout(deadline, async {
            tokio::select! {
                result = &mut finished => return result,
                _ = cancel.cancelled() => {
                    let this = self.clone();
                    let cancel_path = cancel_path.clone();
                    tokio::spawn(async move {
                        let _ = this.call(Method::POST, &cancel_path, Bytes::new(), "application/json", CALL_TIMEOUT).await;
                    });
                }
            }
            (&mut finished).await
        })
        .await;
        match waited {
            Ok(result) => result.unwrap_or_else(|_| Err(self.unreachable("the relay stopped"))),
            Err(_) => {
                // The sidecar answers health checks but never told how the task ended (its
                // outcome was unreadable, or it was lost there): the task ends here, and the
                // sidecar is told to stop it.
                relay.forget(&task);
                let this = self.clone();
                tokio::spawn(async move {
                    let _ = this
                        .call(
                            Method::POST,
                            &cancel_path,
                            Bytes::new(),
                            "application/json",
                            CALL_TIMEOUT,
                        )
                        .await;
                });
                Err(SidecarError::Protocol(format!(
                    "the sidecar did not report the task's end within {} s of its deadline",
                    OUTCOME_GRACE.as_secs()
                )))
            }
        }
    }

    async fn close(self: Arc<Self>, session: String) -> Result<(), SidecarError> {
        let Some(relay) = self.relay(&session) else {
            return Ok(());
        };
        // Cancelled tasks' outcomes come first (bounded: a lost sidecar fails them anyway).
        let until = Instant::now() + CALL_TIMEOUT;
        while relay.waiting() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let closed = self
            .call(
                Method::DELETE,
                &format!("/v1/sidecar/sessions/{session}"),
                Bytes::new(),
                "application/json",
                CALL_TIMEOUT,
            )
            .await;
        self.relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session);
        relay.stop.cancel();
        relay.fail_all(&SidecarError::UnknownSession(session));
        match closed {
            Ok(_) | Err(SidecarError::UnknownSession(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

impl Sidecar for RemoteSidecar {
    fn id(&self) -> &str {
        &self.inner.endpoint.id
    }

    fn open_session(&self, spec: SessionSpec) -> SidecarFuture<Result<(), SidecarError>> {
        Box::pin(self.inner.clone().open(spec))
    }

    fn run_task(&self, run: RunTask) -> SidecarFuture<Result<TaskFinished, SidecarError>> {
        Box::pin(self.inner.clone().run(run))
    }

    fn close_session(&self, session: &str) -> SidecarFuture<Result<(), SidecarError>> {
        Box::pin(self.inner.clone().close(session.to_owned()))
    }

    fn state(&self) -> SidecarState {
        self.inner
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .state
    }

    fn has_answered(&self) -> bool {
        self.inner
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .boot
            .is_some()
    }

    fn machine(&self) -> Option<crate::sidecar::Machine> {
        self.inner
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .machine
            .clone()
    }

    fn is_remote(&self) -> bool {
        true
    }
}
