//! The `plugin` driver: a component of the `host-driver` world, run in the sandbox like a
//! tool. Its principal is `driver:<name>` in the profile its config names; its outbound
//! requests are decided by `connect` and its secret reads by `read_secret`, with the
//! policies in force when it runs.

use super::driver::{DriverError, DriverFuture, DriverInfo, HostDriver, ProvisionRequest};
use super::model::{HostReport, Resources};
use crate::policy::{PolicyEngine, TaskIdentity, principal_entity};
use crate::sandbox::{
    DriverAnswer, DriverCall, DriverComponent, DriverRun, EventSink, Grants, Limits, SandboxEngine,
    Secret, ToolEvent, WitDriverError, WitHostInfo, WitHostState, WitProvisionRequest,
    WitResources,
};
use crate::vocabulary::HostState;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How a `[[drivers]]` entry runs its component.
#[derive(Debug, Clone)]
pub struct PluginDriverSettings {
    pub name: String,
    /// Handed to every call as JSON text.
    pub config: serde_json::Value,
    /// The profile its principal (`driver:<name>`) is in for policy decisions.
    pub profile: String,
    /// Secrets it may ask for by name (each read is still decided by policy).
    pub secrets: BTreeMap<String, Secret>,
    pub limits: Limits,
    /// Its requests may reach loopback and private addresses (an autoscaler inside the
    /// operator's network); each is still decided by policy.
    pub allow_private_network: bool,
}

impl Default for PluginDriverSettings {
    fn default() -> Self {
        Self {
            name: String::new(),
            config: serde_json::json!({}),
            profile: "host-driver".into(),
            secrets: BTreeMap::new(),
            limits: Limits {
                timeout: Duration::from_secs(20),
                ..Limits::default()
            },
            allow_private_network: false,
        }
    }
}

pub struct PluginDriver {
    settings: Arc<PluginDriverSettings>,
    component: Arc<DriverComponent>,
    engine: Arc<SandboxEngine>,
    policy: Arc<PolicyEngine>,
    info: DriverInfo,
}

/// A driver's `host.log` records, in the server's log.
struct DriverLog(String);

impl EventSink for DriverLog {
    fn emit(&self, event: ToolEvent) {
        if let ToolEvent::Log { level, message } = event {
            tracing::info!(driver = %self.0, ?level, message, "host driver log");
        }
    }
}

impl PluginDriver {
    /// Compiles the component and asks it to describe itself with its config: a driver that
    /// does not load or refuses its config is an error at start, not at first use.
    pub async fn load(
        settings: PluginDriverSettings,
        bytes: Vec<u8>,
        engine: Arc<SandboxEngine>,
        policy: Arc<PolicyEngine>,
    ) -> Result<Self, DriverError> {
        let name = settings.name.clone();
        let failed = |message: String| DriverError::Failed {
            driver: name.clone(),
            message,
        };
        let compiling = engine.clone();
        let loaded = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || DriverComponent::load(&compiling, &name, &bytes))
                .await
                .map_err(|e| failed(e.to_string()))?
        };
        let component = loaded.map_err(|e| DriverError::InvalidConfig {
            driver: name.clone(),
            message: e.to_string(),
        })?;
        policy
            .upsert_entities([principal_entity(
                &format!("driver:{name}"),
                &[&settings.profile],
            )])
            .map_err(|e| {
                failed(format!(
                    "cannot add its principal to the policy entities: {e}"
                ))
            })?;
        let mut driver = Self {
            settings: Arc::new(settings),
            component: Arc::new(component),
            engine,
            policy,
            info: DriverInfo {
                name: name.clone(),
                kind: "plugin".into(),
                description: String::new(),
                can_provision: false,
            },
        };
        let config = driver.config_text();
        match driver.call(DriverCall::Describe { config }).await? {
            DriverAnswer::Info(Ok(info)) => {
                driver.info.description = info.description.chars().take(1024).collect();
                driver.info.can_provision = info.can_provision;
                Ok(driver)
            }
            DriverAnswer::Info(Err(error)) => Err(driver_error(&name, error)),
            _ => Err(failed("`describe` answered something else".into())),
        }
    }

    fn config_text(&self) -> String {
        self.settings.config.to_string()
    }

    /// One export in a fresh instance, with the driver's grants, gate and limits.
    async fn call(&self, call: DriverCall) -> Result<DriverAnswer, DriverError> {
        let name = &self.settings.name;
        let principal = format!("driver:{name}");
        let gate = self.policy.task_gate(TaskIdentity {
            principal: principal.clone(),
            profile: self.settings.profile.clone(),
            session: super::HOSTS_STREAM.into(),
            tool: principal,
        });
        let mut grants = Grants {
            secrets: self.settings.secrets.clone(),
            ..Grants::default()
        };
        grants.network.http = true;
        grants.network.allow_private_addresses = self.settings.allow_private_network;
        let run = DriverRun {
            grants,
            limits: self.settings.limits,
            gate: Arc::new(gate),
            events: Some(Arc::new(DriverLog(name.clone()))),
            cancel: None,
        };
        self.component
            .call(&self.engine, run, call)
            .await
            .map_err(|error| DriverError::Failed {
                driver: name.clone(),
                message: format!("its component failed: {error}"),
            })
    }

    fn hosts(&self, answer: DriverAnswer) -> Result<Vec<HostReport>, DriverError> {
        let name = &self.settings.name;
        match answer {
            DriverAnswer::Hosts(Ok(hosts)) => {
                if hosts.len() > super::driver::MAX_HOSTS_PER_DRIVER {
                    return Err(DriverError::BadAnswer {
                        driver: name.clone(),
                        message: format!(
                            "{} hosts; at most {}",
                            hosts.len(),
                            super::driver::MAX_HOSTS_PER_DRIVER
                        ),
                    });
                }
                Ok(hosts.into_iter().map(report).collect())
            }
            DriverAnswer::Hosts(Err(error)) => Err(driver_error(name, error)),
            _ => Err(DriverError::BadAnswer {
                driver: name.clone(),
                message: "answered something other than hosts".into(),
            }),
        }
    }
}

