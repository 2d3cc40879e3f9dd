use super::describe_bounds::DescribeViolation;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::vocabulary::ErrorKind;

/// Why a task did not produce output. `kind` is stable: clients match on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskError {
    #[error("fuel budget of {limit} units exhausted")]
    FuelExhausted { limit: u64 },
    #[error("memory limit of {limit_bytes} bytes exceeded (asked for {requested_bytes})")]
    MemoryLimit {
        limit_bytes: u64,
        requested_bytes: u64,
    },
    #[error("deadline of {timeout_ms} ms exceeded")]
    Timeout { timeout_ms: u64 },
    #[error("the component trapped: {message}")]
    Trap { message: String },
    #[error("{what} exceeded its limit of {limit}")]
    OutputTooLarge {
        what: String,
        #[serde(flatten)]
        limit: OutputBound,
    },
    #[error("invalid input: {message}")]
    InvalidInput {
        message: String,
        /// JSON Pointer to the part of the input that failed the tool's input schema.
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    #[error("the tool failed: {message}")]
    ToolError { message: String },
    #[error("denied: {}", reasons.join("; "))]
    Denied { reasons: Vec<String> },
    #[error("cancelled")]
    Cancelled,
    /// The host could not run the task (no free instance slot, ...). Not the tool's fault.
    #[error("internal error: {message}")]
    Internal { message: String },
    /// The sidecar running the task died or was cut off; what the task did there is lost.
    #[error("the host running the task was lost: {message}")]
    HostLost { message: String },
}

/// The bound an output crossed: `limit_bytes` or `limit_records` in the error's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputBound {
    #[serde(rename = "limit_bytes")]
    Bytes(u64),
    #[serde(rename = "limit_records")]
    Records(u64),
}

impl std::fmt::Display for OutputBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(n) => write!(f, "{n} bytes"),
            Self::Records(n) => write!(f, "{n} records"),
        }
    }
}

impl TaskError {
    /// The stable, machine-readable name of this error (its JSON `kind`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::FuelExhausted { .. } => ErrorKind::FuelExhausted,
            Self::MemoryLimit { .. } => ErrorKind::MemoryLimit,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Trap { .. } => ErrorKind::Trap,
            Self::OutputTooLarge { .. } => ErrorKind::OutputTooLarge,
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::ToolError { .. } => ErrorKind::ToolError,
            Self::Denied { .. } => ErrorKind::Denied,
            Self::Cancelled => ErrorKind::Cancelled,
            Self::Internal { .. } => ErrorKind::Internal,
            Self::HostLost { .. } => ErrorKind::HostLost,
        }
    }

    /// The error as a JSON object: `kind`, `message` and the variant's fields.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("task errors serialize");
        value["message"] = self.to_string().into();
        value
    }
}

/// The shape of a task's `error` as the API shows it ([`TaskError::to_json`], or
/// `interrupted` for a task the server stopped under). Which fields come depends on `kind`.
#[derive(utoipa::ToSchema)]
#[schema(as = TaskError)]
#[allow(dead_code)]
pub struct TaskFailure {
    /// What went wrong; `host_lost`: the sidecar running it died or was cut off;
    /// `interrupted`: the server stopped under it.
    kind: ErrorKind,
    message: String,
    /// `fuel_exhausted`: the fuel budget.
    #[schema(required = false, nullable = false)]
    limit: Option<u64>,
    /// `memory_limit`, `output_too_large` (a byte limit).
    #[schema(required = false, nullable = false)]
    limit_bytes: Option<u64>,
    /// `output_too_large`: the cap on a task's records.
    #[schema(required = false, nullable = false)]
    limit_records: Option<u64>,
    /// `memory_limit`.
    #[schema(required = false, nullable = false)]
    requested_bytes: Option<u64>,
    /// `timeout`: the deadline.
    #[schema(required = false, nullable = false)]
    timeout_ms: Option<u64>,
    /// `output_too_large`: what was too large.
    #[schema(required = false, nullable = false)]
    what: Option<String>,
    /// `denied`: why.
    #[schema(required = false, nullable = false)]
    reasons: Option<Vec<String>>,
    /// `invalid_input` against the tool's input schema: JSON Pointer to the failing part.
    #[schema(required = false, nullable = false)]
    path: Option<String>,
}

