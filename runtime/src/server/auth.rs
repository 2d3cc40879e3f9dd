//! `Authorization: Bearer <key>` → the caller, then the caller's rate limit.

use super::App;
use super::problem::{ErrorCode, Problem};
use crate::orchestrator::Caller;
use crate::store::KeyRecord;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// An authenticated caller within its rate limit.
pub struct Authed(pub Caller);

impl FromRequestParts<Arc<App>> for Authed {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        let AuthedKey { caller, .. } = AuthedKey::from_request_parts(parts, app).await?;
        Ok(Authed(caller))
    }
}

/// [`Authed`], and the id of the key that authenticated the request: for what lives on after
/// the request was answered (an event stream), which must end when its key is revoked.
pub struct AuthedKey {
    pub caller: Caller,
    pub key_id: String,
}

impl FromRequestParts<Arc<App>> for AuthedKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        // Authenticated already when the request took its slot.
        let record = match parts.extensions.remove::<KeyRecord>() {
            Some(record) => record,
            None => {
                let key = bearer(&parts.headers).ok_or_else(Problem::unauthorized)?;
                app.store
                    .authenticate(key)
                    .map_err(|e| Problem::internal(format!("cannot check the key: {e}")))?
                    .ok_or_else(Problem::unauthorized)?
            }
        };
        let key_id = record.id;
        let caller = Caller {
            principal: record.principal,
            profile: record.profile,
            admin: record.admin,
        };
        if let Err(not_until) = app.limiter.check_key(&caller.principal) {
            app.metrics.rate_limited("rate");
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let mut problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!(
                    "too many requests from `{}`; retry after {} ms",
                    caller.principal,
                    wait.as_millis()
                ),
            );
            problem.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
            return Err(problem);
        }
        app.ensure_principal(&caller);
        Ok(AuthedKey { caller, key_id })
    }
}

/// 403 unless the caller's key is an admin key.
pub fn require_admin(caller: &Caller, what: &str) -> Result<(), AdminOnly> {
    if caller.admin {
        Ok(())
    } else {
        Err(AdminOnly(format!("only admin keys may {what}")))
    }
}

/// A route for admin keys called with another: 403 `forbidden`.
#[derive(Debug)]
pub struct AdminOnly(String);

impl From<AdminOnly> for Problem {
    fn from(AdminOnly(detail): AdminOnly) -> Self {
        Problem::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, detail)
    }
}

/// Resolves once key `id` is revoked or gone, as this process learns of it: at once for a
/// revocation through the API, within [`super::REVOCATION_POLL`] for one by another process
/// (`toolgate keys revoke`). Each revocation costs every waiter one indexed read.
pub async fn key_revoked(store: crate::store::Store, id: String) {
    let mut generations = store.revocations();
    loop {
        let (store, id) = (store.clone(), id.clone());
        let valid = tokio::task::spawn_blocking(move || store.key(&id))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|key| key.is_some_and(|k| k.revoked_at_ms.is_none()));
        // A key that cannot be read now is given the benefit of the doubt until the next change.
        if valid == Some(false) {
            return;
        }
        if generations.changed().await.is_err() {
            // The store is gone: the server is stopping, which ends the stream anyway.
            return std::future::pending().await;
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// Holds one of the caller's request slots while its request is handled (body read,
/// answer made), so one principal cannot take every slot of the server. Requests
/// without a valid key pass through to be refused by [`Authed`].
pub async fn hold_request_slot(
    State(app): State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Response {
    // Stopping: the connections still open finish what they started, nothing new begins.
    if app.shutdown.is_cancelled() {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotReady,
            "the server is shutting down",
        )
        .into_response();
    }
    let record =
        bearer(request.headers()).and_then(|key| app.store.authenticate(key).ok().flatten());
    let Some(record) = record else {
        return next.run(request).await;
    };
    let Some(_slot) = app.in_flight.try_take(&record.principal) else {
        app.metrics.rate_limited("in_flight");
        let mut problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!(
                "`{}` has {} requests in flight, the most a principal may; retry when one is answered",
                record.principal,
                app.in_flight.per_principal()
            ),
        );
        problem.retry_after = Some(1);
        return problem.into_response();
    };
    request.extensions_mut().insert(record);
    next.run(request).await
}