fn driver_error(driver: &str, error: WitDriverError) -> DriverError {
    let driver = driver.to_owned();
    let cut = |text: String| text.chars().take(2048).collect::<String>();
    match error {
        WitDriverError::InvalidConfig(message) => DriverError::InvalidConfig {
            driver,
            message: cut(message),
        },
        WitDriverError::Unsupported(message) => DriverError::Unsupported {
            driver,
            message: cut(message),
        },
        WitDriverError::Unavailable(message) => DriverError::Unavailable {
            driver,
            message: cut(message),
        },
        WitDriverError::Refused(message) => DriverError::Refused {
            driver,
            message: cut(message),
        },
        WitDriverError::Failed(message) => DriverError::Failed {
            driver,
            message: cut(message),
        },
    }
}

fn resources(r: WitResources) -> Resources {
    Resources {
        cpu_millis: r.cpu_millis,
        memory_mb: r.memory_mb,
        disk_mb: r.disk_mb,
    }
}

fn report(host: WitHostInfo) -> HostReport {
    HostReport {
        id: host.id,
        endpoint: host.endpoint,
        state: match host.state {
            WitHostState::Ready => HostState::Ready,
            WitHostState::Draining => HostState::Draining,
            WitHostState::Unhealthy => HostState::Unhealthy,
            WitHostState::Standby => HostState::Standby,
            WitHostState::Provisioning => HostState::Provisioning,
        },
        // Over-long lists are refused by the registry's checks; collecting first keeps
        // their length visible there.
        labels: host.labels.into_iter().collect(),
        capacity: host.capacity.map(resources),
        max_session_timeout_ms: host.max_session_timeout_ms,
        metrics: host.metrics.into_iter().collect(),
    }
}

impl HostDriver for PluginDriver {
    fn info(&self) -> DriverInfo {
        self.info.clone()
    }

    fn list(&self) -> DriverFuture<Result<Vec<HostReport>, DriverError>> {
        let this = self.clone_handle();
        Box::pin(async move {
            let config = this.config_text();
            let answer = this.call(DriverCall::List { config }).await?;
            this.hosts(answer)
        })
    }

    fn provision(
        &self,
        request: ProvisionRequest,
    ) -> DriverFuture<Result<Vec<HostReport>, DriverError>> {
        let this = self.clone_handle();
        Box::pin(async move {
            let config = this.config_text();
            let request = WitProvisionRequest {
                count: request.count,
                resources: request.resources.map(|r| WitResources {
                    cpu_millis: r.cpu_millis,
                    memory_mb: r.memory_mb,
                    disk_mb: r.disk_mb,
                }),
                labels: request.labels.into_iter().collect(),
                reason: request.reason,
            };
            let answer = this.call(DriverCall::Provision { config, request }).await?;
            this.hosts(answer)
        })
    }

    fn release(&self, host: &str) -> DriverFuture<Result<(), DriverError>> {
        let this = self.clone_handle();
        let host = host.to_owned();
        Box::pin(async move {
            let config = this.config_text();
            match this.call(DriverCall::Release { config, host }).await? {
                DriverAnswer::Released(Ok(())) => Ok(()),
                DriverAnswer::Released(Err(error)) => Err(driver_error(&this.settings.name, error)),
                _ => Err(DriverError::BadAnswer {
                    driver: this.settings.name.clone(),
                    message: "`release` answered something else".into(),
                }),
            }
        })
    }
}

impl PluginDriver {
    /// The driver's parts, for a call's future (which must own what it uses).
    fn clone_handle(&self) -> Self {
        Self {
            settings: self.settings.clone(),
            component: self.component.clone(),
            engine: self.engine.clone(),
            policy: self.policy.clone(),
            info: self.info.clone(),
        }
    }
}
