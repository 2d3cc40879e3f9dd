//! The HTTP server: `run(listener, app, shutdown)` takes a bound listener and
//! a shutdown future, so tests inject both.

pub mod api_doc;
mod auth;
pub mod config;
pub(crate) mod fd_limit;
mod http_metrics;
mod in_flight;
pub(crate) mod listener;
mod mcp_gate;
pub mod problem;
mod routes;

pub use config::{ServeArgs, ServeConfig};
pub use listener::ConnectionStats;

use crate::events::{Event, EventHub, EventPersistence, HubConfig};
use crate::orchestrator::{Caller, Orchestrator, OrchestratorConfig};
use crate::policy::{PolicyEngine, PolicyOrigin, principal_entity};
use crate::sandbox::{Catalog, EngineConfig, Executor, SandboxEngine};
use crate::secrets::SecretStore;
use crate::sidecar::{LocalSidecar, RemoteContext, RemoteSidecar, SidecarEndpoint};
use crate::store::data_dir::{self, DataDirLock};
use crate::store::{Store, StoredEvent};
use crate::telemetry::{Gauges, Metrics};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashSet;
use std::future::Future;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Everything the routes share.
pub struct App {
    pub config: ServeConfig,
    pub orchestrator: Arc<Orchestrator>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub limiter: DefaultKeyedRateLimiter<String>,
    pub ready: AtomicBool,
    pub pooling: bool,
    /// Ends event streams when the server shuts down.
    pub shutdown: CancellationToken,
    known_principals: Mutex<HashSet<String>>,
    /// Where the first admin key was written, if this start created one.
    pub admin_key_file: Option<PathBuf>,
    pub connections: Arc<ConnectionStats>,
    /// The MCP endpoint, `/mcp`.
    pub mcp: crate::mcp::Mcp,
    /// The model providers of the config, their keys resolved.
    pub providers: Arc<crate::agents::Providers>,
    /// Requests each principal has in flight.
    pub in_flight: in_flight::InFlight,
    /// Held while the server runs: no second server on the same data directory. Let go
    /// once `run` has closed the store, even if something still holds the `App`.
    data_dir_lock: Mutex<Option<DataDirLock>>,
}

impl App {
    /// Makes a principal known to the policy engine (as a member of its key's
    /// profile) the first time it shows up, e.g. after `toolgate keys create`.
    fn ensure_principal(&self, caller: &Caller) {
        let mut known = self
            .known_principals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if known.insert(format!("{}\u{1f}{}", caller.principal, caller.profile)) {
            let entity = principal_entity(&caller.principal, &[&caller.profile]);
            if let Err(e) = self.orchestrator.policy().upsert_entities([entity]) {
                tracing::warn!(principal = %caller.principal, error = %e, "cannot add the principal to the policy entities");
            }
        }
    }
}

/// The store, as the event hub's durable memory.
struct StorePersistence(Store);

impl EventPersistence for StorePersistence {
    fn persist(&self, session: &str, event: &Event) {
        self.0.put_event(&StoredEvent {
            session: session.into(),
            seq: event.seq,
            name: event.name.clone(),
            data: event.data.clone(),
            at_ms: event.at_ms,
        });
    }

    fn load_after(&self, session: &str, after: u64, limit: usize) -> Vec<Event> {
        let _ = self.0.flush();
        self.0
            .events_after(session, after, limit)
            .unwrap_or_default()
            .into_iter()
            .map(|e| Event {
                seq: e.seq,
                name: e.name,
                data: e.data,
                at_ms: e.at_ms,
            })
            .collect()
    }

    fn last_seq(&self, session: &str) -> u64 {
        // Numbering continues after every event already handed to the store.
        let _ = self.0.flush();
        self.0.last_event_seq(session).unwrap_or(0)
    }
}

struct AppGauges {
    hub: Arc<EventHub>,
    connections: Arc<ConnectionStats>,
    orchestrator: std::sync::OnceLock<std::sync::Weak<Orchestrator>>,
}

