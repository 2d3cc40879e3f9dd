//! Server settings: flags over environment over a TOML file over defaults.

use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `toolgate serve` flags. Each also reads `TOOLGATE_<NAME>` and the config file.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "TOOLGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where sessions, tasks, events and keys are kept [default: $XDG_DATA_HOME/toolgate or ~/.local/share/toolgate].
    #[arg(long, env = "TOOLGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Policy directory, watched for changes [default: the policies built into the binary].
    #[arg(long, env = "TOOLGATE_POLICIES")]
    pub policies: Option<PathBuf>,
    /// A directory of extra plugins (`NAME.wasm`).
    #[arg(long, env = "TOOLGATE_PLUGINS")]
    pub plugins: Option<PathBuf>,
    /// A TOML file with any of these settings (same names, `_` for `-`).
    #[arg(long, env = "TOOLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// A JSON object of secrets (`{"name": "value"}`); `TOOLGATE_SECRET_<NAME>` variables are read too.
    #[arg(long, env = "TOOLGATE_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Requests per second allowed to each principal [default: 50].
    #[arg(long, env = "TOOLGATE_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Requests a principal may burst above the rate [default: 100].
    #[arg(long, env = "TOOLGATE_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Sessions open at once, all principals [default: 64].
    #[arg(long, env = "TOOLGATE_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    policies: Option<PathBuf>,
    plugins: Option<PathBuf>,
    secrets_file: Option<PathBuf>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    max_sessions: Option<usize>,
    max_running_tasks: Option<u32>,
    body_limit_kb: Option<usize>,
    header_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    plugin_limit_kb: Option<usize>,
    request_timeout_ms: Option<u64>,
    max_concurrent_requests: Option<usize>,
    max_requests_per_principal: Option<usize>,
    session_idle_timeout_s: Option<u64>,
    session_lifetime_s: Option<u64>,
    policy_poll_ms: Option<u64>,
    event_buffer: Option<usize>,
    event_retention: Option<u64>,
    local_sidecar: Option<bool>,
    #[serde(default)]
    sidecars: Vec<SidecarEntry>,
    #[serde(default)]
    drivers: Vec<DriverEntry>,
    sidecar_health_interval_ms: Option<u64>,
    sidecar_health_timeout_ms: Option<u64>,
    placement_strategy: Option<crate::vocabulary::PlacementStrategy>,
    placement_wait_ms: Option<u64>,
    overcommit: Option<crate::hosts::Overcommit>,
    /// Labels of the server's own host (`region` among them).
    #[serde(default)]
    local_labels: std::collections::BTreeMap<String, String>,
    standby_demote_after_s: Option<u64>,
    mcp_allowed_hosts: Option<Vec<String>>,
    mcp_allowed_origins: Option<Vec<String>>,
    mcp_max_sessions_per_principal: Option<usize>,
    #[serde(default)]
    model_providers: Vec<crate::agents::ProviderConfig>,
    approval_timeout_s: Option<u64>,
    #[serde(default)]
    credentials: Vec<crate::secrets::CredentialBinding>,
    #[serde(default)]
    sessions_allow_private_network: bool,
    agents_dir: Option<PathBuf>,
}

/// One `[[sidecars]]` table of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SidecarEntry {
    id: String,
    url: String,
    token_file: PathBuf,
    /// PEM certificates trusted for an `https` url (an operator's CA or the sidecar's own
    /// self-signed certificate); the public web roots when absent.
    ca_file: Option<PathBuf>,
    /// Plain `http` to a host other than loopback (the token then crosses the network in
    /// the clear).
    #[serde(default)]
    allow_plaintext: bool,
    /// Held in reserve: promoted when no ready host has room for a session.
    #[serde(default)]
    standby: bool,
    /// `region` and any other labels placement hints can name.
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    /// What the host offers sessions; each one left out is what its sidecar measures.
    cpu_millis: Option<u64>,
    memory_mb: Option<u64>,
    disk_mb: Option<u64>,
    /// The longest session timeout it takes.
    max_session_timeout_ms: Option<u64>,
}

