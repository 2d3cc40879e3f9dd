//! `toolgate sidecar`: the execution half served over HTTP to an orchestrator. Every route
//! takes the shared token; errors are problem+json with a stable `code`.

use super::event_log::EventLog;
use super::local::LocalSidecar;
use super::plugins::PluginStore;
use super::shipped::ShippedPolicies;
use super::wire::{SessionSpec, SidecarHealth, SidecarState, TaskEvent, TaskFinished, TaskSpec};
use super::{RunTask, Sidecar, SidecarError, TaskEvents};
use crate::policy::PolicySources;
use crate::sandbox::{Secret, TaskError, Usage};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Request bodies, at most: a task's input or a policy set.
const BODY_LIMIT: usize = 16 << 20;
/// A shipped plugin, at most.
const PLUGIN_LIMIT: usize = 256 << 20;
/// Plugins received and compiled at once; more wait their turn.
const PLUGIN_UPLOADS: usize = 2;
/// Bytes of frames written to a relay connection in one go.
const CHUNK_BYTES: usize = 256 << 10;
/// A relay connection with nothing to say writes an empty line this often (keeps proxies and
/// the orchestrator's read timeout from cutting it).
const KEEPALIVE: Duration = Duration::from_secs(5);

/// A task as the orchestrator sends it.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    pub spec: TaskSpec,
    pub plugin: PluginRef,
    /// Values of the secrets the session named. Never logged, never echoed.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Credentials bound to hosts, with their values. Never logged, never echoed.
    #[serde(default)]
    pub credentials: Vec<WireCredential>,
}

/// A [`crate::sandbox::Credential`] on the wire.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WireCredential {
    pub secret: String,
    pub host: String,
    pub port: Option<u16>,
    pub header: String,
    pub value: String,
    pub allow_http: bool,
}

impl From<&crate::sandbox::Credential> for WireCredential {
    fn from(c: &crate::sandbox::Credential) -> Self {
        Self {
            secret: c.secret.clone(),
            host: c.host.clone(),
            port: c.port,
            header: c.header.clone(),
            value: c.value.expose().to_owned(),
            allow_http: c.allow_http,
        }
    }
}

impl From<WireCredential> for crate::sandbox::Credential {
    fn from(c: WireCredential) -> Self {
        Self {
            secret: c.secret,
            host: c.host,
            port: c.port,
            header: c.header,
            value: Secret::new(c.value),
            allow_http: c.allow_http,
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    pub name: String,
    pub digest: String,
}

/// `POST /v1/sidecar/ack`: per session, the last frame the orchestrator has stored.
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub sessions: BTreeMap<String, u64>,
}

/// The state of a running `toolgate sidecar`.
pub struct SidecarService {
    local: LocalSidecar,
    policies: Arc<ShippedPolicies>,
    plugins: PluginStore,
    /// Plugin uploads at once: each is held whole in memory and compiled on arrival.
    uploads: tokio::sync::Semaphore,
    logs: Mutex<HashMap<String, Arc<EventLog>>>,
    token: String,
    boot: String,
    machine: super::machine::MachineProbe,
}

impl SidecarService {
    pub fn new(
        local: LocalSidecar,
        policies: Arc<ShippedPolicies>,
        plugins: PluginStore,
        token: String,
        machine: super::machine::MachineProbe,
    ) -> Arc<Self> {
        Arc::new(Self {
            local,
            policies,
            plugins,
            uploads: tokio::sync::Semaphore::new(PLUGIN_UPLOADS),
            logs: Mutex::default(),
            token,
            boot: uuid::Uuid::new_v4().simple().to_string(),
            machine,
        })
    }

    pub fn local(&self) -> &LocalSidecar {
        &self.local
    }

    fn log(&self, session: &str) -> Option<Arc<EventLog>> {
        self.lock_logs().get(session).cloned()
    }

    fn lock_logs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<EventLog>>> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Frames not yet acknowledged by the orchestrator, all sessions.
    pub fn unacked(&self) -> usize {
        self.lock_logs().values().map(|l| l.unacked()).sum()
    }

