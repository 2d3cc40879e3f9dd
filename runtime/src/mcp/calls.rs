//! One `tools/call`: a task of the session through the normal path. While it runs, its
//! `tool.progress` events become MCP progress notifications (when the client sent a progress
//! token), its `tool.log` events MCP log messages (at or above the level the client asked
//! for), and an `approval.requested` a progress message saying what the call waits for.
//! The client cancelling (a cancel notification, or a closed response stream) cancels the task.

use super::binding::{Binding, McpCaller, session_closed};
use crate::orchestrator::{CreateTask, Orchestrator, OrchestratorError};
use crate::store::TaskRecord;
use crate::vocabulary::{EventName, TaskState};
use futures_util::StreamExt;
#[allow(deprecated)]
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, LoggingLevel,
    LoggingMessageNotificationParam, MetaObject, ProgressNotificationParam, ProgressToken,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Value, json};
use std::sync::Arc;

/// How long a finished call waits for its last events to be read (they are already published).
const DRAIN_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// What a call sends back besides its result.
pub(super) struct Feedback {
    pub progress: Option<ProgressToken>,
    /// Log records at this level and above are sent; `None`: none are.
    #[allow(deprecated)]
    pub log_level: Option<LoggingLevel>,
}

pub(super) async fn call(
    orchestrator: &Arc<Orchestrator>,
    who: &McpCaller,
    binding: &Binding,
    request: CallToolRequestParams,
    feedback: Feedback,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, ErrorData> {
    let session = &binding.session;
    let input = Value::Object(request.arguments.unwrap_or_default());
    // Subscribed before the task exists: none of its events can be missed.
    let hub = orchestrator.hub();
    let mut events = hub.subscribe(session, Some(hub.last_seq(session))).ok();
    let created = orchestrator
        .create_task(
            &who.caller,
            session,
            CreateTask {
                tool: request.name.to_string(),
                input,
                wait: true,
                limits: None,
            },
        )
        .await;
    let (task, handle) = match created {
        Ok((task, Some(handle))) => (task, handle),
        Ok((_, None)) => return Err(ErrorData::internal_error("the task was not awaited", None)),
        Err(OrchestratorError::UnknownTool(message)) => {
            return Err(ErrorData::invalid_params(
                message,
                Some(json!({ "code": "unknown_tool" })),
            ));
        }
        Err(OrchestratorError::Invalid(message)) => {
            return Err(ErrorData::invalid_params(
                message,
                Some(json!({ "code": "invalid_request" })),
            ));
        }
        Err(OrchestratorError::Conflict(_)) => return Err(session_closed(session)),
        Err(error) => return Err(ErrorData::internal_error(error.to_string(), None)),
    };
    let finished = handle.finished();
    tokio::pin!(finished);
    let mut sent_progress = 0.0_f64;
    // Whether the task's `task.completed` or `task.failed` was read: nothing of it follows.
    let mut ended = false;
    let record = loop {
        tokio::select! {
            biased;
            record = &mut finished => break record,
            // Dropping the handle (returning) cancels the task; the record says `cancelled`.
            () = context.ct.cancelled() => {
                return Ok(failure_result(&task, "cancelled by the client"));
            }
            delivery = next_event(&mut events) => {
                let Some(event) = delivery else { events = None; continue };
                ended |= is_end_of(&event, &task.id);
                forward(&feedback, context, &task.id, &event, &mut sent_progress).await;
            }
        }
    };
    // The task's last events were published before it finished: send what is still unread,
    // up to its `task.completed` or `task.failed`.
    if record.is_ok() && !ended {
        let drain = async {
            while let Some(event) = next_event(&mut events).await {
                let last = is_end_of(&event, &task.id);
                forward(&feedback, context, &task.id, &event, &mut sent_progress).await;
                if last {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_WITHIN, drain).await;
    }
    match record {
        Ok(record) => Ok(result_of(&record)),
        Err(error) => Err(ErrorData::internal_error(error.to_string(), None)),
    }
}

/// The next event of the session, or never once there are none to read.
async fn next_event(
    events: &mut Option<crate::events::Subscription>,
) -> Option<crate::events::Event> {
    let Some(subscription) = events else {
        return std::future::pending().await;
    };
    loop {
        match subscription.next().await {
            Some(crate::events::Delivery::Event(event)) => return Some(event),
            Some(crate::events::Delivery::Gap { .. }) => continue,
            None => return None,
        }
    }
}

/// Whether `event` is task `task`'s last (`task.completed` or `task.failed`).
fn is_end_of(event: &crate::events::Event, task: &str) -> bool {
    (event.name == EventName::TaskCompleted.as_str()
        || event.name == EventName::TaskFailed.as_str())
        && serde_json::from_str::<Value>(&event.data)
            .is_ok_and(|data| data["task"].as_str() == Some(task))
}

/// Sends one of the task's events to the client, as MCP has a word for it.
async fn forward(
    feedback: &Feedback,
    context: &RequestContext<RoleServer>,
    task: &str,
    event: &crate::events::Event,
    sent_progress: &mut f64,
) {
    let Ok(name) = event.name.parse::<EventName>() else {
        return;
    };
    if !matches!(
        name,
        EventName::ToolProgress | EventName::ToolLog | EventName::ApprovalRequested
    ) {
        return;
    }
    let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
        return;
    };
    if data["task"].as_str() != Some(task) {
        return;
    }
    match name {
        EventName::ToolProgress => {
            let Some(token) = feedback.progress.clone() else {
                return;
            };
            let done = data["done"].as_u64().unwrap_or(0) as f64;
            // MCP asks progress to increase with every notification.
            if done <= *sent_progress && *sent_progress > 0.0 {
                return;
            }
            *sent_progress = done;
            let mut param = ProgressNotificationParam::new(token, done);
            if let Some(total) = data["total"].as_u64() {
                param = param.with_total(total as f64);
            }
            if let Some(message) = data["message"].as_str() {
                param = param.with_message(message);
            }
            let _ = context.peer.notify_progress(param).await;
        }
        EventName::ApprovalRequested => {
            let Some(token) = feedback.progress.clone() else {
                return;
            };
            let message = format!(
                "waiting for a person to approve task {task} (POST /v1/sessions/{}/tasks/{task}/approval)",
                data["session"].as_str().unwrap_or("-")
            );
            let param = ProgressNotificationParam::new(token, *sent_progress).with_message(message);
            let _ = context.peer.notify_progress(param).await;
        }
        EventName::ToolLog => {
            #[allow(deprecated)]
            {
                let Some(wanted) = feedback.log_level else {
                    return;
                };
                let level = mcp_level(data["level"].as_str().unwrap_or("info"));
                if rank(level) < rank(wanted) {
                    return;
                }
                let param = LoggingMessageNotificationParam::new(level, data["message"].clone())
                    .with_logger(format!("task {task}"));
                let _ = context.peer.notify_logging_message(param).await;
            }
        }
        _ => {}
    }
}

/// MCP's level for a tool's log level (MCP has no `trace`).
#[allow(deprecated)]
fn mcp_level(level: &str) -> LoggingLevel {
    match level {
        "trace" | "debug" => LoggingLevel::Debug,
        "warn" => LoggingLevel::Warning,
        "error" => LoggingLevel::Error,
        _ => LoggingLevel::Info,
    }
}

#[allow(deprecated)]
pub(super) fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// The finished task as a tool result: its output, or `isError` with why (a denial and its
/// reasons, a limit hit, the tool's own error). `_meta` names the session and the task.
fn result_of(record: &TaskRecord) -> CallToolResult {
    if record.state == TaskState::Completed {
        let output = record.output.clone().unwrap_or(Value::Null);
        let text = match &output {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        if output.is_object() {
            result.structured_content = Some(output);
        }
        result.meta = Some(meta(record));
        return result;
    }
    let error = record.error.clone().unwrap_or(Value::Null);
    let kind = error["kind"].as_str().unwrap_or(record.state.as_str());
    let told = error["message"].as_str().unwrap_or("the task failed");
    let mut message = if told.starts_with(kind) {
        told.to_owned()
    } else {
        format!("{kind}: {told}")
    };
    if let Some(reasons) = error["reasons"].as_array() {
        let reasons: Vec<&str> = reasons.iter().filter_map(Value::as_str).collect();
        if !reasons.is_empty() && !message.contains(reasons[0]) {
            message = format!("{message} ({})", reasons.join("; "));
        }
    }
    let mut result = CallToolResult::error(vec![ContentBlock::text(message)]);
    result.meta = Some(meta(record));
    result
}

fn failure_result(task: &TaskRecord, why: &str) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!("cancelled: {why}"))]);
    result.meta = Some(meta(task));
    result
}

fn meta(record: &TaskRecord) -> MetaObject {
    let mut map = serde_json::Map::new();
    map.insert("toolgate/session".into(), record.session.clone().into());
    map.insert("toolgate/task".into(), record.id.clone().into());
    map.insert("toolgate/state".into(), record.state.as_str().into());
    MetaObject(map)
}
