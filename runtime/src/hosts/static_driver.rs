//! The `static` driver: the `[[sidecars]]` of the config, a fixed set of hosts.

use super::driver::{DriverError, DriverFuture, DriverInfo, HostDriver};
use super::model::HostReport;

pub struct StaticDriver {
    /// As the config describes them; capacity `None` is what each sidecar measures.
    pub hosts: Vec<HostReport>,
}

impl HostDriver for StaticDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: "static".into(),
            kind: "static".into(),
            description: "the sidecars listed in the server's config".into(),
            can_provision: false,
        }
    }

    fn list(&self) -> DriverFuture<Result<Vec<HostReport>, DriverError>> {
        let hosts = self.hosts.clone();
        Box::pin(async move { Ok(hosts) })
    }
}
