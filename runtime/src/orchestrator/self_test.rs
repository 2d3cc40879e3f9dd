//! The readiness check's event self-test: the bundled `probe` tool run in a throwaway session
//! through the whole path (placement, policy, sidecar, events, store) shows that the host
//! emits start, tool call, file change, completion and failure events.
//!
//! It runs as its own principal (`toolgate:probe`, profile `probe`), which the shipped
//! policies let open a session and invoke the probe plugin, nothing else; its sessions are
//! that principal's, never the caller's, and are deleted from the store once read.

use super::preflight::Check;
use super::sessions::CreateSession;
use super::tasks::CreateTask;
use super::{Caller, Orchestrator};
use crate::policy::{ResourceRequest, principal_entity};
use crate::vocabulary::{CloseReason, EventName};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

pub const PROBE_PRINCIPAL: &str = "toolgate:probe";
pub const PROBE_PROFILE: &str = "probe";

/// The events that must be seen, with what each shows.
const EXPECTED: [(EventName, &str); 7] = [
    (EventName::SessionCreated, "start"),
    (EventName::TaskStarted, "task start"),
    (EventName::ToolLog, "tool call"),
    (EventName::FileChanged, "file change"),
    (EventName::TaskCompleted, "completion"),
    (EventName::TaskFailed, "failure"),
    (EventName::SessionClosed, "end"),
];

impl Orchestrator {
    /// Opens a probe session (on `host` when given), runs `probe.write` then `probe.fail`,
    /// closes it and checks its recorded events.
    pub(super) async fn event_self_test(self: &Arc<Self>, host: Option<&str>) -> Check {
        // A few at once: each holds a session for a moment, and a flood of preflights must
        // not take the server's sessions.
        let Ok(_turn) = self.self_tests.acquire().await else {
            return Check::new("events", false, "the server is shutting down");
        };
        let started = Instant::now();
        let caller = Caller {
            principal: PROBE_PRINCIPAL.into(),
            profile: PROBE_PROFILE.into(),
            admin: false,
        };
        if let Err(error) = self
            .policy
            .upsert_entities([principal_entity(PROBE_PRINCIPAL, &[PROBE_PROFILE])])
        {
            return Check::new(
                "events",
                false,
                format!("the probe's principal cannot be added to the policy entities: {error}"),
            );
        }
        let request = CreateSession {
            tools: vec!["probe.write".into(), "probe.fail".into()],
            // As little as the probe needs: its tasks' memory is capped by the session's.
            resources: Some(ResourceRequest {
                cpu_millis: 10,
                memory_mb: 32,
                disk_mb: 1,
                timeout_ms: 60_000,
            }),
            placement: host.map(|host| crate::hosts::PlacementHints {
                hosts: vec![host.to_owned()],
                ..Default::default()
            }),
            ..CreateSession::default()
        };
        let session = match self.open_session(&caller, request, false).await {
            Ok(session) => session,
            Err(error) => {
                return Check::new(
                    "events",
                    false,
                    format!("the probe session could not be opened: {error}"),
                );
            }
        };
        let mut outcomes = Vec::new();
        for tool in ["probe.write", "probe.fail"] {
            let task = CreateTask {
                tool: tool.into(),
                input: json!({}),
                wait: true,
                limits: None,
            };
            let finished = match self.create_task(&caller, &session.id, task).await {
                Ok((_, Some(handle))) => handle.finished().await,
                Ok((record, None)) => Ok(record),
                Err(error) => Err(error),
            };
            outcomes.push(match finished {
                Ok(record) => match &record.error {
                    Some(error) => format!(
                        "{tool} {}: {}",
                        record.state,
                        error["message"].as_str().unwrap_or_default()
                    ),
                    None => format!("{tool} {}", record.state),
                },
                Err(error) => format!("{tool}: {error}"),
            });
        }
        let _ = self.close_session(&caller, &session.id, CloseReason::Deleted);
        let store = self.store.clone();
        let id = session.id.clone();
        // Read, then forgotten: a self-test leaves nothing behind in the store.
        let events = tokio::task::spawn_blocking(move || {
            let _ = store.flush();
            let events = store.events_after(&id, 0, 1000);
            if let Err(error) = store.delete_session(&id) {
                tracing::warn!(session = %id, %error, "cannot delete the probe session");
            }
            events
        })
        .await;
        let names: Vec<String> = match events {
            Ok(Ok(events)) => events.into_iter().map(|e| e.name).collect(),
            Ok(Err(error)) => {
                return Check::new(
                    "events",
                    false,
                    format!("the probe's events cannot be read: {error}"),
                );
            }
            Err(error) => return Check::new("events", false, error.to_string()),
        };
        let missing: Vec<String> = EXPECTED
            .iter()
            .filter(|(name, _)| !names.iter().any(|n| n == name.as_str()))
            .map(|(name, what)| format!("{name} ({what})"))
            .collect();
        let on = format!("on host `{}`", session.host);
        if missing.is_empty() {
            let seen: Vec<String> = EXPECTED
                .iter()
                .map(|(name, what)| format!("{name} ({what})"))
                .collect();
            Check::new(
                "events",
                true,
                format!(
                    "a probe session {on} emitted {} in {} ms",
                    seen.join(", "),
                    started.elapsed().as_millis()
                ),
            )
        } else {
            Check::new(
                "events",
                false,
                format!(
                    "a probe session {on} did not emit {} ({})",
                    missing.join(", "),
                    outcomes.join("; ")
                ),
            )
        }
    }
}
