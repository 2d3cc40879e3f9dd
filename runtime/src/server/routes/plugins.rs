//! `PUT /v1/plugins/{name}`: an admin installs or replaces a plugin; `DELETE` removes an
//! upload (the bundled or `--plugins` plugin it replaced comes back) and
//! `POST .../rollback` swaps the upload in force with the one kept.

use crate::orchestrator::{DeletedPlugin, InstalledPlugin};
use crate::server::App;
use crate::server::api_doc::errors;
use crate::server::auth::Authed;
use crate::server::problem::{ErrorCode, Problem};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Install or replace a plugin (admin keys only)
///
/// The body is the component itself, `Content-Type: application/wasm`. 201 for a new
/// plugin, 200 when it replaced one; 422 `invalid_plugin` when it is not a usable tool
/// component or describes more than the describe bounds allow (nothing changes then; `reason`
/// is the stable code, `detail` says which bound). The caller, the name and the content type are checked
/// before the body is read, and the body is read up to `plugin_limit_kb` only.
#[utoipa::path(put, path = "/v1/plugins/{name}", operation_id = "installPlugin", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name: `[a-z0-9_-]`, 1-64 characters.", pattern = "^[a-z0-9_-]{1,64}$")),
    request_body(content = Vec<u8>, content_type = "application/wasm",
        description = "The WebAssembly component (`application/octet-stream` is taken too)."),
    responses((status = 201, description = "Installed: a new plugin.", body = InstalledPlugin),
        (status = 200, description = "Installed in place of the plugin of that name.", body = InstalledPlugin),
        errors::Forbidden, errors::PayloadTooLarge, errors::UnsupportedMediaType,
        errors::UnprocessableEntity))]
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
            ErrorCode::Forbidden,
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
            ErrorCode::UnsupportedMediaType,
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
                    ErrorCode::PayloadTooLarge,
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

/// Delete an uploaded plugin (admin keys only)
///
/// The bundled or `--plugins` plugin the upload replaced, if any, is in force again for the
/// next task; running tasks keep the plugin they started with. The deleted upload is kept for a
/// rollback. 409 `plugin_not_uploaded` for a plugin that is not an upload.
#[utoipa::path(delete, path = "/v1/plugins/{name}", operation_id = "deletePlugin", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name: `[a-z0-9_-]`, 1-64 characters.", pattern = "^[a-z0-9_-]{1,64}$")),
    responses((status = 200, description = "Deleted; what is in force now.", body = DeletedPlugin),
        errors::Forbidden, errors::NotFound, errors::Conflict, errors::UnprocessableEntity))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    crate::server::auth::require_admin(&caller, "delete plugins")?;
    let deleted = app.orchestrator.delete_plugin(&caller, &name).await?;
    Ok(Json(deleted).into_response())
}

/// Roll a plugin back (admin keys only)
///
/// Swaps the upload in force with the one kept (the upload an upload replaced, or a delete
/// removed), so a second rollback undoes the first. No body. 409 `no_previous_version` when no
/// earlier upload is kept; 422 `invalid_plugin` when the kept one no longer loads (nothing
/// changes then).
#[utoipa::path(post, path = "/v1/plugins/{name}/rollback", operation_id = "rollbackPlugin", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name: `[a-z0-9_-]`, 1-64 characters.", pattern = "^[a-z0-9_-]{1,64}$")),
    responses((status = 200, description = "The plugin now in force.", body = InstalledPlugin),
        errors::Forbidden, errors::Conflict, errors::UnprocessableEntity))]
pub async fn rollback(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    crate::server::auth::require_admin(&caller, "roll plugins back")?;
    let installed = app.orchestrator.rollback_plugin(&caller, &name).await?;
    Ok(Json(installed).into_response())
}
