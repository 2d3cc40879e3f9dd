//! `GET /v1/sessions/{id}/events`: the session's events over SSE, replayed
//! from `Last-Event-ID` or `?after=`, then live, with heartbeats.

use crate::events::{Delivery, HubError};
use crate::server::App;
use crate::server::api_doc::errors;
use crate::server::auth::{AuthedKey, key_revoked};
use crate::server::problem::{ErrorCode, Problem};
use crate::vocabulary::EventName;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Cursor {
    /// Replay the events after this id (`Last-Event-ID` wins when both are given).
    #[param(value_type = Option<u64>)]
    after: Option<String>,
}

fn cursor_value(text: &str, what: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what} must be an event id (a whole number)"))
}

/// A session's events (SSE)
///
/// Server-sent events: `id:` the event's sequence number, `event:` its name, `data:` its JSON
/// payload. Replayed from `Last-Event-ID` or `?after=`, then live, with `: heartbeat`
/// comments. Events older than the server keeps come as one `gap` event. The stream ends
/// after `session.closed`, or when the server stops. `x-events` names the schema of each
/// event's `data:`.
#[utoipa::path(get, path = "/v1/sessions/{id}/events", operation_id = "streamEvents", tag = "events",
    params(super::sessions::SessionPath, Cursor,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id.")),
    responses((status = 200, description = "The event stream.", body = String, content_type = "text/event-stream"),
        (status = 204, description = "The session is closed and has no events after the cursor."),
        errors::NotFound, errors::UnprocessableEntity, errors::ServiceUnavailable))]
pub async fn stream(
    State(app): State<Arc<App>>,
    AuthedKey { caller, key_id }: AuthedKey,
    Path(id): Path<String>,
    Query(cursor): Query<Cursor>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let session = app.orchestrator.get_session(&caller, &id)?;
    if session.state == crate::vocabulary::SessionState::Closed {
        // The hub may not know (after a restart): the stream ends after the backlog.
        app.orchestrator.hub().close(&id);
    }
    let after = start_after(&headers, &cursor)?;
    let hub = app.orchestrator.hub();
    let subscribed = hub.subscribe(&id, after);
    if session.state == crate::vocabulary::SessionState::Closed {
        // Frees the closed session's entry once this subscriber leaves.
        hub.forget(&id);
    }
    let subscription = match subscribed {
        Ok(subscription) => subscription,
        Err(HubError::Closed) => return Ok(StatusCode::NO_CONTENT.into_response()),
        Err(HubError::TooManySubscribers) => {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Capacity,
                "too many event subscribers",
            ));
        }
    };
    Ok(sse(&app, subscription, key_id))
}

/// The SSE answer of a subscription: events (and gaps) as they come, heartbeats, and the
/// end when the server stops or the key is revoked.
pub(super) fn sse(
    app: &Arc<App>,
    subscription: crate::events::Subscription,
    key_id: String,
) -> Response {
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
                    .event(EventName::Gap.as_str())
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
    Sse::new(events).keep_alive(keep_alive).into_response()
}

/// Where a stream starts: `Last-Event-ID` (header) wins over `?after=`.
pub(super) fn start_after(headers: &HeaderMap, cursor: &Cursor) -> Result<Option<u64>, Problem> {
    let header = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    Ok(match (header, cursor.after.as_deref()) {
        (Some(text), _) => Some(cursor_value(text, "Last-Event-ID").map_err(Problem::invalid)?),
        (None, Some(text)) => Some(cursor_value(text, "`after`").map_err(Problem::invalid)?),
        (None, None) => None,
    })
}

/// The `data:` of each event, by `event:` name: the stream operation's `x-events`.
pub const EVENTS: &[(EventName, &str)] = &[
    (EventName::SessionCreated, "SessionCreatedEvent"),
    (EventName::TaskQueued, "TaskAnnouncedEvent"),
    (EventName::TaskStarted, "TaskAnnouncedEvent"),
    (EventName::PolicyDecision, "PolicyDecisionEvent"),
    (EventName::ToolLog, "ToolLogEvent"),
    (EventName::ToolProgress, "ToolProgressEvent"),
    (EventName::FileChanged, "FileChangedEvent"),
    (EventName::FileUploaded, "Transferred"),
    (EventName::FileDownloaded, "Transferred"),
    (EventName::TaskCompleted, "TaskCompletedEvent"),
    (EventName::TaskFailed, "TaskFailedEvent"),
    (EventName::SessionClosed, "SessionClosedEvent"),
    (EventName::ApprovalRequested, "ApprovalRequestedEvent"),
    (EventName::ApprovalAnswered, "ApprovalAnsweredEvent"),
    (EventName::RunStarted, "RunStartedEvent"),
    (EventName::Message, "MessageEvent"),
    (EventName::ModelCalled, "ModelCalledEvent"),
    (EventName::RunLog, "RunLogEvent"),
    (EventName::RunProgress, "RunProgressEvent"),
    (EventName::RunCompleted, "RunCompletedEvent"),
    (EventName::RunFailed, "RunFailedEvent"),
    (EventName::Gap, "GapEvent"),
];

