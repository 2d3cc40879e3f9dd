use crate::policy::{PolicyDecision, PolicyStatus};
use crate::server::App;
use crate::server::api_doc::errors;
use crate::server::auth::Authed;
use crate::server::problem::{ErrorCode, Problem};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Liveness {
    #[schema(value_type = String, examples("ok"))]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(value_type = String, examples("ready"))]
    status: &'static str,
    /// Hash of the policy set in force.
    policy_version: String,
}

/// The process answers
#[utoipa::path(get, path = "/livez", operation_id = "livez", tag = "operations",
    responses((status = 200, description = "Alive.", body = Liveness)))]
pub async fn livez() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// Ready to take requests
///
/// Ready once started, with a policy set loaded, and until shutdown begins.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses((status = 200, description = "Taking requests.", body = Readiness),
        errors::ServiceUnavailable))]
pub async fn readyz(State(app): State<Arc<App>>) -> Result<impl IntoResponse, Problem> {
    if !app.ready.load(Ordering::SeqCst) {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotReady,
            "starting or shutting down",
        ));
    }
    Ok(Json(Readiness {
        status: "ready",
        policy_version: app.orchestrator.policy().version(),
    }))
}

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "The metrics, Prometheus text format 0.0.4.",
        body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

#[derive(Serialize, ToSchema)]
pub struct Info {
    #[schema(value_type = String, examples("toolgate"))]
    name: &'static str,
    #[schema(value_type = String)]
    version: &'static str,
    #[schema(value_type = String, examples("api"))]
    mode: &'static str,
    policy: PolicyStatus,
    /// Whether the engine uses wasmtime's pooling allocator.
    pooling_allocator: bool,
    /// The agents a run may name (`POST /v1/sessions/{id}/runs`).
    agents: Vec<String>,
    /// The model providers runs may call, with their models (the first is the default).
    model_providers: Vec<ModelProviderInfo>,
}

/// A configured model provider, as runs see it (never its key or address).
#[derive(Serialize, ToSchema)]
pub struct ModelProviderInfo {
    name: String,
    models: Vec<String>,
}

/// Version, mode and policy status
#[utoipa::path(get, path = "/v1/info", operation_id = "getInfo", tag = "info",
    responses((status = 200, description = "The server.", body = Info)))]