/// One `[[drivers]]` table: a host-driver component that reports (and may bring up and
/// release) hosts running `toolgate sidecar`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DriverEntry {
    name: String,
    /// `webhook` (bundled) or the path of a `.wasm` component of the `host-driver` world.
    component: String,
    /// Handed to the component on every call, as JSON.
    #[serde(default)]
    config: Option<toml::Table>,
    /// The profile of its principal (`driver:<name>`) for policy decisions.
    profile: Option<String>,
    /// Secrets it may ask for by name (each read decided by policy).
    #[serde(default)]
    secrets: Vec<String>,
    /// Its requests may reach loopback and private addresses (still decided by policy).
    #[serde(default)]
    allow_private_network: bool,
    /// How long one call may run.
    timeout_ms: Option<u64>,
    /// The token its hosts' sidecars expect.
    sidecar_token_file: PathBuf,
    sidecar_ca_file: Option<PathBuf>,
    /// Plain `http` to its hosts' sidecars off loopback.
    #[serde(default)]
    sidecar_allow_plaintext: bool,
    min_hosts: Option<usize>,
    max_hosts: Option<usize>,
    max_in_flight: Option<usize>,
    cooldown_s: Option<u64>,
    idle_release_s: Option<u64>,
    provision_timeout_s: Option<u64>,
    list_interval_ms: Option<u64>,
}

/// A host driver of the config, resolved.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub name: String,
    /// The component's bytes (a bundled one's, or the file's).
    pub component: Vec<u8>,
    pub settings: crate::hosts::PluginDriverSettings,
    /// Secret names it is granted (their values are read with the server's secrets).
    pub secrets: Vec<String>,
    pub credentials: crate::hosts::SidecarCredentials,
    pub scaling: crate::hosts::Scaling,
    pub list_every: Duration,
}

/// A `toolgate sidecar` this server runs sessions on.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    pub id: String,
    /// `https://host:port`, or `http://host:port` on loopback or a network the operator
    /// trusts.
    pub url: String,
    pub token: String,
    /// Trusted roots for `https`; empty: the public web roots.
    pub ca_certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The host as the `static` driver reports it.
    pub host: crate::hosts::HostReport,
}