impl Gauges for AppGauges {
    fn active_sessions(&self) -> u64 {
        self.orchestrator
            .get()
            .and_then(|o| o.upgrade())
            .map_or(0, |o| o.open_sessions() as u64)
    }
    fn sse_subscribers(&self) -> u64 {
        self.hub.subscribers() as u64
    }
    fn events_dropped(&self) -> u64 {
        self.hub.dropped()
    }
    fn connections_open(&self) -> u64 {
        self.connections.open()
    }
    fn connections_refused(&self) -> u64 {
        self.connections.refused()
    }
    fn policy_reloads(&self) -> u64 {
        self.policy_status().map_or(0, |s| s.reloads)
    }
    fn policy_reload_failures(&self) -> u64 {
        self.policy_status().map_or(0, |s| s.failed_reloads)
    }
    fn policy_reload_failing(&self) -> u64 {
        self.policy_status()
            .map_or(0, |s| u64::from(s.last_error.is_some()))
    }
    fn hosts(&self) -> crate::hosts::RegistryFigures {
        self.orchestrator
            .get()
            .and_then(|o| o.upgrade())
            .map(|o| o.hosts().figures())
            .unwrap_or_default()
    }
}

impl AppGauges {
    fn policy_status(&self) -> Option<crate::policy::PolicyStatus> {
        let orchestrator = self.orchestrator.get()?.upgrade()?;
        Some(orchestrator.policy().status())
    }
}

/// Plugins uploaded through the API, inside the data directory.
const UPLOADED_PLUGINS: &str = "plugins";

