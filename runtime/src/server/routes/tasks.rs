use super::{Body, blocking};
use crate::orchestrator::{ApprovalAnswer, CreateTask, PendingApproval};
use crate::server::App;
use crate::server::api_doc::errors;
use crate::server::auth::Authed;
use crate::server::problem::Problem;
use crate::store::{ApprovalRecord, TaskRecord};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Run a task
///
/// With `"wait": true` (the default) the response is the finished task; a client that
/// disconnects while waiting cancels it.
#[utoipa::path(post, path = "/v1/sessions/{id}/tasks", operation_id = "createTask", tag = "tasks",
    params(super::sessions::SessionPath), request_body = CreateTask,
    responses((status = 200, description = "The finished task (`wait: true`).", body = TaskRecord),
        (status = 202, description = "The queued task (`wait: false`).", body = TaskRecord),
        errors::NotFound, errors::Conflict))]
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

/// A task
#[utoipa::path(get, path = "/v1/sessions/{id}/tasks/{task}", operation_id = "getTask", tag = "tasks", params(TaskPath),
    responses((status = 200, description = "The task.", body = TaskRecord), errors::NotFound))]
pub async fn get(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path((session, task)): Path<(String, String)>,
) -> Result<impl IntoResponse, Problem> {
    Ok(Json(
        blocking(&app, move |o| o.get_task(&caller, &session, &task)).await?,
    ))
}

/// Cancel a task
///
/// A queued or running task ends `cancelled`; cancelling a finished task is a conflict.
#[utoipa::path(post, path = "/v1/sessions/{id}/tasks/{task}/cancel", operation_id = "cancelTask", tag = "tasks",
    params(TaskPath),
    responses((status = 202, description = "Cancelling: the task as it is now.", body = TaskRecord),
        errors::NotFound, errors::Conflict))]
pub async fn cancel(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path((session, task)): Path<(String, String)>,
) -> Result<impl IntoResponse, Problem> {
    let record = blocking(&app, move |o| o.cancel_task(&caller, &session, &task)).await?;
    Ok((StatusCode::ACCEPTED, Json(record)))
}

/// The path of a task.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct TaskPath {
    /// The session's id, `s_...`.
    id: String,
    /// The task's id, `t_...`.
    task: String,
}

/// Answer a task's approval
///
/// A task whose invoke permit says `@approval("required")` waits in `awaiting_approval` (its
/// `approval.requested` event names this route). A principal the policy allows to `approve`
/// it answers: `true` runs the task, `false` denies it. The decision and the answer are
/// recorded; the first answer is the only one.
#[utoipa::path(post, path = "/v1/sessions/{id}/tasks/{task}/approval", operation_id = "answerApproval", tag = "tasks",
    params(TaskPath), request_body = ApprovalAnswer,
    responses((status = 200, description = "The approval, answered.", body = ApprovalRecord),
        errors::BadRequest, errors::UnprocessableEntity, errors::Forbidden, errors::NotFound, errors::Conflict))]
pub async fn answer_approval(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path((session, task)): Path<(String, String)>,
    Body(answer): Body<ApprovalAnswer>,
) -> Result<impl IntoResponse, Problem> {
    // On a blocking thread, which runs to its end: the answer is recorded even if the client
    // hangs up.
    let answered = blocking(&app, move |o| {
        o.answer_approval(&caller, &session, &task, answer)
    })
    .await?;
    Ok(Json(answered))
}

/// A task's approval
///
/// The approval a task asked for: pending, or how it was answered (by whom, with what comment).
#[utoipa::path(get, path = "/v1/sessions/{id}/tasks/{task}/approval", operation_id = "getApproval", tag = "tasks",
    params(TaskPath),
    responses((status = 200, description = "The approval.", body = ApprovalRecord), errors::NotFound))]
pub async fn get_approval(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path((session, task)): Path<(String, String)>,
) -> Result<impl IntoResponse, Problem> {
    Ok(Json(
        blocking(&app, move |o| o.get_approval(&caller, &session, &task)).await?,
    ))
}

/// The approvals you may give
///
/// Tasks waiting for a person's approval that the caller's policy allows it to `approve`
/// (oldest first, at most 1000), with what each would run: an approver's inbox.
#[utoipa::path(get, path = "/v1/approvals", operation_id = "listApprovals", tag = "tasks",
    responses((status = 200, description = "The pending approvals.", body = Vec<PendingApproval>)))]
pub async fn list_approvals(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
) -> Result<impl IntoResponse, Problem> {
    Ok(Json(
        blocking(&app, move |o| o.approvals_for(&caller)).await?,
    ))
}
