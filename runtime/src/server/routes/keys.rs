//! API keys for admins: `GET /v1/keys` lists them (never a secret), `POST /v1/keys` creates
//! one (the key is in that answer only), `DELETE /v1/keys/{id}` revokes one: its next
//! request is a 401 and its open event streams end.

use super::Body;
use crate::server::App;
use crate::server::api_doc::errors;
use crate::server::auth::{Authed, require_admin};
use crate::server::problem::{ErrorCode, Problem};
use crate::store::{KeyInfo, NewKey};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `POST /v1/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub principal: String,
    /// A profile of the policy entities (`Profile::"..."`).
    pub profile: String,
    /// May manage keys and plugins.
    #[serde(default)]
    pub admin: bool,
}

fn store_error(e: crate::store::StoreError) -> Problem {
    Problem::internal(format!("cannot read or write the keys: {e}"))
}

/// Runs store work off the async workers.
async fn on_store<T: Send + 'static>(
    app: &Arc<App>,
    work: impl FnOnce(&crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Problem> {
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|e| Problem::internal(format!("the request's work failed: {e}")))?
        .map_err(store_error)
}

/// Every key, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

/// The keys (admin keys only)
///
/// Every key, revoked ones included, oldest first; never a secret.
#[utoipa::path(get, path = "/v1/keys", operation_id = "listKeys", tag = "keys",
    responses((status = 200, description = "The keys.", body = KeyList), errors::Forbidden))]
pub async fn list(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
) -> Result<impl IntoResponse, Problem> {
    require_admin(&caller, "list keys")?;
    let keys = on_store(&app, |store| store.list_keys()).await?;
    Ok(Json(KeyList { keys }))
}

/// Create a key (admin keys only)
///
/// The principal is a member of the profile for policy decisions; the profile must exist in the
/// policy entities. The key is in this answer only.
#[utoipa::path(post, path = "/v1/keys", operation_id = "createKey", tag = "keys", request_body = CreateKey,
    responses((status = 201, description = "The new key, shown this once.", body = NewKey),
        errors::Forbidden))]
pub async fn create(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Body(request): Body<CreateKey>,
) -> Result<impl IntoResponse, Problem> {
    require_admin(&caller, "create keys")?;
    let printable = |s: &str| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control);
    if !printable(&request.principal) {
        return Err(Problem::invalid(
            "`principal` must be 1-128 printable characters",
        ));
    }
    if !printable(&request.profile) || !app.orchestrator.policy().has_profile(&request.profile) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::UnknownProfile,
            format!(
                "no profile `{}` in the policy entities (`Profile::\"...\"`)",
                request.profile
            ),
        ));
    }
    let CreateKey {
        principal,
        profile,
        admin,
    } = request;
    let key = on_store(&app, move |store| {
        store.create_key(&principal, &profile, admin)
    })
    .await?;
    tracing::info!(key = %key.id, principal = %key.principal, profile = %key.profile, admin = key.admin, by = %caller.principal, "key created");
    Ok((StatusCode::CREATED, Json(key)))
}

/// Revoke a key (admin keys only)
///
/// From its next request on the key gets 401, and its open event streams end. Revoking a
/// revoked key answers it again.
#[utoipa::path(delete, path = "/v1/keys/{id}", operation_id = "revokeKey", tag = "keys",
    params(("id" = String, Path, description = "The key's id, `key_...`.")),
    responses((status = 200, description = "The revoked key.", body = KeyInfo), errors::Forbidden,
        errors::NotFound))]
pub async fn revoke(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require_admin(&caller, "revoke keys")?;
    let revoked = on_store(&app, move |store| store.revoke_key(&id))
        .await?
        .ok_or_else(|| Problem::not_found("key"))?;
    tracing::info!(key = %revoked.id, principal = %revoked.principal, by = %caller.principal, "key revoked");
    Ok(Json(revoked))
}
