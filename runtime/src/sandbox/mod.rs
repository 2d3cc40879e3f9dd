//! The sandbox: plugins compiled once, each task run in a fresh instance with
//! exactly its grants and hard limits, returning its output and an account of
//! what it used.
//!
//! The path of a task through this module:
//! [`Catalog`] finds the [`Plugin`] (compiled once off the async workers, cached on disk,
//! what it describes bounded by [`describe_bounds`]) →
//! [`Executor`] builds a store whose state comes from the task's [`Grants`]
//! (one small builder per capability, see [`capabilities`]) and [`Limits`] →
//! instantiates from the plugin's `InstancePre` → calls the tool → classifies
//! the outcome into output or a typed [`TaskError`], with [`Usage`].

mod agent;
mod bindings;
mod cache;
pub mod capabilities;
mod catalog;
pub mod describe_bounds;
mod driver;
mod engine;
mod error;
mod executor;
mod failures;
mod grants;
mod host;
mod input_schema;
mod limits;
mod plugin;
mod quota;
mod quota_fs;
mod run_services;
mod state;

pub use agent::{AgentComponent, AgentError, AgentOutcome, AgentOutput, AgentRun};
pub use cache::digest as plugin_digest;
pub use catalog::{Catalog, CatalogError, PluginOrigin, RemoveUploadError, is_valid_plugin_name};
pub use describe_bounds::DescribeViolation;
pub use driver::{
    DriverAnswer, DriverComponent, DriverRun, MAX_DRIVER_ANSWER_BYTES, WitDriverError,
    WitDriverInfo, WitHostInfo, WitHostState, WitProvisionRequest, WitResources,
};
pub use engine::{EngineConfig, SandboxEngine};
pub use error::{OutputBound, PluginError, TaskError, TaskFailure};
pub use executor::{DriverCall, Executor, TaskOutcome, TaskRequest, Usage};
pub use grants::{Credential, DirGrant, Grants, NetworkGrant, Secret};
pub use host::{EventSink, LogLevel, ToolEvent};
pub use limits::Limits;
pub use plugin::{ImportInfo, Plugin, ToolInfo};
pub use quota::{DiskQuota, InodeKey, QuotaExceeded};
pub use run_services::{RunServices, ToolCallError};

/// The default tool plugins compiled into the binary.
pub mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));
}