/// Opens the store, loads policies and plugins, recovers from the last stop.
pub async fn build(config: ServeConfig) -> anyhow::Result<Arc<App>> {
    let per_principal = config.max_requests_per_principal;
    let data_dir_lock = hold_data_dir(&config)?;
    let store = Store::open(&config.data_dir)?;
    let admin_key_file = bootstrap_admin_key(&store, &config)?;
    let origin = config
        .policies
        .clone()
        .map_or(PolicyOrigin::Embedded, PolicyOrigin::Dir);
    let policy = Arc::new(PolicyEngine::load(origin)?);
    let principals: Vec<_> = store
        .principals()?
        .iter()
        .map(|(p, profile)| principal_entity(p, &[profile]))
        .collect();
    policy.upsert_entities(principals)?;

    let engine = Arc::new(SandboxEngine::new(EngineConfig {
        concurrent_tasks: config.max_running_tasks,
        ..EngineConfig::default()
    })?);
    let pooling = engine.is_pooling();
    let cache = config.data_dir.join("cache");
    let mut catalog = Catalog::new(engine.clone(), Some(&cache));
    if let Some(dir) = &config.plugins {
        catalog.add_dir(dir)?;
    }
    // Uploads come last: they are the most recent word of an admin.
    let uploaded = config.data_dir.join(UPLOADED_PLUGINS);
    if uploaded.is_dir() {
        catalog.add_uploads(&uploaded)?;
    }
    let secrets = SecretStore::from_env_and_file(config.secrets_file.as_deref())?;
    // Credentials bound to hosts are resolved now: a missing secret stops the start.
    let credentials = secrets.bind(&config.credentials)?;
    // Each provider's key is read now: a missing secret stops the start, not a run later.
    let providers = Arc::new(
        crate::agents::Providers::new(&config.model_providers, &secrets)
            .map_err(|e| anyhow::anyhow!("[[model_providers]]: {e}"))?,
    );
    let hub_config = HubConfig {
        buffer: config.event_buffer,
        ..HubConfig::default()
    };
    let hub = Arc::new(EventHub::new(
        Arc::new(StorePersistence(store.clone())),
        hub_config,
    ));
    let local = config.local_sidecar.then(|| {
        LocalSidecar::new(
            crate::hosts::LOCAL,
            Executor::new(engine.clone(), Arc::new(crate::policy::AllowAll)),
            Arc::new(policy.clone()),
            config.data_dir.join("workspaces"),
        )
        .with_private_network(config.sessions_allow_private_network)
    });
    let catalog = Arc::new(catalog);
    let (lost_tx, mut lost_rx) = tokio::sync::mpsc::unbounded_channel();
    let context = RemoteContext {
        policy: policy.clone(),
        catalog: catalog.clone(),
        store: store.clone(),
        lost: lost_tx,
    };
    let mut configured: std::collections::HashMap<String, Arc<dyn crate::sidecar::Sidecar>> =
        std::collections::HashMap::new();
    for sidecar in &config.sidecars {
        let endpoint = SidecarEndpoint {
            id: sidecar.id.clone(),
            url: sidecar.url.clone(),
            token: sidecar.token.clone(),
            ca_certificates: sidecar.ca_certificates.clone(),
            health_interval: config.sidecar_health_interval,
            health_timeout: config.sidecar_health_timeout,
        };
        let client = RemoteSidecar::new(endpoint, context.clone())
            .map_err(|e| anyhow::anyhow!("sidecar `{}`: {e}", sidecar.id))?;
        // Sessions of the last run on it come back only if it answers now.
        if let Err(error) = client.check().await {
            tracing::warn!(sidecar = %sidecar.id, %error, "sidecar does not answer yet");
        }
        configured.insert(sidecar.id.clone(), Arc::new(client));
    }
    let hosts = start_hosts(
        &config,
        HostParts {
            local,
            configured,
            context,
            hub: hub.clone(),
            engine: engine.clone(),
            policy: policy.clone(),
            secrets: &secrets,
        },
    )
    .await?;
    let orchestrator = Arc::new(Orchestrator::new(
        OrchestratorConfig {
            workspaces: config.data_dir.join("workspaces"),
            uploaded_plugins: config.data_dir.join(UPLOADED_PLUGINS),
            max_sessions: config.max_sessions,
            idle_timeout: config.session_idle_timeout,
            lifetime: config.session_lifetime,
            approval_timeout: config.approval_timeout,
            credentials,
            agents_dir: config.agents_dir.clone(),
        },
        catalog,
        hosts,
        policy,
        store.clone(),
        hub.clone(),
        secrets,
        providers.clone(),
    ));
    orchestrator.recover().await?;
    // Tasks that waited for a person's approval wait again, in the sessions that came back.
    orchestrator.resume_approvals();
    // A lost sidecar's sessions end `host_lost`.
    let weak = Arc::downgrade(&orchestrator);
    tokio::spawn(async move {
        while let Some(loss) = lost_rx.recv().await {
            let Some(orchestrator) = weak.upgrade() else {
                return;
            };
            orchestrator.sidecar_lost(&loss).await;
        }
    });
    let connections = Arc::new(ConnectionStats::default());
    let gauges = Arc::new(AppGauges {
        hub,
        connections: connections.clone(),
        orchestrator: std::sync::OnceLock::new(),
    });
    let _ = gauges.orchestrator.set(Arc::downgrade(&orchestrator));
    let metrics = Arc::new(Metrics::new(gauges)?);
    orchestrator.set_metrics(metrics.clone());
    let shutdown = CancellationToken::new();
    let mcp = crate::mcp::Mcp::new(orchestrator.clone(), mcp_config(&config), shutdown.clone());
    let quota = Quota::per_second(NonZeroU32::new(config.rate_limit).expect("checked"))
        .allow_burst(NonZeroU32::new(config.rate_burst).expect("checked"));
    Ok(Arc::new(App {
        config,
        orchestrator,
        store,
        metrics,
        limiter: RateLimiter::keyed(quota),
        in_flight: in_flight::InFlight::new(per_principal),
        ready: AtomicBool::new(false),
        pooling,
        shutdown,
        mcp,
        providers,
        known_principals: Mutex::default(),
        admin_key_file,
        connections,
        data_dir_lock: Mutex::new(Some(data_dir_lock)),
    }))
}