/// The `data:` of the admins' host stream (`GET /v1/hosts/events`).
pub const HOST_EVENTS: &[(EventName, &str)] = &[
    (EventName::HostChanged, "HostChangedEvent"),
    (EventName::Gap, "GapEvent"),
];

/// The schemas of [`EVENTS`]. The orchestrator writes these payloads as JSON where it
/// publishes them; the server tests check every event they read against these.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    payloads::SessionCreatedEvent,
    payloads::TaskAnnouncedEvent,
    payloads::PolicyDecisionEvent,
    payloads::ToolLogEvent,
    payloads::ToolProgressEvent,
    payloads::FileChangedEvent,
    crate::orchestrator::Transferred,
    payloads::TaskCompletedEvent,
    payloads::TaskFailedEvent,
    payloads::SessionClosedEvent,
    payloads::ApprovalRequestedEvent,
    payloads::ApprovalAnsweredEvent,
    payloads::RunStartedEvent,
    payloads::MessageEvent,
    payloads::MessageToolCall,
    payloads::ModelCalledEvent,
    payloads::ModelUsage,
    payloads::RunError,
    payloads::RunLogEvent,
    payloads::RunProgressEvent,
    payloads::RunCompletedEvent,
    payloads::RunFailedEvent,
    payloads::GapEvent,
    payloads::HostChangedEvent,
)))]
pub struct EventPayloads;

#[allow(dead_code)]
mod payloads {
    use crate::orchestrator::FileChanges;
    use crate::sandbox::{TaskFailure, Usage};
    use serde_json::Value;
    use utoipa::ToSchema;

    /// `session.created`: the first event of a session.
    #[derive(ToSchema)]
    pub struct SessionCreatedEvent {
        session: String,
        principal: String,
        profile: String,
    }

    /// `task.queued` and `task.started`.
    #[derive(ToSchema)]
    pub struct TaskAnnouncedEvent {
        task: String,
        tool: String,
        /// `task.queued` of a tool call an agent run made: the run.
        #[schema(required = false, nullable = false)]
        run: Option<String>,
    }

    /// `policy.decision`: the session's `create_session` decision (no `task`), a task's
    /// `invoke` decision (`action: invoke`), or a capability decision taken while the task ran
    /// (`decision` holds the `request` and its `decision`, no `action`).
    #[derive(ToSchema)]
    pub struct PolicyDecisionEvent {
        #[schema(required = false, nullable = false)]
        task: Option<String>,
        /// A model call's decision (`action: use_model`): its run.
        #[schema(required = false, nullable = false)]
        run: Option<String>,
        /// `create_session`, `invoke`, `use_model` (a run's model call), or `approve` (an
        /// answer to a task's approval).
        #[schema(required = false, nullable = false)]
        action: Option<String>,
        /// `approve`: who answered.
        #[schema(required = false, nullable = false)]
        principal: Option<String>,
        #[schema(value_type = Object)]
        decision: Value,
    }

    /// `tool.log`: a line a tool logged.
    #[derive(ToSchema)]
    pub struct ToolLogEvent {
        task: String,
        /// `log`.
        #[schema(rename = "type", pattern = "^log$")]
        kind: String,
        /// `trace`, `debug`, `info`, `warn` or `error`.
        level: String,
        message: String,
    }

    /// `tool.progress`: how far a tool has come.
    #[derive(ToSchema)]
    pub struct ToolProgressEvent {
        task: String,
        /// `progress`.
        #[schema(rename = "type", pattern = "^progress$")]
        kind: String,
        done: u64,
        total: Option<u64>,
        message: Option<String>,
    }

    /// `file.changed`: what a task created, modified or deleted in the workspace (only sent
    /// when something changed).
    #[derive(ToSchema)]
    pub struct FileChangedEvent {
        task: String,
        changes: FileChanges,
    }

    /// `task.completed`.
    #[derive(ToSchema)]
    pub struct TaskCompletedEvent {
        task: String,
        #[schema(value_type = Value)]
        output: Value,
        usage: Option<Usage>,
    }

    /// `task.failed`: a task that failed, was cancelled or was interrupted (see `state`).
    #[derive(ToSchema)]
    pub struct TaskFailedEvent {
        task: String,
        #[schema(required = false, nullable = false)]
        tool: Option<String>,
        /// `failed`, `cancelled` or `interrupted`.
        #[schema(required = false, nullable = false)]
        state: Option<crate::vocabulary::TaskState>,
        error: TaskFailure,
        #[schema(required = false)]
        usage: Option<Usage>,
    }

    /// `session.closed`: the last event of a session; the stream ends after it.
    #[derive(ToSchema)]
    pub struct SessionClosedEvent {
        session: String,
        reason: crate::vocabulary::CloseReason,
        /// `host_lost`: what happened to the sidecar.
        #[schema(required = false, nullable = false)]
        message: Option<String>,
    }

