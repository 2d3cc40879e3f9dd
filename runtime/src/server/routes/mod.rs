//! The HTTP API, one module per resource.

pub mod events;
pub mod files;
pub mod hosts;
pub mod info;
pub mod keys;
pub mod listing;
pub mod plugins;
pub mod runs;
pub mod sessions;
pub mod tasks;

use super::App;
use super::problem::{ErrorCode, Problem};
use crate::orchestrator::{Orchestrator, OrchestratorError};
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde_json::json;

impl From<OrchestratorError> for Problem {
    fn from(error: OrchestratorError) -> Self {
        let detail = error.to_string();
        match error {
            OrchestratorError::NotFound(what) => Problem::not_found(what),
            // `reasons` are the decision's own (the determining policy ids), `explanation`
            // says the same in words (with the policies' `@reason`s).
            OrchestratorError::Forbidden {
                reasons: explanation,
                decision,
            } => Problem::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, detail).with(json!({
                "reasons": decision.get("reasons").cloned().unwrap_or_else(|| json!([])),
                "explanation": explanation,
                "decision": decision,
            })),
            OrchestratorError::Capacity { retry_after_s, .. } => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Capacity, detail)
                    .retry_after(retry_after_s)
            }
            OrchestratorError::SidecarUnavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::SidecarUnavailable,
                detail,
            )
            .retry_after(5),
            OrchestratorError::Conflict(_) => {
                Problem::new(StatusCode::CONFLICT, ErrorCode::Conflict, detail)
            }
            OrchestratorError::NotUploaded(_) => {
                Problem::new(StatusCode::CONFLICT, ErrorCode::PluginNotUploaded, detail)
            }
            OrchestratorError::NoPreviousVersion(_) => {
                Problem::new(StatusCode::CONFLICT, ErrorCode::NoPreviousVersion, detail)
            }
            OrchestratorError::Invalid(_) => Problem::invalid(detail),
            OrchestratorError::UnknownTool(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::UnknownTool,
                detail,
            ),
            OrchestratorError::UnknownAgent(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::UnknownAgent,
                detail,
            ),
            OrchestratorError::UnknownModel(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::UnknownModel,
                detail,
            ),
            OrchestratorError::RunActive { run } => {
                Problem::new(StatusCode::CONFLICT, ErrorCode::RunActive, detail)
                    .with(json!({ "run": run }))
            }
            OrchestratorError::InvalidPlugin { reason, .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidPlugin,
                detail,
            )
            .with(json!({ "reason": reason })),
            OrchestratorError::Internal(_) => Problem::internal(detail),
        }
    }
}

/// Runs orchestrator work that reads the store or the disk on the blocking pool, so a slow
/// disk holds up this request only, never the runtime's workers.
pub(crate) async fn blocking<T: Send + 'static>(
    app: &std::sync::Arc<App>,
    work: impl FnOnce(&Orchestrator) -> Result<T, OrchestratorError> + Send + 'static,
) -> Result<T, Problem> {
    let orchestrator = app.orchestrator.clone();
    tokio::task::spawn_blocking(move || work(&orchestrator))
        .await
        .map_err(|e| Problem::internal(format!("the request's work failed: {e}")))?
        .map_err(Problem::from)
}

/// A JSON body whose every rejection is a problem+json with a stable code.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    "the request body is larger than the server accepts",
                ))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the body as `Content-Type: application/json`",
            )),
            Err(e) => Err(Problem::invalid(e.body_text())),
        }
    }
}
