//! What crosses the seam, in the form it takes on the wire (JSON both ways).

use super::workspace::FileChanges;
use crate::policy::{ResourceRequest, TaskIdentity};
use crate::sandbox::{Limits, TaskError, ToolEvent, Usage};
use serde::{Deserialize, Serialize};

/// A session to open on a sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    pub id: String,
    pub principal: String,
    pub profile: String,
    /// The workspace's disk quota comes from `disk_mb`.
    pub resources: ResourceRequest,
    /// Reopens a session the sidecar should still hold (an orchestrator's restart): one it
    /// no longer has is `unknown_session`, never a new empty workspace.
    #[serde(default)]
    pub resume: bool,
}

/// One task for a sidecar: everything but the plugin's bytes, the secrets' values and the
/// event sink, which travel apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub id: String,
    /// Who runs it, in which session, which tool (`plugin.tool`): the capability gate's subject.
    pub identity: TaskIdentity,
    /// The input, a JSON object as text.
    pub input: String,
    /// The limits settled for it (policy, caller's asks); a sidecar clamps them to its ceilings.
    pub limits: Limits,
    /// The policy-set version the invoke decision was taken with: capability decisions are
    /// taken against it.
    pub policy_version: String,
    /// Cedar entities the decisions need beyond the set's files (the principal, the tool).
    #[serde(default)]
    pub entities: Vec<serde_json::Value>,
}

impl TaskSpec {
    pub fn session(&self) -> &str {
        &self.identity.session
    }

    /// The tool's name within its plugin.
    pub fn tool_name(&self) -> &str {
        self.identity
            .tool
            .split_once('.')
            .map_or(self.identity.tool.as_str(), |(_, tool)| tool)
    }
}

/// Something that happened in a running task, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskEvent {
    /// The tool's log record or progress report.
    Tool { event: ToolEvent },
    /// A capability use the policy decided: `{request, decision}`.
    Decision { decision: serde_json::Value },
    /// The workspace after the task, against before it.
    FilesChanged { changes: FileChanges },
    /// The last event of a task.
    Finished { finished: TaskFinished },
}

/// How a task ended on its sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFinished {
    /// The tool's output (JSON text) or why there is none.
    pub result: Result<String, TaskError>,
    pub usage: Usage,
    /// How long each capability decision took, in µs (metrics).
    #[serde(default)]
    pub decision_us: Vec<u64>,
}

/// One event of a session's stream from a sidecar: `seq` counts up from 1 per session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub seq: u64,
    pub task: String,
    pub event: TaskEvent,
}

/// Whether a sidecar takes work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SidecarState {
    Ready,
    /// Stopping: it finishes what it has and takes nothing new.
    Draining,
    /// Not answering its health checks within the timeout: its sessions were ended.
    Lost,
}

impl SidecarState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::Lost => "lost",
        }
    }
}

/// `GET /v1/sidecar/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidecarHealth {
    pub state: SidecarState,
    /// Changes every time the sidecar process starts: sessions do not survive a restart.
    pub boot: String,
    pub sessions: usize,
    pub running_tasks: usize,
    /// Policy-set versions it holds.
    pub policy_versions: Vec<String>,
    /// Its wall clock when it answered (ms since the epoch): the orchestrator learns the
    /// offset between their clocks, to stamp requests with a deadline in the sidecar's time.
    #[serde(default)]
    pub now_ms: u64,
    /// Its machine: capacity (measured, or as its operator declared it) and load.
    #[serde(default)]
    pub machine: Option<super::Machine>,
}

/// The header an orchestrator stamps session opens and tasks with: the sidecar's wall-clock
/// time (ms) after which the orchestrator will have given the request up as lost. A request
/// that reaches the sidecar later (it was frozen, or the network held it) is refused, so
/// nothing runs that its orchestrator has already reported as failed.
pub const NOT_AFTER_HEADER: &str = "x-toolgate-not-after";

/// Wall-clock ms since the epoch.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A session id as the orchestrator makes them (`s_` and up to 62 letters or digits): it
/// names a directory on the sidecar, so nothing else is taken.
pub fn is_session_id(id: &str) -> bool {
    id.len() <= 64
        && id
            .strip_prefix("s_")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}
