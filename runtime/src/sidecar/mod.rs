//! The execution half of toolgate and the one seam the orchestrator reaches it through.
//!
//! A [`Sidecar`] opens sessions (a workspace with its disk quota), runs tasks in them (the
//! invoke decision already taken by the orchestrator), streams back what happens (tool logs
//! and progress, capability decisions, file changes) and answers the outcome with its usage,
//! cancels and closes. [`LocalSidecar`] is that work in this process; [`RemoteSidecar`] asks a
//! `toolgate sidecar` on another process or host over HTTP ([`server`]), with the same types.

mod client;
pub(crate) mod disk;
mod event_log;
mod local;
pub mod machine;
mod plugins;
mod relay;
pub mod server;
mod shipped;
pub mod tls;
mod watch;
mod wire;
mod workspace;

pub use client::{Loss, RemoteContext, RemoteSidecar, SidecarEndpoint};
pub use disk::DiskUsage;
pub use local::{LocalSidecar, SessionWorkspace};
pub use machine::Machine;
pub use shipped::{PolicySource, ShippedPolicies};
pub use watch::{ChangeWatcher, WorkspaceTracker};
pub use wire::{
    Frame, NOT_AFTER_HEADER, SessionSpec, SidecarHealth, SidecarState, TaskEvent, TaskFinished,
    TaskSpec, wall_ms,
};
pub use workspace::{FileChanges, Snapshot};

use crate::sandbox::{Plugin, Secret};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What a sidecar call returns: boxed, so sidecars of different kinds sit behind one `dyn`.
pub type SidecarFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Receives a running task's events in the order they happened. Must not block.
pub trait TaskEvents: Send + Sync {
    fn emit(&self, event: TaskEvent);
}

/// One task to run on a sidecar.
pub struct RunTask {
    /// The tool's plugin (a remote sidecar is given it by digest).
    pub plugin: Arc<Plugin>,
    pub spec: TaskSpec,
    /// The values of the secrets the session named: they go only to the sidecar that runs it.
    pub secrets: BTreeMap<String, Secret>,
    /// Credentials bound to hosts, for the session's secrets: the host adds them to the
    /// task's outbound requests (see [`crate::sandbox::Credential`]).
    pub credentials: Vec<crate::sandbox::Credential>,
    pub events: Arc<dyn TaskEvents>,
    /// Cancelling it stops the task; its outcome then says `cancelled`.
    pub cancel: CancellationToken,
}

/// Why a sidecar could not do what it was asked. `code` is stable (problem+json over HTTP).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidecarError {
    #[error("the sidecar refused the token")]
    Unauthorized,
    #[error("the sidecar has no session {0}")]
    UnknownSession(String),
    #[error("the sidecar does not hold policy-set version {0}")]
    PolicyVersionMissing(String),
    #[error("the sidecar does not hold the plugin with digest {0}")]
    PluginMissing(String),
    #[error("the sidecar is draining: it takes no new sessions or tasks")]
    Draining,
    #[error("the sidecar `{sidecar}` does not answer: {message}")]
    Unreachable { sidecar: String, message: String },
    #[error("the sidecar `{sidecar}` was lost: {message}")]
    Lost { sidecar: String, message: String },
    #[error("bad request to the sidecar: {0}")]
    Invalid(String),
    #[error("too large for the sidecar: {0}")]
    TooLarge(String),
    #[error("the sidecar answered what toolgate cannot read: {0}")]
    Protocol(String),
    #[error("the request reached the sidecar after its orchestrator had given it up: {0}")]
    Stale(String),
    #[error("the sidecar failed: {0}")]
    Internal(String),
}

impl SidecarError {
    /// The stable, machine-readable name of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::UnknownSession(_) => "unknown_session",
            Self::PolicyVersionMissing(_) => "policy_version_missing",
            Self::PluginMissing(_) => "plugin_missing",
            Self::Draining => "draining",
            Self::Unreachable { .. } => "sidecar_unreachable",
            Self::Lost { .. } => "host_lost",
            Self::Invalid(_) => "invalid_request",
            Self::TooLarge(_) => "too_large",
            Self::Stale(_) => "stale_request",
            Self::Protocol(_) => "sidecar_protocol",
            Self::Internal(_) => "internal",
        }
    }

    /// What the error is about (a session, a policy version, a plugin digest), for a client
    /// to act on without reading the message.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Self::UnknownSession(s) | Self::PolicyVersionMissing(s) | Self::PluginMissing(s) => {
                Some(s)
            }
            _ => None,
        }
    }

    /// True when the sidecar cannot be reached or was given up on: the task's fate is unknown.
    pub fn is_lost(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::Lost { .. } | Self::Stale(_)
        )
    }
}

/// Whatever runs sessions: this process, or a `toolgate sidecar` elsewhere.
pub trait Sidecar: Send + Sync {
    /// Its id (`local` for the in-process one, else the config's `id`).
    fn id(&self) -> &str;
    /// Opens a session: its workspace exists when this returns `Ok`.
    fn open_session(&self, spec: SessionSpec) -> SidecarFuture<Result<(), SidecarError>>;
    /// Runs a task; its events go to `run.events` as they happen, all of them before the
    /// answer.
    fn run_task(&self, run: RunTask) -> SidecarFuture<Result<TaskFinished, SidecarError>>;
    /// Closes a session: running tasks are cancelled and the workspace is removed. Work a
    /// sidecar can do at once is done before this returns; the future is what is left.
    fn close_session(&self, session: &str) -> SidecarFuture<Result<(), SidecarError>>;
    /// The session's workspace, when it is in this process (file transfers go through it).
    fn workspace(&self, _session: &str) -> Option<Arc<SessionWorkspace>> {
        None
    }
    /// Ready, draining or lost, as last seen.
    fn state(&self) -> SidecarState;
    /// Whether it runs in another process: its tasks then carry the policy entities they need.
    fn is_remote(&self) -> bool {
        false
    }
    /// Whether it has answered a health check since it was connected (the in-process one
    /// always has).
    fn has_answered(&self) -> bool {
        true
    }
    /// Its machine as its last health answer measured it (remote sidecars).
    fn machine(&self) -> Option<Machine> {
        None
    }
}
