//! toolgate's own host interface (`toolgate:plugin/host`): log and progress
//! events, and secrets read after a policy decision.

use super::bindings::{self, SecretError, WitLogLevel};
use super::capabilities::{DecisionLog, OutputBudget};
use super::grants::Secret;
use super::state::TaskState;
use crate::gate::{CapabilityRequest, Gate};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Severity of a tool's log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Something a running tool reported through the host interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolEvent {
    Log {
        level: LogLevel,
        message: String,
    },
    Progress {
        done: u64,
        total: Option<u64>,
        message: Option<String>,
    },
}

/// Receives a task's events as they happen. Must not block: a slow consumer
/// must never slow the tool down.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: ToolEvent);
}

/// The state behind the host interface for one task.
pub(crate) struct HostServices {
    pub(crate) events: Option<Arc<dyn EventSink>>,
    pub(crate) budget: Arc<OutputBudget>,
    pub(crate) secrets: BTreeMap<String, Secret>,
    pub(crate) gate: Arc<dyn Gate>,
    pub(crate) decisions: DecisionLog,
    /// The run's services, in an agent's store.
    pub(crate) agent: Option<Arc<dyn super::run_services::RunServices>>,
}

impl HostServices {
    fn emit(&self, event: ToolEvent) {
        if let Some(sink) = &self.events {
            sink.emit(event);
        }
    }
}

impl bindings::toolgate::plugin::types::Host for TaskState {}

impl bindings::toolgate::plugin::host::Host for TaskState {
    fn log(&mut self, level: WitLogLevel, message: String) -> wasmtime::Result<()> {
        self.host.budget.charge_record(message.len() as u64)?;
        let level = match level {
            WitLogLevel::Trace => LogLevel::Trace,
            WitLogLevel::Debug => LogLevel::Debug,
            WitLogLevel::Info => LogLevel::Info,
            WitLogLevel::Warn => LogLevel::Warn,
            WitLogLevel::Error => LogLevel::Error,
        };
        self.host.emit(ToolEvent::Log { level, message });
        Ok(())
    }

    fn progress(
        &mut self,
        done: u64,
        total: Option<u64>,
        message: Option<String>,
    ) -> wasmtime::Result<()> {
        let payload = message.as_ref().map_or(0, |m| m.len() as u64);
        self.host.budget.charge_record(payload)?;
        self.host.emit(ToolEvent::Progress {
            done,
            total,
            message,
        });
        Ok(())
    }

    fn get_secret(&mut self, name: String) -> wasmtime::Result<Result<String, SecretError>> {
        let host = &mut self.host;
        let decision = host.decisions.ask(
            &*host.gate,
            CapabilityRequest::ReadSecret {
                name: name.clone(),
                host: None,
            },
        )?;
        if !decision.allowed {
            return Ok(Err(SecretError::Denied(decision.reasons.join("; "))));
        }
        Ok(match host.secrets.get(&name) {
            Some(secret) => Ok(secret.expose().to_owned()),
            None => Err(SecretError::NotFound),
        })
    }
}