/// The resolved settings of a server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub policies: Option<PathBuf>,
    pub plugins: Option<PathBuf>,
    pub secrets_file: Option<PathBuf>,
    pub rate_limit: u32,
    pub rate_burst: u32,
    pub max_sessions: usize,
    /// Tasks running at once, all sessions; more wait `queued` (undecided) for a slot.
    pub max_running_tasks: u32,
    pub body_limit: usize,
    /// How long a connection may go without a request in flight (from its accept on):
    /// the time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Connections open at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// The largest plugin an admin may upload, in bytes.
    pub plugin_limit: usize,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    /// Requests one principal may have in flight (from authentication to the answer).
    pub max_requests_per_principal: usize,
    pub session_idle_timeout: Duration,
    pub session_lifetime: Duration,
    pub policy_poll: Duration,
    /// SSE heartbeat comment interval.
    pub heartbeat: Duration,
    /// Events of each session kept in memory for fast replay.
    pub event_buffer: usize,
    /// Events of each session kept in the store; older ones are pruned and a
    /// client asking for them gets a `gap` event.
    pub event_retention: u64,
    /// How often the reaper closes expired sessions and prunes old events.
    pub reap_interval: Duration,
    /// Whether sessions may run in the server's own process (on unless `local_sidecar = false`).
    pub local_sidecar: bool,
    pub sidecars: Vec<SidecarConfig>,
    /// Host-driver components (`[[drivers]]`).
    pub drivers: Vec<DriverConfig>,
    pub sidecar_health_interval: Duration,
    /// A sidecar that does not answer for this long is lost: its sessions end `host_lost`.
    pub sidecar_health_timeout: Duration,
    /// Spread (default) or bin-pack.
    pub placement_strategy: crate::vocabulary::PlacementStrategy,
    /// How long a session waits for a promoted or provisioned host before `capacity`.
    pub placement_wait: Duration,
    pub overcommit: crate::hosts::Overcommit,
    pub local_labels: std::collections::BTreeMap<String, String>,
    /// A promoted standby host goes back to standby once idle this long.
    pub standby_demote_after: Duration,
    /// `Host` values `/mcp` serves (DNS-rebinding defence); `["*"]` serves any.
    pub mcp_allowed_hosts: Vec<String>,
    /// `Origin` values `/mcp` accepts; a request with another `Origin` is refused with 403.
    pub mcp_allowed_origins: Vec<String>,
    /// MCP sessions one principal may have open at once.
    pub mcp_max_sessions_per_principal: usize,
    /// How long a task waits for a person's approval before it is denied.
    pub approval_timeout: Duration,
    /// Model providers agent runs may call (`[[model_providers]]`).
    pub model_providers: Vec<crate::agents::ProviderConfig>,
    /// Secrets the host adds to tools' requests to their hosts (`[[credentials]]`).
    pub credentials: Vec<crate::secrets::CredentialBinding>,
    /// Tools in sessions on this server's own sidecar may reach loopback and private
    /// addresses (each request still decided by policy). Off by default.
    pub sessions_allow_private_network: bool,
    /// A directory of extra agents (`NAME.wasm`, components of the `agent` world), addressed
    /// by `NAME` (`_` read as `-`) beside the bundled ones.
    pub agents_dir: Option<PathBuf>,
}

