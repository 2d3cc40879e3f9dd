use super::{Body, blocking};
use crate::orchestrator::CreateSession;
use crate::server::App;
use crate::server::auth::Authed;
use crate::server::problem::Problem;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::sync::Arc;

pub async fn create(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Body(request): Body<CreateSession>,
) -> Result<impl IntoResponse, Problem> {
    app.orchestrator.check_tools(&request.tools).await?;
    let session = blocking(&app, move |o| o.create_session(&caller, request)).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// `POST /v1/preflight`: what creating this session and using what it names would meet.
pub async fn preflight(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Body(request): Body<CreateSession>,
) -> Result<impl IntoResponse, Problem> {
    Ok(Json(app.orchestrator.preflight(&caller, &request).await?))
}

pub async fn get(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    Ok(Json(
        blocking(&app, move |o| o.get_session(&caller, &id)).await?,
    ))
}

pub async fn delete(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    Ok(Json(
        blocking(&app, move |o| o.close_session(&caller, &id, "deleted")).await?,
    ))
}
