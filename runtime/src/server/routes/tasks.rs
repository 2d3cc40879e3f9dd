use super::{Body, blocking};
use crate::orchestrator::CreateTask;
use crate::server::App;
use crate::server::auth::Authed;
use crate::server::problem::Problem;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Runs a task. With `"wait": true` (the default) the response is the
/// finished task; a client that disconnects while waiting cancels it.
pub async fn create(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(session): Path<String>,
    Body(request): Body<CreateTask>,
) -> Result<Response, Problem> {
    let (record, handle) = app
        .orchestrator
        .create_task(&caller, &session, request)
        .await?;
    match handle {
        None => Ok((StatusCode::ACCEPTED, Json(record)).into_response()),
        Some(handle) => {
            let finished = handle.finished().await?;
            Ok((StatusCode::OK, Json(finished)).into_response())
        }
    }
}

pub async fn get(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path((session, task)): Path<(String, String)>,
) -> Result<impl IntoResponse, Problem> {
    Ok(Json(
        blocking(&app, move |o| o.get_task(&caller, &session, &task)).await?,
    ))
}

pub async fn cancel(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path((session, task)): Path<(String, String)>,
) -> Result<impl IntoResponse, Problem> {
    let record = blocking(&app, move |o| o.cancel_task(&caller, &session, &task)).await?;
    Ok((StatusCode::ACCEPTED, Json(record)))
}