impl ServeConfig {
    /// Defaults suited to a test: a data directory of its own, ports from the caller.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        Self::resolve(ServeArgs {
            data_dir: Some(data_dir.to_owned()),
            ..ServeArgs::default()
        })
        .expect("defaults are valid")
    }

    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file: FileConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read config file {}: {e}", path.display())
                })?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let sidecars = file
            .sidecars
            .iter()
            .map(SidecarEntry::resolve)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let drivers = file
            .drivers
            .iter()
            .map(DriverEntry::resolve)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(default_data_dir);
        let config = Self {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid")),
            data_dir,
            policies: args.policies.or(file.policies),
            plugins: args.plugins.or(file.plugins),
            secrets_file: args.secrets_file.or(file.secrets_file),
            rate_limit: args.rate_limit.or(file.rate_limit).unwrap_or(50),
            rate_burst: args.rate_burst.or(file.rate_burst).unwrap_or(100),
            max_sessions: args.max_sessions.or(file.max_sessions).unwrap_or(64),
            max_running_tasks: file.max_running_tasks.unwrap_or(32),
            body_limit: file.body_limit_kb.unwrap_or(1024) * 1024,
            header_timeout: Duration::from_millis(file.header_timeout_ms.unwrap_or(10_000).max(1)),
            max_connections: file.max_connections.unwrap_or(1024),
            plugin_limit: file.plugin_limit_kb.unwrap_or(64 * 1024) * 1024,
            request_timeout: Duration::from_millis(file.request_timeout_ms.unwrap_or(330_000)),
            max_concurrent_requests: file.max_concurrent_requests.unwrap_or(512),
            max_requests_per_principal: file.max_requests_per_principal.unwrap_or(256).max(1),
            session_idle_timeout: Duration::from_secs(file.session_idle_timeout_s.unwrap_or(900)),
            session_lifetime: Duration::from_secs(file.session_lifetime_s.unwrap_or(8 * 3600)),
            policy_poll: Duration::from_millis(file.policy_poll_ms.unwrap_or(1000)),
            heartbeat: Duration::from_secs(15),
            event_buffer: file.event_buffer.unwrap_or(1024).max(1),
            event_retention: file.event_retention.unwrap_or(100_000).max(1),
            reap_interval: Duration::from_secs(5),
            local_sidecar: file.local_sidecar.unwrap_or(true),
            sidecars,
            drivers,
            sidecar_health_interval: Duration::from_millis(
                file.sidecar_health_interval_ms.unwrap_or(1000).max(50),
            ),
            sidecar_health_timeout: Duration::from_millis(
                file.sidecar_health_timeout_ms.unwrap_or(5000).max(100),
            ),
            placement_strategy: file
                .placement_strategy
                .unwrap_or(crate::vocabulary::PlacementStrategy::Spread),
            placement_wait: Duration::from_millis(file.placement_wait_ms.unwrap_or(30_000)),
            overcommit: file.overcommit.unwrap_or_default(),
            local_labels: file.local_labels,
            standby_demote_after: Duration::from_secs(file.standby_demote_after_s.unwrap_or(600)),
            mcp_allowed_hosts: file
                .mcp_allowed_hosts
                .unwrap_or_else(|| ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec()),
            mcp_allowed_origins: file.mcp_allowed_origins.unwrap_or_else(|| {
                ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
                    .map(String::from)
                    .to_vec()
            }),
            mcp_max_sessions_per_principal: file.mcp_max_sessions_per_principal.unwrap_or(8).max(1),
            approval_timeout: Duration::from_secs(file.approval_timeout_s.unwrap_or(900)),
            model_providers: file.model_providers,
            credentials: file.credentials,
            sessions_allow_private_network: file.sessions_allow_private_network,
            agents_dir: file.agents_dir,
        };
        // A run's agent holds an instance slot while its tool calls need others.
        anyhow::ensure!(
            config.model_providers.is_empty() || config.max_running_tasks >= 2,
            "agent runs ([[model_providers]]) need max_running_tasks of at least 2: a run's agent \
             holds one instance slot while its tools run in others"
        );
        let mut provider_names = std::collections::HashSet::new();
        for provider in &config.model_providers {
            provider
                .check()
                .map_err(|e| anyhow::anyhow!("[[model_providers]]: {e}"))?;
            anyhow::ensure!(
                provider_names.insert(provider.name.as_str()),
                "[[model_providers]]: the name `{}` is used twice",
                provider.name
            );
        }
        anyhow::ensure!(
            !config.mcp_allowed_hosts.is_empty(),
            "mcp_allowed_hosts must name at least one host (or be [\"*\"] to serve any Host header)"
        );
        anyhow::ensure!(
            (1..=7 * 24 * 3600).contains(&config.approval_timeout.as_secs()),
            "approval_timeout_s must be between 1 and 604800 (a week)"
        );
        let overcommit = config.overcommit;
        for (name, factor) in [
            ("cpu", overcommit.cpu),
            ("memory", overcommit.memory),
            ("disk", overcommit.disk),
        ] {
            anyhow::ensure!(
                factor.is_finite() && (0.1..=1000.0).contains(&factor),
                "overcommit.{name} must be between 0.1 and 1000 (it multiplies a host's capacity)"
            );
        }
        anyhow::ensure!(
            config.local_sidecar || !config.sidecars.is_empty() || !config.drivers.is_empty(),
            "local_sidecar = false needs at least one [[sidecars]] or [[drivers]] entry: sessions must run somewhere"
        );
        let mut names = std::collections::HashSet::new();
        for driver in &config.drivers {
            anyhow::ensure!(
                !["local", "static"].contains(&driver.name.as_str())
                    && names.insert(driver.name.as_str()),
                "driver name `{}` is used twice (or is `local` or `static`, the built-in drivers')",
                driver.name
            );
        }
        anyhow::ensure!(
            config.sidecar_health_timeout >= config.sidecar_health_interval,
            "sidecar_health_timeout_ms must be at least sidecar_health_interval_ms: a sidecar is lost only after a check has had the chance to fail"
        );
        let mut ids = std::collections::HashSet::new();
        for sidecar in &config.sidecars {
            anyhow::ensure!(
                sidecar.id != crate::hosts::LOCAL && ids.insert(sidecar.id.as_str()),
                "sidecar id `{}` is used twice (or is `local`, the in-process sidecar's)",
                sidecar.id
            );
        }
        anyhow::ensure!(
            config.rate_limit > 0 && config.rate_burst > 0,
            "rate_limit and rate_burst must be at least 1"
        );
        anyhow::ensure!(config.max_sessions > 0, "max_sessions must be at least 1");
        anyhow::ensure!(
            (1..=1024).contains(&config.max_running_tasks),
            "max_running_tasks must be between 1 and 1024"
        );
        anyhow::ensure!(
            config.max_connections > 0,
            "max_connections must be at least 1"
        );
        Ok(config)
    }
}

