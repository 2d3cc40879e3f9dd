use super::{Body, blocking};
use crate::orchestrator::CreateRun;
use crate::server::App;
use crate::server::api_doc::errors;
use crate::server::auth::Authed;
use crate::server::problem::Problem;
use crate::store::RunRecord;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Start an agent run
///
/// The agent (`tool-loop` is shipped) runs in the sandbox. Its model calls are decided by
/// `use_model` and made by the server with the provider's key; its tool calls are tasks of the
/// session. With `"wait": true` (the default) the response is the ended run; a client that
/// disconnects while waiting cancels it. One run at a time per session (`run_active`).
#[utoipa::path(post, path = "/v1/sessions/{id}/runs", operation_id = "createRun", tag = "runs",
    params(super::sessions::SessionPath), request_body = CreateRun,
    responses((status = 200, description = "The ended run (`wait: true`).", body = RunRecord),
        (status = 202, description = "The queued run (`wait: false`).", body = RunRecord),
        errors::BadRequest, errors::UnprocessableEntity, errors::Forbidden, errors::NotFound,
        errors::Conflict))]
pub async fn create(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(session): Path<String>,
    Body(request): Body<CreateRun>,
) -> Result<Response, Problem> {
    let (record, handle) = app
        .orchestrator
        .create_run(&caller, &session, request)
        .await?;
    match handle {
        None => Ok((StatusCode::ACCEPTED, Json(record)).into_response()),
        Some(handle) => {
            let ended = handle.finished().await?;
            Ok((StatusCode::OK, Json(ended)).into_response())
        }
    }
}

/// A run
#[utoipa::path(get, path = "/v1/sessions/{id}/runs/{run}", operation_id = "getRun", tag = "runs", params(RunPath),
    responses((status = 200, description = "The run.", body = RunRecord), errors::NotFound))]
pub async fn get(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path((session, run)): Path<(String, String)>,
) -> Result<impl IntoResponse, Problem> {
    Ok(Json(
        blocking(&app, move |o| o.get_run(&caller, &session, &run)).await?,
    ))
}

/// Cancel a run
///
/// A queued or running run ends `cancelled`, and the tool call it waits for with it;
/// cancelling an ended run is a conflict.
#[utoipa::path(post, path = "/v1/sessions/{id}/runs/{run}/cancel", operation_id = "cancelRun", tag = "runs",
    params(RunPath),
    responses((status = 202, description = "Cancelling: the run as it is now.", body = RunRecord),
        errors::NotFound, errors::Conflict))]
pub async fn cancel(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path((session, run)): Path<(String, String)>,
) -> Result<impl IntoResponse, Problem> {
    let record = blocking(&app, move |o| o.cancel_run(&caller, &session, &run)).await?;
    Ok((StatusCode::ACCEPTED, Json(record)))
}

/// The path of a run.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct RunPath {
    /// The session's id, `s_...`.
    id: String,
    /// The run's id, `r_...`.
    run: String,
}
