//! Agent runs: components of the `agent` world that call models and tools. So far: the model
//! providers an operator configures (`[[model_providers]]`) and the client that speaks their
//! wire formats.

pub mod model;
pub mod providers;

pub use model::{
    Completion, CompletionRequest, FinishReason, Message, ModelError, Role, Sampling, ToolCall,
    ToolSpec, Usage,
};
pub use providers::{ProviderConfig, ProviderKind, Providers};