    /// A stop: no new sessions or tasks, running tasks cancelled (their outcomes are still
    /// relayed), then every relay stream ends once it has sent what it has.
    pub async fn drain(&self, grace: Duration) {
        self.local.drain();
        self.local.cancel_all();
        let until = tokio::time::Instant::now() + grace;
        while self.local.running_tasks() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while self.unacked() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for log in self.lock_logs().values() {
            log.close();
        }
    }

    fn health(&self) -> SidecarHealth {
        SidecarHealth {
            state: self.local.state(),
            boot: self.boot.clone(),
            sessions: self.local.sessions(),
            running_tasks: self.local.running_tasks(),
            policy_versions: self.policies.versions(),
            now_ms: super::wire::wall_ms(),
            machine: Some(self.machine.current()),
        }
    }
}

/// Where a sidecar keeps the plugins shipped to it.
pub fn plugin_store(
    catalog: crate::sandbox::Catalog,
    dir: std::path::PathBuf,
) -> std::io::Result<PluginStore> {
    PluginStore::new(catalog, dir)
}

/// The routes of `toolgate sidecar`.
pub fn router(service: Arc<SidecarService>) -> Router {
    let api = Router::new()
        .route("/v1/sidecar/health", get(health))
        .route("/v1/sidecar/policies/{version}", put(put_policy))
        .route(
            "/v1/sidecar/plugins/{digest}",
            put(put_plugin).layer(DefaultBodyLimit::max(PLUGIN_LIMIT)),
        )
        .route("/v1/sidecar/sessions", post(open_session))
        .route("/v1/sidecar/sessions/{id}", delete(close_session))
        .route("/v1/sidecar/sessions/{id}/tasks", post(run_task))
        .route(
            "/v1/sidecar/sessions/{id}/tasks/{task}/cancel",
            post(cancel_task),
        )
        .route("/v1/sidecar/sessions/{id}/events", get(events))
        .route("/v1/sidecar/ack", post(ack))
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            authenticate,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    api.fallback(|| async { problem(StatusCode::NOT_FOUND, "not_found", "no such route".into()) })
        .method_not_allowed_fallback(|| async {
            problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the route does not take this method".into(),
            )
        })
        .with_state(service)
}

