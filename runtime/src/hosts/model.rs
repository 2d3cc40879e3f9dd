//! What a host is, as drivers report it and placement reads it.

use crate::vocabulary::HostState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An amount of cpu, memory and disk: a host's capacity, what is allocated on it, what a
/// session asks for.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct Resources {
    /// Thousandths of a core.
    pub cpu_millis: u64,
    pub memory_mb: u64,
    pub disk_mb: u64,
}

impl Resources {
    pub const ZERO: Self = Self {
        cpu_millis: 0,
        memory_mb: 0,
        disk_mb: 0,
    };

    pub fn saturating_add(self, other: Self) -> Self {
        Self {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_mb: self.memory_mb.saturating_add(other.memory_mb),
            disk_mb: self.disk_mb.saturating_add(other.disk_mb),
        }
    }

    pub fn saturating_sub(self, other: Self) -> Self {
        Self {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_mb: self.memory_mb.saturating_sub(other.memory_mb),
            disk_mb: self.disk_mb.saturating_sub(other.disk_mb),
        }
    }

    /// Whether `self` fits in `room`, resource by resource.
    pub fn fits_in(self, room: Self) -> bool {
        self.cpu_millis <= room.cpu_millis
            && self.memory_mb <= room.memory_mb
            && self.disk_mb <= room.disk_mb
    }

    /// Each resource times its factor (overcommit), rounded down.
    pub fn scaled(self, factors: Overcommit) -> Self {
        let scale = |value: u64, factor: f64| (value as f64 * factor).min(u64::MAX as f64) as u64;
        Self {
            cpu_millis: scale(self.cpu_millis, factors.cpu),
            memory_mb: scale(self.memory_mb, factors.memory),
            disk_mb: scale(self.disk_mb, factors.disk),
        }
    }

    /// The resource by its name in metrics and messages.
    pub fn named(self) -> [(&'static str, u64); 3] {
        [
            ("cpu_millis", self.cpu_millis),
            ("memory_mb", self.memory_mb),
            ("disk_mb", self.disk_mb),
        ]
    }
}

impl From<&crate::sidecar::Machine> for Resources {
    fn from(machine: &crate::sidecar::Machine) -> Self {
        Self {
            cpu_millis: machine.cpu_millis,
            memory_mb: machine.memory_mb,
            disk_mb: machine.disk_mb,
        }
    }
}

impl From<crate::policy::ResourceRequest> for Resources {
    fn from(request: crate::policy::ResourceRequest) -> Self {
        Self {
            cpu_millis: request.cpu_millis,
            memory_mb: request.memory_mb,
            disk_mb: request.disk_mb,
        }
    }
}

/// How far sessions' reservations may exceed a host's measured capacity, per resource.
/// Sessions are mostly idle between tool calls, so a host can hold more of them than its
/// cores and memory would if every one were busy at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overcommit {
    #[serde(default = "Overcommit::default_cpu")]
    pub cpu: f64,
    #[serde(default = "Overcommit::one")]
    pub memory: f64,
    #[serde(default = "Overcommit::one")]
    pub disk: f64,
}

impl Overcommit {
    pub const NONE: Self = Self {
        cpu: 1.0,
        memory: 1.0,
        disk: 1.0,
    };

    fn default_cpu() -> f64 {
        8.0
    }

    fn one() -> f64 {
        1.0
    }
}

impl Default for Overcommit {
    fn default() -> Self {
        Self {
            cpu: Self::default_cpu(),
            memory: 4.0,
            disk: 4.0,
        }
    }
}

/// One host as its driver reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostReport {
    /// Unique among all drivers' hosts.
    pub id: String,
    /// Where its sidecar answers: `local` (in the server's process) or an `http(s)` URL.
    pub endpoint: String,
    /// `ready`, `draining`, `unhealthy` or `standby` as the driver sees it (`provisioning`
    /// while a host it is bringing up does not answer yet).
    pub state: HostState,
    /// Free-form labels; `region` is the one placement hints use.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What the host has; `None`: what its sidecar measures of its machine.
    #[serde(default)]
    pub capacity: Option<Resources>,
    /// The longest session timeout (ms) the host takes; `None`: any.
    #[serde(default)]
    pub max_session_timeout_ms: Option<u64>,
    /// Load and other figures the driver knows (`load_1m`, `memory_used_mb`, ...).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

impl HostReport {
    pub fn region(&self) -> Option<&str> {
        self.labels.get("region").map(String::as_str)
    }
}

/// Where a session would like to run. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementHints {
    /// Hosts labelled with this `region` are preferred; others are used when none fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Only these hosts (by id) may take the session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// These hosts never take it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid: Vec<String>,
}

/// Hosts a hint list may name, at most.
pub const MAX_HINTED_HOSTS: usize = 64;

impl PlacementHints {
    pub fn is_empty(&self) -> bool {
        self.region.is_none() && self.hosts.is_empty() && self.avoid.is_empty()
    }

    /// Refuses hints beyond their bounds, saying which.
    pub fn check(&self) -> Result<(), String> {
        for (field, list) in [("hosts", &self.hosts), ("avoid", &self.avoid)] {
            if list.len() > MAX_HINTED_HOSTS {
                return Err(format!(
                    "`placement.{field}` names {} hosts; at most {MAX_HINTED_HOSTS}",
                    list.len()
                ));
            }
            if list.iter().any(|id| id.is_empty() || id.len() > 128) {
                return Err(format!(
                    "`placement.{field}`: a host id is 1-128 characters"
                ));
            }
        }
        if self
            .region
            .as_ref()
            .is_some_and(|r| r.is_empty() || r.len() > 256)
        {
            return Err("`placement.region` is 1-256 characters".into());
        }
        Ok(())
    }
}

/// What placement is asked to fit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    pub resources: Resources,
    pub timeout_ms: u64,
    pub hints: PlacementHints,
    /// Only a host that is ready now: no standby host promoted, no driver asked (the
    /// readiness self-test must change nothing).
    pub passive: bool,
}
