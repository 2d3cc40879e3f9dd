//! The one trait every host driver is behind: this machine (`local`), the sidecars of the
//! config (`static`), or a component of the `host-driver` world (`plugin`).

use super::model::{HostReport, Resources};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

pub type DriverFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a driver says of itself.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DriverInfo {
    /// Its name in the config (`local`, `static`, or the `[[drivers]]` entry's).
    pub name: String,
    /// `local`, `static` or `plugin`.
    pub kind: String,
    pub description: String,
    /// Whether it can bring up hosts when none has room (and release idle ones).
    pub can_provision: bool,
}

/// Capacity asked of a driver: a count of hosts, or the resources one session needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionRequest {
    /// Hosts to bring up.
    pub count: u32,
    /// What the session that waits for them needs: each host should have at least this.
    pub resources: Option<Resources>,
    /// Labels the hosts should have (the session's preferred region).
    pub labels: BTreeMap<String, String>,
    /// Why, for the operator's logs.
    pub reason: String,
}

/// Why a driver could not do what it was asked. `code` is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("driver `{driver}`: its configuration is not valid: {message}")]
    InvalidConfig { driver: String, message: String },
    #[error("driver `{driver}` cannot do that: {message}")]
    Unsupported { driver: String, message: String },
    #[error("driver `{driver}` is unavailable: {message}")]
    Unavailable { driver: String, message: String },
    #[error("driver `{driver}` was refused: {message}")]
    Refused { driver: String, message: String },
    #[error("driver `{driver}` failed: {message}")]
    Failed { driver: String, message: String },
    /// Its answer breaks the contract (a bad id or endpoint, too many hosts, ...).
    #[error("driver `{driver}` answered what toolgate cannot use: {message}")]
    BadAnswer { driver: String, message: String },
}

impl DriverError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "driver_config",
            Self::Unsupported { .. } => "driver_unsupported",
            Self::Unavailable { .. } => "driver_unavailable",
            Self::Refused { .. } => "driver_refused",
            Self::Failed { .. } => "driver_failed",
            Self::BadAnswer { .. } => "driver_bad_answer",
        }
    }
}

/// Reports hosts, and for drivers that can, brings them up and lets them go.
pub trait HostDriver: Send + Sync {
    fn info(&self) -> DriverInfo;
    /// Every host the driver knows now, with its state, labels, capacity and metrics.
    fn list(&self) -> DriverFuture<Result<Vec<HostReport>, DriverError>>;
    /// Brings up capacity; answers the hosts it is bringing up (their sidecars may not
    /// answer yet).
    fn provision(
        &self,
        request: ProvisionRequest,
    ) -> DriverFuture<Result<Vec<HostReport>, DriverError>> {
        let name = self.info().name;
        let _ = request;
        Box::pin(async move {
            Err(DriverError::Unsupported {
                driver: name,
                message: "it has a fixed set of hosts".into(),
            })
        })
    }
    /// Lets an idle host go.
    fn release(&self, host: &str) -> DriverFuture<Result<(), DriverError>> {
        let name = self.info().name;
        let host = host.to_owned();
        Box::pin(async move {
            Err(DriverError::Unsupported {
                driver: name,
                message: format!("it cannot release `{host}`: it has a fixed set of hosts"),
            })
        })
    }
}

/// The limits every report of every driver is held to: a driver (a plugin above all) that
/// answers more or larger is refused, not trusted.
pub const MAX_HOSTS_PER_DRIVER: usize = 1024;
const MAX_ID: usize = 128;
const MAX_ENDPOINT: usize = 2048;
const MAX_LABELS: usize = 32;
const MAX_LABEL: usize = 256;
const MAX_METRICS: usize = 32;

/// Checks a driver's answer before the registry believes it.
pub fn check_reports(driver: &str, reports: &[HostReport]) -> Result<(), DriverError> {
    let bad = |message: String| DriverError::BadAnswer {
        driver: driver.to_owned(),
        message,
    };
    if reports.len() > MAX_HOSTS_PER_DRIVER {
        return Err(bad(format!(
            "{} hosts; at most {MAX_HOSTS_PER_DRIVER}",
            reports.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for report in reports {
        let id = &report.id;
        let valid_id = !id.is_empty()
            && id.len() <= MAX_ID
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_id {
            return Err(bad(format!(
                "host id {:?} must be 1-{MAX_ID} letters, digits, `-`, `_` or `.`",
                truncated(id)
            )));
        }
        if id == "events" {
            return Err(bad(
                "host id `events` is reserved (`/v1/hosts/events` is the host stream)".into(),
            ));
        }
        if !seen.insert(id.as_str()) {
            return Err(bad(format!("host `{id}` is listed twice")));
        }
        let endpoint = &report.endpoint;
        let valid_endpoint = endpoint.len() <= MAX_ENDPOINT
            && (endpoint == "local"
                || endpoint.starts_with("http://")
                || endpoint.starts_with("https://"));
        if !valid_endpoint {
            return Err(bad(format!(
                "host `{id}`: endpoint {:?} must be an http(s) URL",
                truncated(endpoint)
            )));
        }
        if report.labels.len() > MAX_LABELS
            || report
                .labels
                .iter()
                .any(|(k, v)| k.len() > MAX_LABEL || v.len() > MAX_LABEL)
        {
            return Err(bad(format!(
                "host `{id}`: at most {MAX_LABELS} labels of {MAX_LABEL} bytes"
            )));
        }
        if report.metrics.len() > MAX_METRICS
            || report
                .metrics
                .iter()
                .any(|(k, v)| k.len() > MAX_LABEL || !v.is_finite())
        {
            return Err(bad(format!(
                "host `{id}`: at most {MAX_METRICS} finite metrics"
            )));
        }
    }
    Ok(())
}

fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}
