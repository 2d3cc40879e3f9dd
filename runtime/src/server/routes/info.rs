use crate::server::App;
use crate::server::auth::Authed;
use crate::server::problem::Problem;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub async fn livez() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready once started, with a policy set loaded, and until shutdown begins.
pub async fn readyz(State(app): State<Arc<App>>) -> Result<impl IntoResponse, Problem> {
    if !app.ready.load(Ordering::SeqCst) {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "starting or shutting down",
        ));
    }
    Ok(Json(
        json!({ "status": "ready", "policy_version": app.orchestrator.policy().version() }),
    ))
}

pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

pub async fn info(State(app): State<Arc<App>>, Authed(caller): Authed) -> impl IntoResponse {
    let policy = crate::orchestrator::policy_status(app.orchestrator.policy().status(), &caller);
    Json(json!({
        "name": "toolgate",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": "api",
        "policy": policy,
        "pooling_allocator": app.pooling,
    }))
}

pub async fn tools(
    State(app): State<Arc<App>>,
    Authed(_caller): Authed,
) -> Result<impl IntoResponse, Problem> {
    let catalog = app.orchestrator.catalog();
    let mut tools: Vec<Value> = Vec::new();
    for name in catalog.names() {
        match catalog.get(&name).await {
            Ok(plugin) => tools.extend(plugin.tools().iter().map(|t| {
                json!({ "name": format!("{name}.{}", t.name), "description": t.description, "input_schema": t.input_schema })
            })),
            Err(e) => tracing::warn!(plugin = %name, error = %e, "plugin unavailable"),
        }
    }
    Ok(Json(json!({ "tools": tools })))
}

/// The plugins, or why one cannot be used: its name and a stable `error_code` for anyone, the
/// full story (which may name host paths) in `error_detail` for admins only.
pub async fn plugins(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
) -> Result<impl IntoResponse, Problem> {
    let catalog = app.orchestrator.catalog();
    let mut plugins = Vec::new();
    for name in catalog.names() {
        let entry = match catalog.get(&name).await {
            Ok(p) => json!({ "name": name, "digest": format!("sha256:{}", p.digest()),
                "tools": p.tools().iter().map(|t| format!("{name}.{}", t.name)).collect::<Vec<_>>() }),
            Err(e) => {
                let mut entry = json!({ "name": name, "error": e.public_message(&name), "error_code": e.code() });
                if caller.admin {
                    entry["error_detail"] = e.to_string().into();
                }
                entry
            }
        };
        plugins.push(entry);
    }
    Ok(Json(json!({ "plugins": plugins })))
}

pub async fn hosts(State(app): State<Arc<App>>, Authed(_caller): Authed) -> impl IntoResponse {
    Json(json!({ "hosts": [{
        "id": "local",
        "health": if app.ready.load(Ordering::SeqCst) { "ready" } else { "draining" },
        "capacity": { "sessions": app.config.max_sessions },
        "allocation": { "sessions": app.orchestrator.open_sessions() },
    }]}))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatIf {
    action: String,
    resource: String,
    #[serde(default = "empty")]
    context: Value,
}

fn empty() -> Value {
    json!({})
}

/// `POST /v1/authorize`: what would the policy decide for the caller?
pub async fn authorize(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    super::Body(what): super::Body<WhatIf>,
) -> Result<impl IntoResponse, Problem> {
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

/// The OpenAPI document of this API (checked in as `runtime/openapi.json`).
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../../openapi.json"),
    )
}