    /// `approval.requested`: a task allowed by a permit that says `@approval("required")`
    /// waits (`awaiting_approval`) until a principal allowed to `approve` it answers at
    /// `answer_at`, or until `deadline_ms`, when it is denied.
    #[derive(ToSchema)]
    pub struct ApprovalRequestedEvent {
        task: String,
        session: String,
        tool: String,
        /// Who asked for the task.
        requester: String,
        #[schema(value_type = Object)]
        input: Value,
        /// The `invoke` decision that asks for the approval.
        #[schema(value_type = Object)]
        decision: Value,
        /// Unix milliseconds.
        deadline_ms: i64,
        /// `/v1/sessions/{id}/tasks/{task}/approval`.
        answer_at: String,
    }

    /// `approval.answered`: how a task's approval ended: `approved` or `denied` by `by`,
    /// `expired` (nobody answered in time), or `cancelled` (the task was).
    #[derive(ToSchema)]
    pub struct ApprovalAnsweredEvent {
        task: String,
        state: crate::vocabulary::ApprovalState,
        by: Option<String>,
        comment: Option<String>,
    }

    /// `run.started`: a run left the queue and its agent starts.
    #[derive(ToSchema)]
    pub struct RunStartedEvent {
        run: String,
        agent: String,
        provider: String,
        model: String,
        limits: crate::store::RunLimits,
    }

    /// A tool call a model asked for.
    #[derive(ToSchema)]
    pub struct MessageToolCall {
        id: String,
        /// `plugin.tool`.
        name: String,
        /// Its input, as JSON text.
        arguments: String,
    }

    /// `message`: a turn of a run's conversation, as its agent emitted it.
    #[derive(ToSchema)]
    pub struct MessageEvent {
        run: String,
        /// `system`, `user`, `assistant` or `tool`.
        #[schema(pattern = "^(system|user|assistant|tool)$")]
        role: String,
        content: String,
        #[schema(required = false, nullable = false)]
        tool_calls: Option<Vec<MessageToolCall>>,
        /// A `tool` message: the call it answers.
        #[schema(required = false, nullable = false)]
        tool_call_id: Option<String>,
    }

    /// Tokens of one model call.
    #[derive(ToSchema)]
    pub struct ModelUsage {
        prompt_tokens: u64,
        completion_tokens: u64,
        /// US dollars, when the provider says it.
        #[schema(required = false, nullable = false)]
        cost: Option<f64>,
    }

    /// Why a run or a model call did not give an answer.
    #[derive(ToSchema)]
    pub struct RunError {
        kind: String,
        message: String,
    }

    /// `model.called`: a model call of a run ended: its usage, or its `error`.
    #[derive(ToSchema)]
    pub struct ModelCalledEvent {
        run: String,
        provider: String,
        model: String,
        duration_ms: u64,
        /// `stop`, `tool_calls`, `length` or `other`.
        #[schema(required = false, nullable = false)]
        finish_reason: Option<String>,
        #[schema(required = false, nullable = false)]
        usage: Option<ModelUsage>,
        /// How many tool calls the answer asks for.
        #[schema(required = false, nullable = false)]
        tool_calls: Option<u64>,
        #[schema(required = false, nullable = false)]
        error: Option<RunError>,
    }

    /// `run.log`: a line a run's agent logged.
    #[derive(ToSchema)]
    pub struct RunLogEvent {
        run: String,
        #[schema(rename = "type", pattern = "^log$")]
        kind: String,
        level: String,
        message: String,
    }

    /// `run.progress`: how far a run's agent has come.
    #[derive(ToSchema)]
    pub struct RunProgressEvent {
        run: String,
        #[schema(rename = "type", pattern = "^progress$")]
        kind: String,
        done: u64,
        total: Option<u64>,
        message: Option<String>,
    }

    /// `run.completed`: the agent's final answer and what the run used.
    #[derive(ToSchema)]
    pub struct RunCompletedEvent {
        run: String,
        #[schema(value_type = Object)]
        output: Value,
        usage: crate::store::RunUsage,
    }

    /// `run.failed`: a run that failed, was cancelled or was interrupted (see `state`).
    #[derive(ToSchema)]
    pub struct RunFailedEvent {
        run: String,
        state: crate::vocabulary::RunState,
        error: RunError,
        usage: crate::store::RunUsage,
    }

    /// `gap`: events `from..=to` are older than anything the server still keeps; the stream
    /// goes on at `to + 1`. Its `id:` is `to`, so a client resuming from it neither misses nor
    /// repeats anything.
    #[derive(ToSchema)]
    pub struct GapEvent {
        from: u64,
        to: u64,
    }

    /// `host.changed`: a host entered a state (`from` null: it was just added; `to` null:
    /// it left the registry, released or no longer listed by its driver).
    #[derive(ToSchema)]
    pub struct HostChangedEvent {
        host: String,
        driver: String,
        from: Option<crate::vocabulary::HostState>,
        to: Option<crate::vocabulary::HostState>,
        reason: String,
        at_ms: i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_name_has_its_payload_schema() {
        let mut names: Vec<EventName> = EVENTS.iter().map(|(name, _)| *name).collect();
        names.extend(HOST_EVENTS.iter().map(|(name, _)| *name));
        names.sort();
        names.dedup();
        let mut all = EventName::ALL.to_vec();
        all.sort();
        assert_eq!(names, all);
    }
}
