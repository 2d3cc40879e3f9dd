//! Host-driver components: a component of the `host-driver` world (see `wit/host-driver.wit`)
//! run like a tool: a fresh instance per call from one `InstancePre`, with exactly its grants,
//! its capability uses decided by its gate, and a tool's limits (fuel, memory, deadline,
//! output). The answer is copied out of the guest within [`MAX_DRIVER_ANSWER_BYTES`].

use super::engine::SandboxEngine;
use super::error::{PluginError, TaskError};
use super::executor::{self, DriverCall, Returned};
use super::grants::Grants;
use super::host::EventSink;
use super::limits::Limits;
use super::state::TaskState;
use crate::gate::Gate;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(crate) mod wit {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "toolgate:plugin/host-driver",
        imports: { default: trappable },
        exports: { default: async },
        with: { "toolgate:plugin/host": crate::sandbox::bindings::toolgate::plugin::host },
    });
}

pub use wit::toolgate::plugin::driver_types::{
    DriverError as WitDriverError, DriverInfo as WitDriverInfo, HostInfo as WitHostInfo,
    HostState as WitHostState, ProvisionRequest as WitProvisionRequest, Resources as WitResources,
};

/// The most a driver's answer may take when copied out of the guest.
pub const MAX_DRIVER_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The exports the `host-driver` world requires.
const REQUIRED_EXPORTS: [&str; 4] = ["describe", "list-hosts", "provision", "release"];

/// A compiled driver component, ready to be instantiated for any call.
pub struct DriverComponent {
    name: String,
    pre: wit::HostDriverPre<TaskState>,
}

/// How one call runs: what it may reach and how far.
pub struct DriverRun {
    pub grants: Grants,
    pub limits: Limits,
    pub gate: Arc<dyn Gate>,
    pub events: Option<Arc<dyn EventSink>>,
    pub cancel: Option<CancellationToken>,
}

/// What a call answered, when the component returned.
#[derive(Debug, Clone)]
pub enum DriverAnswer {
    Info(Result<WitDriverInfo, WitDriverError>),
    Hosts(Result<Vec<WitHostInfo>, WitDriverError>),
    Released(Result<(), WitDriverError>),
}

impl DriverComponent {
    /// Compiles `bytes` and checks it is a `host-driver` component whose imports the host
    /// provides. Long work: callers run it off the async workers.
    pub fn load(engine: &SandboxEngine, name: &str, bytes: &[u8]) -> Result<Self, PluginError> {
        let origin = format!("host driver `{name}`");
        let instance_pre =
            super::plugin::link_component(engine, &origin, bytes, &REQUIRED_EXPORTS)?;
        let pre =
            wit::HostDriverPre::new(instance_pre).map_err(|e| PluginError::WrongSignature {
                origin,
                message: format!("{e:#}"),
            })?;
        Ok(Self {
            name: name.to_owned(),
            pre,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs one export in a fresh instance. `Err` when the component did not return (a trap,
    /// fuel, memory, the deadline, its output budget, an answer too large to copy).
    pub async fn call(
        &self,
        engine: &SandboxEngine,
        run: DriverRun,
        call: DriverCall,
    ) -> Result<DriverAnswer, TaskError> {
        let limits = run.limits.clamp_to(&engine.config().max_limits);
        match executor::run_driver(engine, &self.pre, &run, &limits, call).await {
            Ok(Returned::Driver(answer)) => Ok(answer),
            Ok(_) => Err(TaskError::Internal {
                message: "a driver call returned a tool's answer".into(),
            }),
            Err(error) => Err(error),
        }
    }
}

/// Calls one export on an instance (inside the executor's store and limits).
pub(crate) async fn invoke(
    store: &mut wasmtime::Store<TaskState>,
    driver: &wit::HostDriver,
    call: DriverCall,
) -> wasmtime::Result<DriverAnswer> {
    store.set_hostcall_fuel(MAX_DRIVER_ANSWER_BYTES);
    Ok(match call {
        DriverCall::Describe { config } => {
            DriverAnswer::Info(driver.call_describe(&mut *store, &config).await?)
        }
        DriverCall::List { config } => {
            DriverAnswer::Hosts(driver.call_list_hosts(&mut *store, &config).await?)
        }
        DriverCall::Provision { config, request } => DriverAnswer::Hosts(
            driver
                .call_provision(&mut *store, &config, &request)
                .await?,
        ),
        DriverCall::Release { config, host } => {
            DriverAnswer::Released(driver.call_release(&mut *store, &config, &host).await?)
        }
    })
}
