//! `PUT /v1/plugins/{name}`: an admin installs or replaces a plugin; `DELETE` removes an
//! upload (the bundled or `--plugins` plugin it replaced comes back) and
//! `POST .../rollback` swaps the upload in force with the one kept.

use crate::server::App;
use crate::server::auth::Authed;
use crate::server::problem::Problem;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The body is the component itself, `Content-Type: application/wasm`. 201 for a new
/// plugin, 200 when it replaced one; 422 `invalid_plugin` when it is not a usable tool
/// component or describes more than the describe bounds allow (nothing changes then; `reason`
/// is the stable code, `detail` says which bound). The caller, the name and the content type are checked
/// before the body is read, and the body is read up to `plugin_limit_kb` only.
pub async fn upload(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    if !caller.admin {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only admin keys may install plugins",
        ));
    }
    if !crate::sandbox::is_valid_plugin_name(&name) {
        return Err(Problem::invalid(format!(
            "`{name}` is not a valid plugin name (use [a-z0-9_-], 1-64 characters)"
        )));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !["application/wasm", "application/octet-stream"].contains(&essence) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the component as `Content-Type: application/wasm`",
        ));
    }
    let bytes = axum::body::to_bytes(body, app.config.plugin_limit)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!(
                        "the plugin is larger than the server accepts ({} KiB, `plugin_limit_kb`)",
                        app.config.plugin_limit / 1024
                    ),
                )
            } else {
                Problem::invalid(format!("cannot read the request body: {e}"))
            }
        })?;
    let installed = app
        .orchestrator
        .install_plugin(&caller, &name, bytes)
        .await?;
    let status = if installed.replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(installed)).into_response())
}

/// `DELETE /v1/plugins/{name}`: 200 with what is in force now; 404 for no such plugin, 409
/// `plugin_not_uploaded` for a bundled or `--plugins` plugin (only uploads can be deleted).
pub async fn delete(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    crate::server::auth::require_admin(&caller, "delete plugins")?;
    let deleted = app.orchestrator.delete_plugin(&caller, &name).await?;
    Ok(Json(deleted).into_response())
}

/// `POST /v1/plugins/{name}/rollback` (no body): 200 with the plugin now in force; 409
/// `no_previous_version` when no earlier upload is kept; 422 `invalid_plugin` when the kept
/// one no longer loads (nothing changes then).
pub async fn rollback(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    crate::server::auth::require_admin(&caller, "roll plugins back")?;
    let installed = app.orchestrator.rollback_plugin(&caller, &name).await?;
    Ok(Json(installed).into_response())
}