async fn authenticate(
    State(service): State<Arc<SidecarService>>,
    request: Request,
    next: Next,
) -> Response {
    let given = bearer(request.headers()).unwrap_or_default();
    // Constant time in the token's contents: a guess learns nothing from how long it took.
    let equal: bool = given.as_bytes().ct_eq(service.token.as_bytes()).into();
    if !equal || given.is_empty() {
        return error_response(&SidecarError::Unauthorized);
    }
    next.run(request).await
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn problem(status: StatusCode, code: &str, detail: String) -> Response {
    problem_about(status, code, detail, None)
}

fn problem_about(
    status: StatusCode,
    code: &str,
    detail: String,
    subject: Option<&str>,
) -> Response {
    let mut body = serde_json::json!({
        "type": format!("urn:toolgate:sidecar:{code}"),
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
    });
    if let Some(subject) = subject {
        body["subject"] = subject.into();
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn status_of(error: &SidecarError) -> StatusCode {
    match error {
        SidecarError::Unauthorized => StatusCode::UNAUTHORIZED,
        SidecarError::UnknownSession(_) => StatusCode::NOT_FOUND,
        SidecarError::PolicyVersionMissing(_) | SidecarError::PluginMissing(_) => {
            StatusCode::CONFLICT
        }
        SidecarError::Draining => StatusCode::SERVICE_UNAVAILABLE,
        SidecarError::Invalid(_) | SidecarError::Protocol(_) => StatusCode::UNPROCESSABLE_ENTITY,
        SidecarError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        SidecarError::Stale(_) => StatusCode::CONFLICT,
        SidecarError::Unreachable { .. } | SidecarError::Lost { .. } => StatusCode::BAD_GATEWAY,
        SidecarError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error_response(error: &SidecarError) -> Response {
    problem_about(
        status_of(error),
        error.code(),
        error.to_string(),
        error.subject(),
    )
}

/// Refuses a request stamped with a deadline that has passed: its orchestrator has already
/// reported it as lost.
fn stale(headers: &HeaderMap) -> Option<Response> {
    let not_after = headers
        .get(super::wire::NOT_AFTER_HEADER)?
        .to_str()
        .ok()?
        .parse::<u64>()
        .ok()?;
    let now = super::wire::wall_ms();
    (now > not_after).then(|| {
        tracing::warn!(
            late_ms = now - not_after,
            "refusing a request its orchestrator has given up"
        );
        error_response(&SidecarError::Stale(format!(
            "it arrived {} ms after its deadline",
            now - not_after
        )))
    })
}

/// A request body within the route's limit; one over it is a 413 problem, not axum's text.
struct Limited(Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Limited {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let limit_hit = |e: axum::extract::rejection::BytesRejection| {
            let error = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                SidecarError::TooLarge(e.body_text())
            } else {
                SidecarError::Invalid(e.body_text())
            };
            error_response(&error)
        };
        Bytes::from_request(request, state)
            .await
            .map(Limited)
            .map_err(limit_hit)
    }
}

/// A JSON body, or a 422 that says where it went wrong and never what it held (a task's
/// body carries secrets).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, SidecarError> {
    serde_json::from_slice(body).map_err(|e| {
        SidecarError::Invalid(format!(
            "{what} is not the JSON expected ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

async fn health(State(service): State<Arc<SidecarService>>) -> Response {
    axum::Json(service.health()).into_response()
}

async fn put_policy(
    State(service): State<Arc<SidecarService>>,
    Path(version): Path<String>,
    Limited(body): Limited,
) -> Response {
    let sources: PolicySources = match parse(&body, "the policy set") {
        Ok(sources) => sources,
        Err(error) => return error_response(&error),
    };
    let policies = service.policies.clone();
    let installed = tokio::task::spawn_blocking(move || policies.install(&version, sources)).await;
    match installed {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(error)) => error_response(&error),
        Err(e) => error_response(&SidecarError::Internal(e.to_string())),
    }
}

#[derive(Deserialize)]
struct PluginQuery {
    name: String,
}

async fn put_plugin(
    State(service): State<Arc<SidecarService>>,
    Path(digest): Path<String>,
    query: Result<Query<PluginQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    let Ok(Query(query)) = query else {
        return error_response(&SidecarError::Invalid(
            "a plugin is shipped with `?name=` (its name)".into(),
        ));
    };
    // The turn is taken before the body is read: waiting uploads hold no memory.
    let Ok(_turn) = service.uploads.acquire().await else {
        return error_response(&SidecarError::Draining);
    };
    let body = match <Limited as axum::extract::FromRequest<()>>::from_request(request, &()).await {
        Ok(Limited(body)) => body,
        Err(response) => return response,
    };
    match service.plugins.put(&query.name, &digest, &body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error_response(&error),
    }
}

async fn open_session(
    State(service): State<Arc<SidecarService>>,
    headers: HeaderMap,
    Limited(body): Limited,
) -> Response {
    if let Some(refused) = stale(&headers) {
        return refused;
    }
    let spec: SessionSpec = match parse(&body, "the session") {
        Ok(spec) => spec,
        Err(error) => return error_response(&error),
    };
    let id = spec.id.clone();
    if let Err(error) = service.local.open_session(spec).await {
        return error_response(&error);
    }
    service.lock_logs().entry(id).or_default();
    StatusCode::NO_CONTENT.into_response()
}

async fn close_session(
    State(service): State<Arc<SidecarService>>,
    Path(id): Path<String>,
) -> Response {
    let known = service.local.has_session(&id);
    let _ = service.local.close_session(&id).await;
    match service.lock_logs().remove(&id) {
        Some(log) => log.close(),
        None if !known => return error_response(&SidecarError::UnknownSession(id)),
        None => {}
    }
    StatusCode::NO_CONTENT.into_response()
}

/// A remote task's events, into its session's log.
struct LogEvents {
    log: Arc<EventLog>,
    task: String,
}

impl TaskEvents for LogEvents {
    fn emit(&self, event: TaskEvent) {
        self.log.push(&self.task, event);
    }
}

async fn run_task(
    State(service): State<Arc<SidecarService>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Limited(body): Limited,
) -> Response {
    if let Some(refused) = stale(&headers) {
        return refused;
    }
    let task: TaskBody = match parse(&body, "the task") {
        Ok(task) => task,
        Err(error) => return error_response(&error),
    };
    if task.spec.session() != id {
        return error_response(&SidecarError::Invalid(format!(
            "the task names session {}, the path {id}",
            task.spec.session()
        )));
    }
    if service.local.state() == SidecarState::Draining {
        return error_response(&SidecarError::Draining);
    }
    let (Some(log), true) = (service.log(&id), service.local.has_session(&id)) else {
        return error_response(&SidecarError::UnknownSession(id));
    };
    // Refused before it is accepted: the orchestrator ships what is missing and asks again.
    if !service
        .policies
        .versions()
        .contains(&task.spec.policy_version)
    {
        return error_response(&SidecarError::PolicyVersionMissing(
            task.spec.policy_version.clone(),
        ));
    }
    let plugin = match service
        .plugins
        .get(&task.plugin.name, &task.plugin.digest)
        .await
    {
        Ok(plugin) => plugin,
        Err(error) => return error_response(&error),
    };
    let task_id = task.spec.id.clone();
    let events = Arc::new(LogEvents {
        log: log.clone(),
        task: task_id.clone(),
    });
    let run = RunTask {
        plugin,
        spec: task.spec,
        secrets: task
            .secrets
            .into_iter()
            .map(|(name, value)| (name, Secret::new(value)))
            .collect(),
        credentials: task.credentials.into_iter().map(Into::into).collect(),
        events: events.clone(),
        cancel: tokio_util::sync::CancellationToken::new(),
    };
    let local = service.local.clone();
    tokio::spawn(async move {
        let finished = local
            .run_task(run)
            .await
            .unwrap_or_else(|error| TaskFinished {
                result: Err(TaskError::Internal {
                    message: error.to_string(),
                }),
                usage: Usage::default(),
                decision_us: Vec::new(),
            });
        events.emit(TaskEvent::Finished { finished });
    });
    StatusCode::ACCEPTED.into_response()
}

async fn cancel_task(
    State(service): State<Arc<SidecarService>>,
    Path((id, task)): Path<(String, String)>,
) -> Response {
    // A task that already finished has nothing to cancel; its outcome is in the log.
    service.local.cancel_task(&id, &task);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
}

async fn events(
    State(service): State<Arc<SidecarService>>,
    Path(id): Path<String>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error_response(&SidecarError::Invalid(
            "`after` must be a frame number".into(),
        ));
    };
    let Some(log) = service.log(&id) else {
        return error_response(&SidecarError::UnknownSession(id));
    };
    let stream = futures_util::stream::unfold((log, query.after), |(log, after)| async move {
        loop {
            match log.after(after, CHUNK_BYTES) {
                None => return None,
                Some(lines) if !lines.is_empty() => {
                    let last = lines.last().map_or(after, |(seq, _)| *seq);
                    let mut chunk = Vec::with_capacity(lines.iter().map(|(_, l)| l.len()).sum());
                    for (_, line) in &lines {
                        chunk.extend_from_slice(line);
                    }
                    return Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from(chunk)),
                        (log, last),
                    ));
                }
                Some(_) => {
                    tokio::select! {
                        _ = log.wait_after(after) => {}
                        _ = tokio::time::sleep(KEEPALIVE) => {
                            return Some((Ok(Bytes::from_static(b"\n")), (log, after)));
                        }
                    }
                }
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn ack(State(service): State<Arc<SidecarService>>, Limited(body): Limited) -> Response {
    let ack: Ack = match parse(&body, "the acknowledgement") {
        Ok(ack) => ack,
        Err(error) => return error_response(&error),
    };
    for (session, seq) in ack.sessions {
        if let Some(log) = service.log(&session) {
            log.ack(seq);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}