pub async fn info(State(app): State<Arc<App>>, Authed(caller): Authed) -> Json<Info> {
    let policy = crate::orchestrator::policy_status(app.orchestrator.policy().status(), &caller);
    Json(Info {
        name: "toolgate",
        version: env!("CARGO_PKG_VERSION"),
        mode: "api",
        policy,
        pooling_allocator: app.pooling,
        agents: app.orchestrator.agent_names(),
        model_providers: app
            .providers
            .names()
            .map(|name| ModelProviderInfo {
                name: name.to_owned(),
                models: app.providers.models(name).unwrap_or_default().to_vec(),
            })
            .collect(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct ToolList {
    tools: Vec<ToolInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct ToolInfo {
    /// `plugin.tool`.
    #[schema(examples("fs.read"))]
    name: String,
    description: String,
    /// The JSON Schema of the tool's input.
    #[schema(value_type = Object)]
    input_schema: Value,
}

/// Every tool of every plugin
///
/// Plugins that cannot be loaded are left out (and logged).
#[utoipa::path(get, path = "/v1/tools", operation_id = "listTools", tag = "info",
    responses((status = 200, description = "The tools, with their input schemas.", body = ToolList)))]
pub async fn tools(State(app): State<Arc<App>>, Authed(_caller): Authed) -> Json<ToolList> {
    let catalog = app.orchestrator.catalog();
    let mut tools = Vec::new();
    for name in catalog.names() {
        match catalog.get(&name).await {
            Ok(plugin) => tools.extend(plugin.tools().iter().map(|t| ToolInfo {
                name: format!("{name}.{}", t.name),
                description: t.description.clone(),
                input_schema: t.input_schema.clone(),
            })),
            Err(e) => tracing::warn!(plugin = %name, error = %e, "plugin unavailable"),
        }
    }
    Json(ToolList { tools })
}

#[derive(Serialize, ToSchema)]
pub struct PluginList {
    plugins: Vec<PluginEntry>,
}

/// A plugin with its tools, or why it cannot be used.
#[derive(Serialize, ToSchema)]
pub struct PluginEntry {
    #[schema(examples("fs"))]
    name: String,
    /// `sha256:` and the hex digest of the component's bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    digest: Option<String>,
    /// Its tools, `plugin.tool`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    tools: Option<Vec<String>>,
    /// Why it cannot be used, naming only the plugin and a stable code.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<String>,
    /// Stable: `unreadable`, `not_wasm`, `core_module`, `invalid_component`, `wrong_world`,
    /// `wrong_signature`, `unsupported_import`, `describe_failed`, `unavailable`, or a describe
    /// bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error_code: Option<String>,
    /// The full story, which may name host paths: admin keys only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error_detail: Option<String>,
}

/// The plugins and their digests
///
/// A plugin that cannot be used says why: its name and a stable `error_code` for anyone, the
/// full story (which may name host paths) in `error_detail` for admins only.
#[utoipa::path(get, path = "/v1/plugins", operation_id = "listPlugins", tag = "info",
    responses((status = 200, description = "The plugins.", body = PluginList)))]
pub async fn plugins(State(app): State<Arc<App>>, Authed(caller): Authed) -> Json<PluginList> {
    let catalog = app.orchestrator.catalog();
    let mut plugins = Vec::new();
    for name in catalog.names() {
        let entry = match catalog.get(&name).await {
            Ok(p) => PluginEntry {
                digest: Some(format!("sha256:{}", p.digest())),
                tools: Some(
                    p.tools()
                        .iter()
                        .map(|t| format!("{name}.{}", t.name))
                        .collect(),
                ),
                error: None,
                error_code: None,
                error_detail: None,
                name,
            },
            Err(e) => PluginEntry {
                digest: None,
                tools: None,
                error: Some(e.public_message(&name)),
                error_code: Some(e.code().to_owned()),
                error_detail: caller.admin.then(|| e.to_string()),
                name,
            },
        };
        plugins.push(entry);
    }
    Json(PluginList { plugins })
}

/// A what-if question, asked as the caller's principal.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatIf {
    /// An action name (`Action::"invoke"` is accepted too).
    #[schema(examples("invoke"))]
    action: String,
    /// A Cedar entity reference.
    #[schema(examples("Tool::\"fs.write\""))]
    resource: String,
    /// The action's context in Cedar JSON form, checked against the schema; a mismatch is a
    /// deny with `errors`.
    #[serde(default = "empty")]
    #[schema(value_type = Object, default = json!({}))]
    context: Value,
}

fn empty() -> Value {
    json!({})
}

/// What would the policy decide?
///
/// Evaluates one request against the policy set in force as the caller's principal, without
/// doing anything.
#[utoipa::path(post, path = "/v1/authorize", operation_id = "authorize", tag = "info", request_body = WhatIf,
    responses((status = 200, description = "The decision (a context that does not match the schema is a deny with `errors`).", body = PolicyDecision)))]
pub async fn authorize(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    super::Body(what): super::Body<WhatIf>,
) -> Result<Json<PolicyDecision>, Problem> {
    let action = crate::policy::Action::parse(&what.action)
        .ok_or_else(|| Problem::invalid(format!("unknown action `{}`", what.action)))?;
    let resource = crate::policy::parse_entity_ref(&what.resource).map_err(Problem::invalid)?;
    let decision = app
        .orchestrator
        .policy()
        .decide(&crate::policy::AuthzRequest {
            principal: caller.principal,
            action,
            resource,
            context: what.context,
        });
    Ok(Json(decision))
}

/// This document
///
/// Generated from the routes; checked in as `runtime/openapi.json`.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = Object)))]
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::server::api_doc::served().to_string(),
    )
}