/// Where `/mcp` requests may come from: the configured hosts (with the address the server
/// listens on, when it names one) and origins.
fn mcp_config(config: &ServeConfig) -> crate::mcp::McpConfig {
    let mut allowed_hosts = config.mcp_allowed_hosts.clone();
    if allowed_hosts.iter().any(|h| h == "*") {
        // rmcp serves any Host when the list is empty.
        allowed_hosts.clear();
    } else if !config.listen.ip().is_unspecified() {
        allowed_hosts.push(config.listen.ip().to_string());
    }
    crate::mcp::McpConfig {
        allowed_hosts,
        allowed_origins: config.mcp_allowed_origins.clone(),
        body_limit: config.body_limit,
        max_sessions_per_principal: config.mcp_max_sessions_per_principal,
    }
}

/// The host drivers of the config and their registry, listed once before sessions are
/// recovered (their hosts must be known), then refreshed in the background.
async fn start_hosts(
    config: &ServeConfig,
    parts: HostParts<'_>,
) -> anyhow::Result<Arc<crate::hosts::Registry>> {
    use crate::hosts::{
        DriverSlot, LocalDriver, PluginDriver, Registry, RegistryConfig, StaticDriver,
    };
    let HostParts {
        local,
        configured,
        context,
        hub,
        engine,
        policy,
        secrets,
    } = parts;
    // An admin's drains outlive a restart.
    let drained = context
        .store
        .drained_hosts()
        .map_err(|e| anyhow::anyhow!("cannot read the drained hosts: {e}"))?;
    let mut drivers = Vec::new();
    if local.is_some() {
        drivers.push(DriverSlot {
            driver: Arc::new(LocalDriver {
                workspaces: config.data_dir.join("workspaces"),
                labels: config.local_labels.clone(),
            }),
            // Load and free memory change; the machine is measured every few seconds.
            list_every: Duration::from_secs(5),
            scaling: None,
        });
    }
    if !config.sidecars.is_empty() {
        drivers.push(DriverSlot {
            driver: Arc::new(StaticDriver {
                hosts: config.sidecars.iter().map(|s| s.host.clone()).collect(),
            }),
            list_every: Duration::from_secs(3600),
            scaling: None,
        });
    }
    let mut credentials = std::collections::HashMap::new();
    for entry in &config.drivers {
        let mut settings = entry.settings.clone();
        settings.secrets = secrets.select(entry.secrets.iter().map(String::as_str));
        let driver = PluginDriver::load(
            settings,
            entry.component.clone(),
            engine.clone(),
            policy.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("host driver `{}`: {e}", entry.name))?;
        let can_provision = crate::hosts::HostDriver::info(&driver).can_provision;
        drivers.push(DriverSlot {
            driver: Arc::new(driver),
            list_every: entry.list_every,
            scaling: can_provision.then(|| entry.scaling.clone()),
        });
        credentials.insert(entry.name.clone(), entry.credentials.clone());
    }
    let connector = crate::hosts::SidecarConnector {
        local,
        configured,
        credentials,
        context,
        health_interval: config.sidecar_health_interval,
        health_timeout: config.sidecar_health_timeout,
    };
    let registry = Registry::new(
        RegistryConfig {
            strategy: config.placement_strategy,
            overcommit: config.overcommit,
            wait: config.placement_wait,
            refresh: config.sidecar_health_interval,
            demote_after: config.standby_demote_after,
            drained,
        },
        drivers,
        Arc::new(connector),
        hub,
    );
    registry.start(CancellationToken::new()).await;
    // Hosts a driver reports (those it brought up before a restart among them) are given
    // their first health answer before sessions are recovered onto them.
    registry
        .await_first_answers(config.sidecar_health_timeout)
        .await;
    Ok(registry)
}

/// What the host registry is built from.
struct HostParts<'a> {
    local: Option<LocalSidecar>,
    configured: std::collections::HashMap<String, Arc<dyn crate::sidecar::Sidecar>>,
    context: RemoteContext,
    hub: Arc<EventHub>,
    engine: Arc<SandboxEngine>,
    policy: Arc<PolicyEngine>,
    secrets: &'a SecretStore,
}

