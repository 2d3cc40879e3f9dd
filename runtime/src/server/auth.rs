//! `Authorization: Bearer <key>` → the caller, then the caller's rate limit.

use super::App;
use super::problem::Problem;
use crate::orchestrator::Caller;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::sync::Arc;

/// An authenticated caller within its rate limit.
pub struct Authed(pub Caller);

impl FromRequestParts<Arc<App>> for Authed {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(Problem::unauthorized)?;
        let record = app
            .store
            .authenticate(key)
            .map_err(|e| Problem::internal(format!("cannot check the key: {e}")))?
            .ok_or_else(Problem::unauthorized)?;
        let caller = Caller {
            principal: record.principal,
            profile: record.profile,
            admin: record.admin,
        };
        if let Err(not_until) = app.limiter.check_key(&caller.principal) {
            app.metrics.rate_limited();
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let mut problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
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
        Ok(Authed(caller))
    }
}