impl SidecarEntry {
    fn resolve(&self) -> anyhow::Result<SidecarConfig> {
        anyhow::ensure!(
            !self.id.is_empty()
                && self.id.len() <= 64
                && self
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "sidecar id `{}`: use letters, digits, `-` and `_` (1-64)",
            self.id
        );
        let url: http::Uri = self
            .url
            .parse()
            .map_err(|e| anyhow::anyhow!("sidecar `{}`: url `{}`: {e}", self.id, self.url))?;
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => anyhow::bail!(
                "sidecar `{}`: url `{}` must be https://HOST:PORT or http://HOST:PORT",
                self.id,
                self.url
            ),
        };
        let Some(host) = url.host() else {
            anyhow::bail!("sidecar `{}`: url `{}` has no host", self.id, self.url);
        };
        anyhow::ensure!(
            https || self.allow_plaintext || is_loopback(host),
            "sidecar `{}`: url `{}` is plain HTTP to a host other than loopback: the token would cross the network in the clear; use https, or set allow_plaintext = true on a network you trust",
            self.id,
            self.url
        );
        let ca_certificates = match &self.ca_file {
            Some(path) => {
                anyhow::ensure!(https, "sidecar `{}`: ca_file is for an https url", self.id);
                let certificates = crate::sidecar::tls::read_certificates(path)
                    .map_err(|e| anyhow::anyhow!("sidecar `{}`: ca_file: {e}", self.id))?;
                crate::sidecar::tls::client_config(&certificates)
                    .map_err(|e| anyhow::anyhow!("sidecar `{}`: ca_file: {e}", self.id))?;
                certificates
            }
            None => Vec::new(),
        };
        let token = std::fs::read_to_string(&self.token_file).map_err(|e| {
            anyhow::anyhow!(
                "sidecar `{}`: cannot read token file {}: {e}",
                self.id,
                self.token_file.display()
            )
        })?;
        let token = token.trim().to_owned();
        anyhow::ensure!(
            token.len() >= 16,
            "sidecar `{}`: the token in {} is shorter than 16 characters",
            self.id,
            self.token_file.display()
        );
        let declared = [self.cpu_millis, self.memory_mb, self.disk_mb];
        let capacity = match declared {
            [None, None, None] => None,
            [Some(cpu_millis), Some(memory_mb), Some(disk_mb)] => Some(crate::hosts::Resources {
                cpu_millis,
                memory_mb,
                disk_mb,
            }),
            _ => anyhow::bail!(
                "sidecar `{}`: give all of cpu_millis, memory_mb and disk_mb, or none (then its sidecar measures its machine)",
                self.id
            ),
        };
        let host = crate::hosts::HostReport {
            id: self.id.clone(),
            endpoint: self.url.clone(),
            state: if self.standby {
                crate::vocabulary::HostState::Standby
            } else {
                crate::vocabulary::HostState::Ready
            },
            labels: self.labels.clone(),
            capacity,
            max_session_timeout_ms: self.max_session_timeout_ms,
            metrics: Default::default(),
        };
        crate::hosts::driver::check_reports("static", std::slice::from_ref(&host))
            .map_err(|e| anyhow::anyhow!("sidecar `{}`: {e}", self.id))?;
        Ok(SidecarConfig {
            id: self.id.clone(),
            url: self.url.clone(),
            token,
            ca_certificates,
            host,
        })
    }
}