/// Why a plugin was not accepted. A plugin that failed for what its bytes are (everything
/// but [`Read`](Self::Read) and [`Unavailable`](Self::Unavailable)) is remembered by digest and
/// refused again without being loaded; nothing is cached on disk for it.
///
/// `origin` may be a host path: show [`code`](Self::code) to callers who are not admins.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read plugin {path}: {source}")]
    Read {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    #[error("{origin} is not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm { origin: String },
    #[error(
        "{origin} is a core WebAssembly module, not a component; build it for wasm32-wasip2 (or run `wasm-tools component new`)"
    )]
    CoreModule { origin: String },
    #[error("{origin} is not a valid component: {message}")]
    Invalid { origin: String, message: String },
    #[error("{origin} does not implement the toolgate:plugin/tool world: missing export(s) {}", missing.join(", "))]
    WrongWorld {
        origin: String,
        missing: Vec<String>,
    },
    #[error(
        "{origin} has exports of the wrong shape for the toolgate:plugin/tool world: {message}"
    )]
    WrongSignature { origin: String, message: String },
    #[error("{origin} imports something toolgate does not provide: {message}")]
    UnsupportedImport { origin: String, message: String },
    #[error("{origin} failed while describing its tools: {message}")]
    Describe { origin: String, message: String },
    #[error(
        "{origin} is refused: the input schema of tool `{tool}` is not a valid JSON Schema (draft 2020-12): {message}"
    )]
    InputSchema {
        origin: String,
        tool: String,
        message: String,
    },
    #[error("{origin} is refused: {violation}")]
    BadToolInfo {
        origin: String,
        violation: DescribeViolation,
    },
    /// The host could not finish loading it (shutting down, ...): not the plugin's fault.
    #[error("{origin} could not be loaded now: {message}")]
    Unavailable { origin: String, message: String },
}

impl PluginError {
    /// The stable, machine-readable name of this error; it never contains a host path.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "unreadable",
            Self::NotWasm { .. } => "not_wasm",
            Self::CoreModule { .. } => "core_module",
            Self::Invalid { .. } => "invalid_component",
            Self::WrongWorld { .. } => "wrong_world",
            Self::WrongSignature { .. } => "wrong_signature",
            Self::UnsupportedImport { .. } => "unsupported_import",
            Self::Describe { .. } => "describe_failed",
            Self::InputSchema { .. } => "invalid_input_schema",
            Self::BadToolInfo { violation, .. } => violation.code(),
            Self::Unavailable { .. } => "unavailable",
        }
    }

    /// Whether the failure follows from the component's bytes alone, so that loading the
    /// same bytes again would fail again.
    pub(crate) fn is_lasting(&self) -> bool {
        !matches!(self, Self::Read { .. } | Self::Unavailable { .. })
    }

    /// The same failure, told of the plugin from `origin` (remembered failures are shared
    /// by every plugin with the same bytes).
    pub(crate) fn with_origin(mut self, new: &str) -> Self {
        match &mut self {
            Self::Read { .. } => {}
            Self::NotWasm { origin }
            | Self::CoreModule { origin }
            | Self::Invalid { origin, .. }
            | Self::WrongWorld { origin, .. }
            | Self::WrongSignature { origin, .. }
            | Self::UnsupportedImport { origin, .. }
            | Self::Describe { origin, .. }
            | Self::InputSchema { origin, .. }
            | Self::BadToolInfo { origin, .. }
            | Self::Unavailable { origin, .. } => *origin = new.into(),
        }
        self
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    /// The JSON `kind` (serde's tag) and [`TaskError::kind`] are the same word.
    #[test]
    fn the_json_kind_is_the_kind() {
        let errors = [
            TaskError::FuelExhausted { limit: 1 },
            TaskError::MemoryLimit {
                limit_bytes: 1,
                requested_bytes: 2,
            },
            TaskError::Timeout { timeout_ms: 1 },
            TaskError::Trap {
                message: "t".into(),
            },
            TaskError::OutputTooLarge {
                what: "output".into(),
                limit: OutputBound::Bytes(1),
            },
            TaskError::InvalidInput {
                message: "m".into(),
                path: None,
            },
            TaskError::ToolError {
                message: "m".into(),
            },
            TaskError::Denied { reasons: vec![] },
            TaskError::Cancelled,
            TaskError::Internal {
                message: "m".into(),
            },
            TaskError::HostLost {
                message: "m".into(),
            },
        ];
        for error in &errors {
            assert_eq!(error.to_json()["kind"], error.kind().as_str());
        }
        let mut kinds: Vec<ErrorKind> = errors.iter().map(TaskError::kind).collect();
        // Set by the store (a restart) and by agent runs, not by the sandbox.
        kinds.extend([
            ErrorKind::Interrupted,
            ErrorKind::BudgetExhausted,
            ErrorKind::AgentFailed,
        ]);
        assert_eq!(kinds, ErrorKind::ALL, "every kind has its error");
    }
}
