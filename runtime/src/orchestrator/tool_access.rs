//! Which tools a caller may use in a session: what an agent is shown (MCP's `tools/list`).
//! A tool the policy would refuse is not shown; showing it would only invite a denial.

use super::{Caller, Orchestrator, OrchestratorError};
use crate::policy::TaskIdentity;
use serde_json::Value;

/// A tool as an agent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDescription {
    /// `plugin.tool`.
    pub name: String,
    pub description: String,
    /// JSON Schema of the input object.
    pub input_schema: Value,
}

impl Orchestrator {
    /// The tools `caller` may invoke in its open session `session_id`, by the policy in force
    /// now: the `invoke` decision for an input that names no path, URL or method. (A permit
    /// that depends on those fields is decided again, with the real input, at each call.)
    pub async fn invocable_tools(
        &self,
        caller: &Caller,
        session_id: &str,
    ) -> Result<Vec<ToolDescription>, OrchestratorError> {
        let Some(live) = self.live(caller, session_id) else {
            self.get_session(caller, session_id)?;
            return Err(OrchestratorError::Conflict(format!(
                "session {session_id} is closed"
            )));
        };
        let mut tools = Vec::new();
        for name in self.catalog.names() {
            let plugin = match self.catalog.get(&name).await {
                Ok(plugin) => plugin,
                Err(e) => {
                    tracing::warn!(plugin = %name, error = %e, "plugin unavailable: its tools are not listed");
                    continue;
                }
            };
            // Policies name tools as entities of their plugin (`resource in Plugin::"fs"`).
            self.register_tools(&plugin).await;
            for tool in plugin.tools() {
                let qualified = format!("{name}.{}", tool.name);
                let identity = TaskIdentity {
                    principal: caller.principal.clone(),
                    profile: live.profile.clone(),
                    session: session_id.to_owned(),
                    tool: qualified.clone(),
                };
                if self
                    .policy
                    .authorize_invoke(&identity, live.resources, "{}")
                    .allowed
                {
                    tools.push(ToolDescription {
                        name: qualified,
                        description: tool.description.clone(),
                        input_schema: tool.input_schema.clone(),
                    });
                }
            }
        }
        Ok(tools)
    }

    /// Whether `caller`'s session `session_id` is open here.
    pub fn is_open(&self, caller: &Caller, session_id: &str) -> bool {
        self.live(caller, session_id).is_some()
    }

    /// Changes whenever a plugin is installed, deleted or rolled back.
    pub fn tools_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tools_changed.subscribe()
    }
}
