//! `GET /v1/sessions/{id}/events`: the session's events over SSE, replayed
//! from `Last-Event-ID` or `?after=`, then live, with heartbeats.

use crate::events::{Delivery, HubError};
use crate::server::App;
use crate::server::auth::{AuthedKey, key_revoked};
use crate::server::problem::Problem;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct Cursor {
    after: Option<String>,
}

fn cursor_value(text: &str, what: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what} must be an event id (a whole number)"))
}

pub async fn stream(
    State(app): State<Arc<App>>,
    AuthedKey { caller, key_id }: AuthedKey,
    Path(id): Path<String>,
    Query(cursor): Query<Cursor>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let session = app.orchestrator.get_session(&caller, &id)?;
    if session.state == "closed" {
        // The hub may not know (after a restart): the stream ends after the backlog.
        app.orchestrator.hub().close(&id);
    }
    let header = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = match (header, cursor.after.as_deref()) {
        (Some(text), _) => Some(cursor_value(text, "Last-Event-ID").map_err(Problem::invalid)?),
        (None, Some(text)) => Some(cursor_value(text, "`after`").map_err(Problem::invalid)?),
        (None, None) => None,
    };
    let hub = app.orchestrator.hub();
    let subscribed = hub.subscribe(&id, after);
    if session.state == "closed" {
        // Frees the closed session's entry once this subscriber leaves.
        hub.forget(&id);
    }
    let subscription = match subscribed {
        Ok(subscription) => subscription,
        Err(HubError::Closed) => return Ok(StatusCode::NO_CONTENT.into_response()),
        Err(HubError::TooManySubscribers) => {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "capacity",
                "too many event subscribers",
            ));
        }
    };
    let shutdown = app.shutdown.clone();
    // The stream ends when the server stops or its key is revoked.
    let revoked = key_revoked(app.store.clone(), key_id);
    let events = subscription
        .map(|delivery| {
            let event = match delivery {
                Delivery::Event(e) => Event::default()
                    .id(e.seq.to_string())
                    .event(e.name.clone())
                    .data(&*e.data),
                // The gap's id is its last lost event: a reconnect resumes after it.
                Delivery::Gap { from, to } => Event::default()
                    .id(to.to_string())
                    .event("gap")
                    .data(format!(r#"{{"from":{from},"to":{to}}}"#)),
            };
            Ok::<_, Infallible>(event)
        })
        .take_until(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = revoked => {}
            }
        });
    let keep_alive = KeepAlive::new()
        .interval(app.config.heartbeat)
        .text("heartbeat");
    Ok(Sse::new(events).keep_alive(keep_alive).into_response())
}
