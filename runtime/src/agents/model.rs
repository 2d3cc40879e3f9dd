//! What goes to a model and comes back, as the `agent` world's `model-types` say
//! (`wit/agent.wit`), independent of any provider's wire format.

use serde::{Deserialize, Serialize};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// The result of a tool call (`tool_call_id` names it).
    Tool,
}

/// A tool call a model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    /// `plugin.tool`.
    pub name: String,
    /// The input, as JSON text.
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// `plugin.tool`.
    pub name: String,
    pub description: String,
    /// JSON Schema of the input object, as JSON text.
    pub input_schema: String,
}

/// How to sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop: Vec<String>,
}

/// One completion request, its model resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub sampling: Sampling,
    pub max_tokens: Option<u32>,
}

/// Tokens a call used, and its cost when the provider says it (OpenAI-compatible gateways
/// such as OpenRouter report `usage.cost`, in US dollars).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    ToolCalls,
    Length,
    Other,
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub model: String,
}

/// Why a completion failed. No text ever holds a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("denied by policy: {0}")]
    Denied(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("unknown model: {0}")]
    UnknownModel(String),
    #[error("timeout: {0}")]
    Timeout(String),
    #[error("provider error: {0}")]
    Provider(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl ModelError {
    /// The stable name of the error, as the WIT variant names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Denied(_) => "denied",
            Self::LimitExceeded(_) => "limit_exceeded",
            Self::UnknownModel(_) => "unknown_model",
            Self::Timeout(_) => "timeout",
            Self::Provider(_) => "provider",
            Self::InvalidRequest(_) => "invalid_request",
        }
    }
}
