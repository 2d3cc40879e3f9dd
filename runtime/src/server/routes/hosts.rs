//! `/v1/hosts`: where sessions run, their state, capacity and allocation; admins drain and
//! undrain them and follow their changes.

use super::events::{Cursor, sse, start_after};
use crate::hosts::{DriverInfo, HOSTS_STREAM, HostView};
use crate::server::App;
use crate::server::api_doc::errors;
use crate::server::auth::{Authed, AuthedKey};
use crate::server::problem::{ErrorCode, Problem};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct HostList {
    /// How placement scores the hosts a session fits on: `spread` or `bin_pack`.
    strategy: crate::vocabulary::PlacementStrategy,
    /// The drivers that report the hosts.
    drivers: Vec<DriverInfo>,
    hosts: Vec<HostView>,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct HostPath {
    /// The host's id.
    #[allow(dead_code)]
    id: String,
}

fn shown(view: HostView, admin: bool) -> HostView {
    if admin { view } else { view.public() }
}

/// Hosts sessions run on
///
/// Every host of every driver: its state and why, labels, capacity (what it has), what
/// sessions may reserve (capacity times the overcommit factors) and what open sessions
/// reserve. Endpoints and machine figures are shown to admin keys only.
#[utoipa::path(get, path = "/v1/hosts", operation_id = "listHosts", tag = "hosts",
    responses((status = 200, description = "The hosts.", body = HostList)))]
pub async fn list(State(app): State<Arc<App>>, Authed(caller): Authed) -> Json<HostList> {
    let registry = app.orchestrator.hosts();
    Json(HostList {
        strategy: registry.strategy(),
        drivers: registry.drivers().to_vec(),
        hosts: registry
            .hosts()
            .into_iter()
            .map(|h| shown(h, caller.admin))
            .collect(),
    })
}

/// One host
#[utoipa::path(get, path = "/v1/hosts/{id}", operation_id = "getHost", tag = "hosts",
    params(HostPath),
    responses((status = 200, description = "The host.", body = HostView), errors::NotFound))]
pub async fn get(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<HostView>, Problem> {
    app.orchestrator
        .hosts()
        .host(&id)
        .map(|h| Json(shown(h, caller.admin)))
        .ok_or_else(|| Problem::not_found("host"))
}

fn admin_only(admin: bool, what: &str) -> Result<(), Problem> {
    if admin {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!("only admin keys may {what}"),
        ))
    }
}

/// Drain a host (admin keys only)
///
/// The host keeps its sessions and takes no new ones until it is undrained. Idempotent.
#[utoipa::path(post, path = "/v1/hosts/{id}/drain", operation_id = "drainHost", tag = "hosts",
    params(HostPath),
    responses((status = 200, description = "The host, draining.", body = HostView),
        errors::Forbidden, errors::NotFound))]
pub async fn drain(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<HostView>, Problem> {
    set_drained(&app, caller.admin, &id, true)
}

/// Undrain a host (admin keys only)
///
/// The host takes sessions again (if it is otherwise ready). Idempotent.
#[utoipa::path(post, path = "/v1/hosts/{id}/undrain", operation_id = "undrainHost", tag = "hosts",
    params(HostPath),
    responses((status = 200, description = "The host.", body = HostView),
        errors::Forbidden, errors::NotFound))]
pub async fn undrain(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<HostView>, Problem> {
    set_drained(&app, caller.admin, &id, false)
}

fn set_drained(app: &App, admin: bool, id: &str, drain: bool) -> Result<Json<HostView>, Problem> {
    admin_only(admin, "drain and undrain hosts")?;
    if app.orchestrator.hosts().host(id).is_none() {
        return Err(Problem::not_found("host"));
    }
    // Kept before it takes effect: a drain never holds only until the next restart.
    app.store
        .set_host_drained(id, drain)
        .map_err(|e| Problem::internal(format!("cannot record the drain: {e}")))?;
    let view = app
        .orchestrator
        .hosts()
        .drain(id, drain)
        .ok_or_else(|| Problem::not_found("host"))?;
    tracing::info!(host = id, drain, "host drain set by an admin");
    Ok(Json(view))
}

/// Host state changes (SSE, admin keys only)
///
/// One `host.changed` event per change (`host`, `driver`, `from`, `to`, `reason`, `at_ms`;
/// `from` is null for a host just added, `to` null for one that left), kept in the store
/// and replayed from `Last-Event-ID` or `?after=` like a session's events.
#[utoipa::path(get, path = "/v1/hosts/events", operation_id = "streamHostEvents", tag = "hosts",
    params(Cursor,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id.")),
    responses((status = 200, description = "The event stream.", body = String, content_type = "text/event-stream"),
        errors::Forbidden, errors::UnprocessableEntity, errors::ServiceUnavailable))]
pub async fn events(
    State(app): State<Arc<App>>,
    AuthedKey { caller, key_id }: AuthedKey,
    Query(cursor): Query<Cursor>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    admin_only(caller.admin, "follow host changes")?;
    let after = start_after(&headers, &cursor)?;
    let subscription = app
        .orchestrator
        .hub()
        .subscribe(HOSTS_STREAM, after)
        .map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Capacity,
                "too many event subscribers",
            )
        })?;
    Ok(sse(&app, subscription, key_id))
}
