//! What a running agent reaches through the host: the seam between the sandbox, which runs
//! the agent, and whoever runs the run (the orchestrator), which decides, counts and records
//! each model call, tool call and message.

use crate::agents::{Completion, CompletionRequest, Message, ModelError, ToolSpec};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Why a tool call of a run gave no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolCallError {
    /// Policy refused it, or the run may not use it.
    #[error("denied: {0}")]
    Denied(String),
    #[error("unknown tool: {0}")]
    UnknownTool(String),
    /// It ran and failed.
    #[error("failed: {0}")]
    Failed(String),
}

/// What a run's component reaches through the host: provided by whoever runs it (the
/// orchestrator), which decides, counts and records each use.
pub trait RunServices: Send + Sync {
    /// One model call. An empty `request.model` means the run's model.
    fn complete(
        self: Arc<Self>,
        request: CompletionRequest,
    ) -> BoxFuture<'static, Result<Completion, ModelError>>;
    /// The tools the run may use.
    fn tools(self: Arc<Self>) -> BoxFuture<'static, Vec<ToolSpec>>;
    /// One tool call, a task of the session; its output as JSON text.
    fn call_tool(
        self: Arc<Self>,
        name: String,
        input: String,
    ) -> BoxFuture<'static, Result<String, ToolCallError>>;
    /// A message the agent emits. Must not block.
    fn message(&self, message: Message);
}
