use super::{Body, blocking};
use crate::orchestrator::{CreateSession, Preflight, SessionView};
use crate::server::App;
use crate::server::api_doc::errors;
use crate::server::auth::Authed;
use crate::server::problem::Problem;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::sync::Arc;

/// Open a session
///
/// Decided by the `create_session` policy action. The session gets its own workspace, mounted
/// at `/workspace` (the working directory) for each of its tasks and removed when it closes.
#[utoipa::path(post, path = "/v1/sessions", operation_id = "createSession", tag = "sessions", request_body = CreateSession,
    responses((status = 201, description = "The new session.", body = SessionView),
        errors::Forbidden, errors::ServiceUnavailable))]
pub async fn create(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Body(request): Body<CreateSession>,
) -> Result<impl IntoResponse, Problem> {
    app.orchestrator.check_tools(&request.tools).await?;
    // Opening runs to its end on a task of its own: a client that hangs up (or the request
    // timeout) never leaves a host reservation or a sidecar workspace half made. A session
    // opened for a client that has gone is its like any other (the idle reaper closes it).
    let orchestrator = app.orchestrator.clone();
    let session = tokio::spawn(async move { orchestrator.create_session(&caller, request).await })
        .await
        .map_err(|e| Problem::internal(format!("opening the session failed: {e}")))??;
    Ok((StatusCode::CREATED, Json(session)))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreflightOptions {
    /// Run the event self-test (default): the bundled probe tool in a throwaway session of
    /// its own on the chosen host. `false` skips it.
    #[serde(default = "self_test_default")]
    event_self_test: bool,
}

fn self_test_default() -> bool {
    true
}

/// Would this session work?
///
/// The readiness checks: the policy set, the store, the session limit, the host placement
/// would choose and whether it has room for the requested cpu, memory, disk and timeout, each
/// decision creating this session and using what it names would meet (with their reasons),
/// the event self-test (start, tool call, file change, completion and failure events from a
/// probe session of its own), and the mode. Creates nothing of the caller's. Always 200;
/// `ready` is true when every check passed.
#[utoipa::path(post, path = "/v1/preflight", operation_id = "preflight", tag = "sessions", request_body = CreateSession,
    params(PreflightOptions),
    responses((status = 200, description = "The checks.", body = Preflight)))]
pub async fn preflight(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Query(options): Query<PreflightOptions>,
    Body(request): Body<CreateSession>,
) -> Result<impl IntoResponse, Problem> {
    // On a task of its own, like opening a session: the self-test's probe session is closed
    // however the request ends.
    let orchestrator = app.orchestrator.clone();
    let preflight = tokio::spawn(async move {
        orchestrator
            .preflight(&caller, &request, options.event_self_test)
            .await
    })
    .await
    .map_err(|e| Problem::internal(format!("the preflight failed: {e}")))??;
    Ok(Json(preflight))
}

/// A session
///
/// Another principal's session is not found.
#[utoipa::path(get, path = "/v1/sessions/{id}", operation_id = "getSession", tag = "sessions", params(SessionPath),
    responses((status = 200, description = "The session.", body = SessionView), errors::NotFound))]
pub async fn get(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    Ok(Json(
        blocking(&app, move |o| o.get_session(&caller, &id)).await?,
    ))
}

/// Close a session
///
/// Its running tasks are cancelled and its workspace removed; the session, its tasks and its
/// events stay readable. A closed session answers with its record.
#[utoipa::path(delete, path = "/v1/sessions/{id}", operation_id = "closeSession", tag = "sessions", params(SessionPath),
    responses((status = 200, description = "The closed session.", body = SessionView),
        errors::NotFound))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    Ok(Json(
        blocking(&app, move |o| {
            o.close_session(&caller, &id, crate::vocabulary::CloseReason::Deleted)
        })
        .await?,
    ))
}

/// The path of a session.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SessionPath {
    /// The session's id, `s_...`.
    id: String,
}