/// Takes the data directory for this server (creating it on a first start), or says which
/// server has it.
fn hold_data_dir(config: &ServeConfig) -> anyhow::Result<DataDirLock> {
    data_dir::check_for_server(&config.data_dir)?;
    crate::store::create_private_dir(&config.data_dir)?;
    let holder = format!(
        "pid {}, listening on {}, started at {} ms since the Unix epoch",
        std::process::id(),
        config.listen,
        crate::orchestrator::now_ms()
    );
    Ok(data_dir::lock(&config.data_dir, &holder)?)
}

/// On a first start with no keys, one admin key is created and written to a
/// file only its owner can read, so a newcomer can try the API at once.
fn bootstrap_admin_key(store: &Store, config: &ServeConfig) -> anyhow::Result<Option<PathBuf>> {
    if store.key_count()? > 0 {
        return Ok(None);
    }
    let key = store.create_key("admin", "developer", true)?;
    let path = config.data_dir.join("admin.key");
    std::fs::write(&path, format!("{}\n", key.key))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    tracing::warn!(file = %path.display(), "no API keys yet: created an admin key (principal `admin`, profile `developer`); it is in this file");
    Ok(Some(path))
}

// Each route is registered with `routes!(handler)`: its method and path come from the
// handler's `#[utoipa::path]`, so the OpenAPI document has every route the router serves.

/// The JSON API: a key, the caller's rate and request slots, and the request timeout.
fn api_routes() -> OpenApiRouter<Arc<App>> {
    use routes::{files, hosts, info, keys, listing, plugins, runs, sessions, tasks};
    let routes = OpenApiRouter::new()
        .routes(routes!(info::info))
        .routes(routes!(info::tools))
        .routes(routes!(info::plugins))
        .routes(routes!(plugins::upload, plugins::delete))
        .routes(routes!(plugins::rollback))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::revoke))
        .routes(routes!(hosts::list))
        .routes(routes!(hosts::get))
        .routes(routes!(hosts::drain))
        .routes(routes!(hosts::undrain))
        .routes(routes!(info::authorize))
        .routes(routes!(sessions::create, listing::sessions))
        .routes(routes!(sessions::preflight))
        .routes(routes!(sessions::get, sessions::delete))
        .routes(routes!(tasks::create, listing::tasks))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::cancel))
        .routes(routes!(tasks::answer_approval, tasks::get_approval))
        .routes(routes!(tasks::list_approvals))
        .routes(routes!(runs::create))
        .routes(routes!(runs::get))
        .routes(routes!(runs::cancel))
        .routes(routes!(files::get_file, files::put_file))
        .routes(routes!(files::get_tar, files::put_tar));
    let routes = api_doc::every_route_answers(routes, &[401, 408, 429]);
    let document = api_doc::without_key(OpenApiRouter::new().routes(routes!(info::openapi)));
    routes.merge(api_doc::every_route_answers(document, &[408, 429]))
}

/// Event streams live long: no request timeout for them.
fn stream_routes() -> OpenApiRouter<Arc<App>> {
    let routes = OpenApiRouter::new()
        .routes(routes!(routes::events::stream))
        .routes(routes!(routes::hosts::events));
    api_doc::every_route_answers(routes, &[401, 429])
}

/// Health and metrics need no key and answer even when every request slot is taken.
fn health_routes() -> OpenApiRouter<Arc<App>> {
    use routes::info;
    api_doc::without_key(
        OpenApiRouter::new()
            .routes(routes!(info::livez))
            .routes(routes!(info::readyz))
            .routes(routes!(info::metrics)),
    )
}

/// Every route with its documentation.
pub(crate) fn routes() -> OpenApiRouter<Arc<App>> {
    api_routes().merge(stream_routes()).merge(health_routes())
}

