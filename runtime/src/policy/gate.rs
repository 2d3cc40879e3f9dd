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
    /// A read of the named secret through the host `get-secret` import.
    ReadSecret { name: String },
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
}

impl Decision {
    pub fn allow(reason: impl Into<String>) -> Self {
        Self {
            allowed: true,
            reasons: vec![reason.into()],
            errors: Vec::new(),
        }
    }

    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            reasons: vec![reason.into()],
            errors: Vec::new(),
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

/// Allows outbound HTTP to the listed hosts (exact names, `*.suffix` for
/// subdomains, or `*` for any) and every secret read; denies other hosts.
#[derive(Debug, Default, Clone)]
pub struct HostAllowList {
    hosts: Vec<String>,
}

impl HostAllowList {
    pub fn new(hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            hosts: hosts
                .into_iter()
                .map(|h| h.into().to_ascii_lowercase())
                .collect(),
        }
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                _ if pattern == "*" => true,
                Some(suffix) => {
                    host.len() > suffix.len()
                        && host.ends_with(suffix)
                        && host[..host.len() - suffix.len()].ends_with('.')
                }
                None => *pattern == host,
            })
    }
}

impl Gate for HostAllowList {
    fn decide(&self, request: &CapabilityRequest) -> Decision {
        match request {
            CapabilityRequest::Connect(connect) if self.allows(&connect.host) => {
                Decision::allow(format!("host {} is on the allow list", connect.host))
            }
            CapabilityRequest::Connect(connect) => {
                Decision::deny(format!("host {} is not on the allow list", connect.host))
            }
            CapabilityRequest::ReadSecret { .. } => Decision::allow("secret was granted"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(host: &str) -> CapabilityRequest {
        CapabilityRequest::Connect(ConnectRequest {
            scheme: "https".into(),
            host: host.into(),
            port: 443,
            method: "GET".into(),
            path: "/".into(),
            addr: None,
        })
    }

    #[test]
    fn allow_list_matches_exact_names_and_subdomains_only() {
        let gate = HostAllowList::new(["example.com", "*.docs.rs"]);
        assert!(gate.decide(&connect("example.com")).allowed);
        assert!(gate.decide(&connect("EXAMPLE.com")).allowed);
        assert!(!gate.decide(&connect("evil-example.com")).allowed);
        assert!(!gate.decide(&connect("example.com.evil.net")).allowed);
        assert!(gate.decide(&connect("serde.docs.rs")).allowed);
        assert!(!gate.decide(&connect("docs.rs")).allowed);
        assert!(!gate.decide(&connect("evildocs.rs")).allowed);
    }
}
