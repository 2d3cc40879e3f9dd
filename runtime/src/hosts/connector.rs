//! Turns a host's endpoint into the client of its sidecar: the in-process sidecar for
//! `local`, the configured client of a `[[sidecars]]` entry, or a new client of a host a
//! driver brought up (with that driver's sidecar credentials).

use super::model::HostReport;
use super::registry::Connector;
use crate::sidecar::{LocalSidecar, RemoteContext, RemoteSidecar, Sidecar, SidecarEndpoint};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How to reach the sidecars of one driver's hosts.
#[derive(Clone)]
pub struct SidecarCredentials {
    pub token: String,
    pub ca_certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Plain `http` off loopback is allowed.
    pub allow_plaintext: bool,
}

impl std::fmt::Debug for SidecarCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarCredentials")
            .field("token", &"<redacted>")
            .field("ca_certificates", &self.ca_certificates.len())
            .field("allow_plaintext", &self.allow_plaintext)
            .finish()
    }
}

pub struct SidecarConnector {
    pub local: Option<LocalSidecar>,
    /// The `[[sidecars]]` clients, by host id.
    pub configured: HashMap<String, Arc<dyn Sidecar>>,
    /// Per driver name, for hosts drivers bring up.
    pub credentials: HashMap<String, SidecarCredentials>,
    pub context: RemoteContext,
    pub health_interval: Duration,
    pub health_timeout: Duration,
}

impl Connector for SidecarConnector {
    fn connect(&self, driver: &str, report: &HostReport) -> Result<Arc<dyn Sidecar>, String> {
        if report.endpoint == super::LOCAL {
            return match (&self.local, driver) {
                (Some(local), super::LOCAL) => Ok(Arc::new(local.clone())),
                _ => Err("only the local driver has the in-process host".into()),
            };
        }
        if let Some(sidecar) = self.configured.get(&report.id) {
            return Ok(sidecar.clone());
        }
        let credentials = self
            .credentials
            .get(driver)
            .ok_or_else(|| format!("driver `{driver}` has no sidecar credentials"))?;
        let url: http::Uri = report
            .endpoint
            .parse()
            .map_err(|e| format!("endpoint `{}`: {e}", report.endpoint))?;
        let https = url.scheme_str() == Some("https");
        let host = url.host().unwrap_or_default();
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !https && !loopback && !credentials.allow_plaintext {
            return Err(format!(
                "endpoint `{}` is plain HTTP off loopback: the sidecar token would cross the network in the clear (the driver's allow_plaintext is off)",
                report.endpoint
            ));
        }
        let endpoint = SidecarEndpoint {
            id: report.id.clone(),
            url: report.endpoint.clone(),
            token: credentials.token.clone(),
            ca_certificates: credentials.ca_certificates.clone(),
            health_interval: self.health_interval,
            health_timeout: self.health_timeout,
        };
        let client =
            RemoteSidecar::new(endpoint, self.context.clone()).map_err(|e| e.to_string())?;
        Ok(Arc::new(client))
    }
}
