//! API keys for admins: `GET /v1/keys` lists them (never a secret), `POST /v1/keys` creates
//! one (the key is in that answer only), `DELETE /v1/keys/{id}` revokes one: its next
//! request is a 401 and its open event streams end.

use super::Body;
use crate::server::App;
use crate::server::auth::{Authed, require_admin};
use crate::server::problem::Problem;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// `POST /v1/keys`.
#[derive(Debug, Deserialize)]
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

pub async fn list(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
) -> Result<impl IntoResponse, Problem> {
    require_admin(&caller, "list keys")?;
    let keys = on_store(&app, |store| store.list_keys()).await?;
    Ok(Json(json!({ "keys": keys })))
}

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
            "unknown_profile",
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