impl DriverEntry {
    fn resolve(&self) -> anyhow::Result<DriverConfig> {
        let name = &self.name;
        anyhow::ensure!(
            !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'_'),
            "driver name `{name}`: use lowercase letters, digits, `-` and `_` (1-64)"
        );
        let component = match crate::sandbox::bundled::BUNDLED_DRIVERS
            .iter()
            .find(|(bundled, _)| *bundled == self.component)
        {
            Some((_, bytes)) => bytes.to_vec(),
            None => std::fs::read(&self.component).map_err(|e| {
                anyhow::anyhow!(
                    "driver `{name}`: component `{}` is neither a bundled driver (webhook) nor a readable file: {e}",
                    self.component
                )
            })?,
        };
        let config = match &self.config {
            Some(table) => serde_json::to_value(table)
                .map_err(|e| anyhow::anyhow!("driver `{name}`: config: {e}"))?,
            None => serde_json::json!({}),
        };
        let token = std::fs::read_to_string(&self.sidecar_token_file).map_err(|e| {
            anyhow::anyhow!(
                "driver `{name}`: cannot read sidecar_token_file {}: {e}",
                self.sidecar_token_file.display()
            )
        })?;
        let token = token.trim().to_owned();
        anyhow::ensure!(
            token.len() >= 16,
            "driver `{name}`: the token in {} is shorter than 16 characters",
            self.sidecar_token_file.display()
        );
        let ca_certificates = match &self.sidecar_ca_file {
            Some(path) => crate::sidecar::tls::read_certificates(path)
                .map_err(|e| anyhow::anyhow!("driver `{name}`: sidecar_ca_file: {e}"))?,
            None => Vec::new(),
        };
        let defaults = crate::hosts::Scaling::default();
        let scaling = crate::hosts::Scaling {
            min_hosts: self.min_hosts.unwrap_or(defaults.min_hosts),
            max_hosts: self.max_hosts.unwrap_or(defaults.max_hosts),
            max_in_flight: self.max_in_flight.unwrap_or(defaults.max_in_flight).max(1),
            cooldown: self
                .cooldown_s
                .map_or(defaults.cooldown, Duration::from_secs),
            idle_release: self
                .idle_release_s
                .map_or(defaults.idle_release, Duration::from_secs),
            provision_timeout: self
                .provision_timeout_s
                .map_or(defaults.provision_timeout, Duration::from_secs),
        };
        anyhow::ensure!(
            scaling.min_hosts <= scaling.max_hosts
                && scaling.max_hosts <= crate::hosts::driver::MAX_HOSTS_PER_DRIVER,
            "driver `{name}`: min_hosts must be at most max_hosts, and max_hosts at most {}",
            crate::hosts::driver::MAX_HOSTS_PER_DRIVER
        );
        let mut settings = crate::hosts::PluginDriverSettings {
            name: name.clone(),
            config,
            allow_private_network: self.allow_private_network,
            ..Default::default()
        };
        if let Some(profile) = &self.profile {
            settings.profile = profile.clone();
        }
        if let Some(ms) = self.timeout_ms {
            anyhow::ensure!(
                (100..=300_000).contains(&ms),
                "driver `{name}`: timeout_ms must be between 100 and 300000"
            );
            settings.limits.timeout = Duration::from_millis(ms);
        }
        Ok(DriverConfig {
            name: name.clone(),
            component,
            settings,
            secrets: self.secrets.clone(),
            credentials: crate::hosts::SidecarCredentials {
                token,
                ca_certificates,
                allow_plaintext: self.sidecar_allow_plaintext,
            },
            scaling,
            list_every: Duration::from_millis(self.list_interval_ms.unwrap_or(5000).max(100)),
        })
    }
}