pub fn router(app: Arc<App>) -> Router {
    let api = Router::from(api_routes()).layer(TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        app.config.request_timeout,
    ));
    let streams = Router::from(stream_routes());
    let health = Router::from(health_routes());
    let concurrency =
        tower::limit::GlobalConcurrencyLimitLayer::new(app.config.max_concurrent_requests);
    let slot = axum::middleware::from_fn_with_state(app.clone(), auth::hold_request_slot);
    // MCP answers in its own words (JSON-RPC errors, its own statuses): outside the layer
    // that turns plain errors into problems, with no request timeout (calls and streams last).
    let mcp = Router::new()
        .route_service("/mcp", app.mcp.service.clone())
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            mcp_gate::mcp_gate,
        ))
        .layer(slot.clone())
        .layer(concurrency.clone());
    api.merge(streams)
        .layer(slot)
        .layer(concurrency)
        .merge(health)
        .fallback(|| async { problem::Problem::not_found("route") })
        .method_not_allowed_fallback(|| async {
            problem::Problem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                problem::ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::map_response(
            problem::plain_errors_as_problems,
        ))
        .merge(mcp)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            http_metrics::count,
        ))
        .layer(DefaultBodyLimit::max(app.config.body_limit))
        // Every request gets an id (or keeps the caller's `x-request-id`), logged
        // on its span and returned in the response.
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
        }))
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(tower_http::request_id::MakeRequestUuid))
        .with_state(app)
}

/// Serves until `shutdown` resolves, then stops taking requests, ends event
/// streams, stops running tasks (marked cancelled) and flushes the store.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let reaper = {
        let orchestrator = app.orchestrator.clone();
        let limiter_app = app.clone();
        let retention = app.config.event_retention;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(limiter_app.config.reap_interval);
            let mut first = true;
            loop {
                tick.tick().await;
                orchestrator.reap();
                limiter_app.limiter.retain_recent();
                let store = orchestrator.store().clone();
                // The whole table once (the retention may have changed), then only the
                // sessions that were given events since.
                let whole = std::mem::take(&mut first);
                let pruned = tokio::task::spawn_blocking(move || {
                    if whole {
                        store.prune_all_events(retention)
                    } else {
                        store.prune_events(retention)
                    }
                })
                .await;
                if let Ok(Err(e)) = pruned {
                    tracing::warn!(error = %e, "cannot prune old events");
                }
            }
        })
    };
    let watcher = app.orchestrator.policy().watch(app.config.policy_poll);
    // Revocations by another process (`toolgate keys revoke`) reach open event streams.
    let revocations = {
        let store = app.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REVOCATION_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let store = store.clone();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || store.check_revocations()).await
                {
                    tracing::warn!(error = %e, "cannot check for revoked keys");
                }
            }
        })
    };
    app.ready.store(true, Ordering::SeqCst);
    tracing::info!(addr = %listener.local_addr()?, "toolgate is listening");
    let limits = listener::ConnectionLimits {
        header_timeout: app.config.header_timeout,
        max_connections: fd_limit::fit_connection_cap(app.config.max_connections),
    };
    // From the moment the stop is asked for, `/readyz` answers 503 and new API requests are
    // refused, while the connections open then finish.
    let stopping = {
        let app = app.clone();
        async move {
            shutdown.await;
            app.ready.store(false, Ordering::SeqCst);
            app.shutdown.cancel();
            tracing::info!(
                connections = app.connections.open(),
                grace_s = CONNECTION_GRACE.as_secs(),
                "shutting down: /readyz answers 503 while open connections drain"
            );
        }
    };
    let draining = listener::accept_until(
        listener,
        router(app.clone()),
        limits,
        app.connections.clone(),
        stopping,
        None,
    )
    .await;
    // Event streams end, running tasks are cancelled and recorded (a waiting client gets its
    // cancelled task), then the open connections finish.
    reaper.abort();
    revocations.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    app.orchestrator.shutdown().await;
    if draining.finish(CONNECTION_GRACE).await {
        tracing::info!("connections drained; the listener is closed");
    } else {
        tracing::warn!("connections still open after the grace period were closed");
    }
    app.store.close();
    app.data_dir_lock
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    Ok(())
}

/// How often the server looks for keys revoked by another process, for its open event
/// streams (requests look at every call).
pub const REVOCATION_POLL: Duration = Duration::from_millis(500);

/// How long open connections may take to finish once the server stops.
const CONNECTION_GRACE: Duration = Duration::from_secs(10);
