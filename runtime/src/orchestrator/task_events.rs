//! A task's events from its sidecar, published into its session's stream and stored.

use crate::events::EventHub;
use crate::sandbox::ToolEvent;
use crate::sidecar::{TaskEvent, TaskEvents};
use crate::store::Store;
use crate::vocabulary::EventName;
use serde_json::json;
use std::sync::Arc;

pub(super) struct SessionEvents {
    pub hub: Arc<EventHub>,
    pub store: Store,
    pub session: String,
    pub task: String,
}

impl TaskEvents for SessionEvents {
    fn emit(&self, event: TaskEvent) {
        match event {
            TaskEvent::Tool { event } => {
                let name = match &event {
                    ToolEvent::Log { .. } => EventName::ToolLog,
                    ToolEvent::Progress { .. } => EventName::ToolProgress,
                };
                let mut data = serde_json::to_value(&event).unwrap_or_default();
                data["task"] = self.task.clone().into();
                self.hub.publish(&self.session, name, data);
            }
            TaskEvent::Decision { decision } => {
                self.store
                    .put_decision(&self.session, Some(&self.task), &decision);
                self.hub.publish(
                    &self.session,
                    EventName::PolicyDecision,
                    json!({ "task": self.task, "decision": decision }),
                );
            }
            TaskEvent::FilesChanged { changes } => {
                self.hub.publish(
                    &self.session,
                    EventName::FileChanged,
                    json!({ "task": self.task, "changes": changes }),
                );
            }
            // The task's runner publishes how it ended, with its record.
            TaskEvent::Finished { .. } => {}
        }
    }
}