/// `localhost` or a loopback address (`[::1]` included).
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("toolgate")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config resolved from `toml`, with a token file `token` (the given text) beside it.
    fn resolve(toml: &str, token: &str) -> anyhow::Result<ServeConfig> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), token).unwrap();
        let toml = toml.replace("TOKEN", &dir.path().join("token").display().to_string());
        let path = dir.path().join("toolgate.toml");
        std::fs::write(&path, toml).unwrap();
        ServeConfig::resolve(ServeArgs {
            config: Some(path),
            data_dir: Some(dir.path().join("data")),
            ..ServeArgs::default()
        })
    }

    const TOKEN: &str = "a-token-of-at-least-sixteen\n";

    fn error(toml: &str, token: &str) -> String {
        resolve(toml, token).unwrap_err().to_string()
    }

    #[test]
    fn model_providers_resolve_and_bad_ones_are_refused_with_the_reason() {
        let entry = |name: &str, kind: &str, url: &str| {
            format!(
                "[[model_providers]]\nname = \"{name}\"\nkind = \"{kind}\"\nbase_url = \"{url}\"\nmodels = [\"m\"]\napi_key_secret = \"k\"\n"
            )
        };
        let two = format!(
            "{}{}",
            entry("openai", "openai", "https://api.openai.com/v1"),
            entry("claude", "anthropic", "https://api.anthropic.com")
        );
        let config = resolve(&two, TOKEN).unwrap();
        let names: Vec<&str> = config
            .model_providers
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["openai", "claude"]);
        let twice = format!(
            "{}{}",
            entry("a", "openai", "http://x"),
            entry("a", "openai", "http://y")
        );
        assert!(error(&twice, TOKEN).contains("used twice"));
        assert!(error(&entry("a", "gemini", "http://x"), TOKEN).contains("unknown variant"));
        assert!(error(&entry("a", "openai", "file:///x"), TOKEN).contains("base_url"));
        assert!(error(&entry("A!", "openai", "http://x"), TOKEN).contains("name"));
    }

    #[test]
    fn sidecar_entries_resolve() {
        let config = resolve(
            r#"local_sidecar = false
[[sidecars]]
id = "a"
url = "http://127.0.0.1:8081"
token_file = "TOKEN"
[[sidecars]]
id = "b"
url = "http://10.0.0.7:8081"
token_file = "TOKEN"
allow_plaintext = true
"#,
            TOKEN,
        )
        .unwrap();
        assert!(!config.local_sidecar);
        let ids: Vec<&str> = config.sidecars.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(config.sidecars[0].token, "a-token-of-at-least-sixteen");
    }

    #[test]
    fn bad_sidecar_entries_are_refused_with_the_reason() {
        let entry = |id: &str, url: &str| {
            format!("[[sidecars]]\nid = \"{id}\"\nurl = \"{url}\"\ntoken_file = \"TOKEN\"\n")
        };
        let twice = format!(
            "{}{}",
            entry("a", "http://[::1]:1"),
            entry("a", "http://localhost:2")
        );
        assert!(error(&twice, TOKEN).contains("used twice"));
        assert!(error(&entry("local", "http://127.0.0.1:1"), TOKEN).contains("used twice"));
        assert!(error(&entry("a b", "http://127.0.0.1:1"), TOKEN).contains("letters, digits"));
        assert!(error(&entry("a", "ftp://127.0.0.1:1"), TOKEN).contains("must be https"));
        assert!(error(&entry("a", "not a url"), TOKEN).contains("url"));
        let plain = error(&entry("a", "http://10.0.0.7:8081"), TOKEN);
        assert!(plain.contains("in the clear"), "{plain}");
        assert!(error(&entry("a", "http://127.0.0.1:1"), "short\n").contains("shorter than 16"));
        let missing = entry("a", "http://127.0.0.1:1").replace("TOKEN", "/nonexistent/token");
        assert!(error(&missing, TOKEN).contains("cannot read token file"));
        let unknown = format!("{}colour = \"blue\"\n", entry("a", "http://127.0.0.1:1"));
        assert!(error(&unknown, TOKEN).contains("colour"));
        let ca = format!(
            "{}ca_file = \"TOKEN\"\n",
            entry("a", "https://example.test:1")
        );
        assert!(error(&ca, TOKEN).contains("no PEM certificate"));
        let ca_plain = format!("{}ca_file = \"TOKEN\"\n", entry("a", "http://127.0.0.1:1"));
        assert!(error(&ca_plain, TOKEN).contains("ca_file is for an https url"));
        assert!(error("local_sidecar = false\n", TOKEN).contains("at least one [[sidecars]]"));
        let timeouts = "sidecar_health_interval_ms = 2000\nsidecar_health_timeout_ms = 1000\n";
        assert!(error(timeouts, TOKEN).contains("at least sidecar_health_interval_ms"));
        let partial = format!("{}cpu_millis = 1000\n", entry("a", "http://127.0.0.1:1"));
        assert!(error(&partial, TOKEN).contains("all of cpu_millis, memory_mb and disk_mb"));
    }

    #[test]
    fn host_settings_and_driver_entries_resolve_or_say_what_is_wrong() {
        let driver = |extra: &str| {
            format!(
                "[[drivers]]\nname = \"auto\"\ncomponent = \"webhook\"\nsidecar_token_file = \"TOKEN\"\n{extra}"
            )
        };
        let config = resolve(
            &format!(
                "placement_strategy = \"bin_pack\"\novercommit = {{ cpu = 2.0 }}\n{}",
                driver(
                    "config = { url = \"https://scaler.test/x\" }\nmax_hosts = 3\ncooldown_s = 5\n"
                )
            ),
            TOKEN,
        )
        .unwrap();
        assert_eq!(
            config.placement_strategy,
            crate::vocabulary::PlacementStrategy::BinPack
        );
        assert_eq!(config.overcommit.cpu, 2.0);
        assert_eq!(config.overcommit.memory, 1.0, "unnamed factors are 1");
        let entry = &config.drivers[0];
        assert_eq!(entry.settings.config["url"], "https://scaler.test/x");
        assert_eq!(entry.scaling.max_hosts, 3);
        assert_eq!(entry.scaling.cooldown, Duration::from_secs(5));
        assert!(!entry.component.is_empty(), "the bundled webhook driver");

        assert!(error("placement_strategy = \"random\"\n", TOKEN).contains("placement strategy"));
        for bad in ["0.0", "nan", "inf", "-1.0"] {
            let text = format!("overcommit = {{ cpu = {bad} }}\n");
            assert!(error(&text, TOKEN).contains("overcommit.cpu"), "{bad}");
        }
        let twice = format!("{}{}", driver(""), driver(""));
        assert!(error(&twice, TOKEN).contains("used twice"));
        assert!(error(&driver("").replace("\"auto\"", "\"local\""), TOKEN).contains("used twice"));
        assert!(error(&driver("").replace("\"auto\"", "\"Auto!\""), TOKEN).contains("lowercase"));
        let missing = driver("").replace("\"webhook\"", "\"/nonexistent.wasm\"");
        assert!(error(&missing, TOKEN).contains("neither a bundled driver"));
        assert!(error(&driver(""), "short").contains("shorter than 16"));
        assert!(error(&driver("min_hosts = 5\nmax_hosts = 2\n"), TOKEN).contains("min_hosts"));
        assert!(error(&driver("timeout_ms = 5\n"), TOKEN).contains("timeout_ms"));
        assert!(error(&driver("colour = 1\n"), TOKEN).contains("colour"));
    }
}
