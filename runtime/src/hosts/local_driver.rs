//! The `local` driver: the server's own machine, running sessions in the server's process.

use super::driver::{DriverError, DriverFuture, DriverInfo, HostDriver};
use super::model::HostReport;
use crate::sidecar::machine;
use crate::vocabulary::HostState;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The in-process host's id (and its sidecar's).
pub const LOCAL: &str = "local";

pub struct LocalDriver {
    /// Where workspaces are kept: its disk is the host's disk.
    pub workspaces: PathBuf,
    pub labels: BTreeMap<String, String>,
}

impl HostDriver for LocalDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: LOCAL.into(),
            kind: "local".into(),
            description: "this machine: sessions run in the server's own process".into(),
            can_provision: false,
        }
    }

    fn list(&self) -> DriverFuture<Result<Vec<HostReport>, DriverError>> {
        let workspaces = self.workspaces.clone();
        let labels = self.labels.clone();
        Box::pin(async move {
            let measured = tokio::task::spawn_blocking(move || machine::measure(&workspaces))
                .await
                .map_err(|e| DriverError::Failed {
                    driver: LOCAL.into(),
                    message: e.to_string(),
                })?;
            Ok(vec![HostReport {
                id: LOCAL.into(),
                endpoint: LOCAL.into(),
                state: HostState::Ready,
                labels,
                capacity: Some((&measured).into()),
                max_session_timeout_ms: None,
                metrics: measured.metrics,
            }])
        })
    }
}
