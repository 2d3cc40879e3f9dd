//! What the sandbox asks before a capability is used, and the answers it gets: the one
//! interface between the sandbox and whatever decides (the Cedar policy engine, or
//! [`AllowAll`] for trusted local runs). It depends on neither side.

use serde::Serialize;
use std::net::IpAddr;
use std::time::Instant;

/// Decides whether a capability may be used. Called when the use happens
/// ("lazy decisions"), from the task's own thread, so it must be quick.
pub trait Gate: Send + Sync + 'static {
    fn decide(&self, request: &CapabilityRequest) -> Decision;
}

/// One capability use a running tool asks for.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CapabilityRequest {
    /// An outbound HTTP request. Asked twice: before name resolution (`addr`
    /// empty, so a denied name is never even looked up) and for the address
    /// that will actually be connected to.
    Connect(ConnectRequest),
    /// A read of the named secret: through the host `get-secret` import (`host: None`), or
    /// by the host itself to add it to a request to `host` (a `[[credentials]]` binding).
    ReadSecret {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// Access to a directory outside the session workspace (asked when the task starts).
    ReadFile {
        path: String,
    },
    WriteFile {
        path: String,
    },
    /// A call to a model provider.
    UseModel {
        provider: String,
        model: Option<String>,
        /// Within an agent run: the run and what it used so far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<RunUse>,
    },
}

/// What an agent run used before a model call, as policies see it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RunUse {
    pub run: String,
    /// Model calls made so far.
    pub calls: u64,
    /// Prompt and completion tokens so far.
    pub tokens: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConnectRequest {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<IpAddr>,
}

/// The answer of a gate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why: the determining policy ids, or a sentence.
    pub reasons: Vec<String>,
    /// Evaluation errors met on the way (a deny is returned when they matter).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The policy-set version that decided, when a policy set did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

impl Decision {
    pub fn allow(reason: impl Into<String>) -> Self {
        Self {
            allowed: true,
            reasons: vec![reason.into()],
            errors: Vec::new(),
            policy_version: None,
        }
    }

    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            reasons: vec![reason.into()],
            errors: Vec::new(),
            policy_version: None,
        }
    }
}

/// A decision as recorded in the task's account: what was asked, the answer,
/// and how long deciding took.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub request: CapabilityRequest,
    #[serde(flatten)]
    pub decision: Decision,
    pub elapsed_us: u64,
}

impl DecisionRecord {
    /// Asks `gate` and records the answer.
    pub fn ask(gate: &dyn Gate, request: CapabilityRequest) -> Self {
        let started = Instant::now();
        let decision = gate.decide(&request);
        Self {
            request,
            decision,
            elapsed_us: started.elapsed().as_micros() as u64,
        }
    }
}

/// Allows every capability the task was granted. For local runs and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Gate for AllowAll {
    fn decide(&self, _request: &CapabilityRequest) -> Decision {
        Decision::allow("allow-all gate")
    }
}
