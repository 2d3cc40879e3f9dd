//! `webhook`: a host driver that asks an operator's autoscaler for hosts.
//!
//! Every call is one `POST` of a JSON object to the configured `url`, with an `action`:
//!
//! - `{"action": "list"}` → `{"hosts": [HOST, ...]}`: every host the autoscaler runs;
//! - `{"action": "provision", "count": 1, "resources": {"cpu_millis": ..., "memory_mb": ...,
//!   "disk_mb": ...}, "labels": {"region": "..."}, "reason": "..."}` → `{"hosts": [HOST, ...]}`:
//!   the hosts it is bringing up (their sidecars may not answer yet);
//! - `{"action": "release", "host": "ID"}` → any 2xx: the host may go.
//!
//! A HOST is `{"id": "...", "endpoint": "https://...:8081", "state": "ready" | "standby" |
//! "draining" | "unhealthy" | "provisioning", "labels": {...}, "capacity": {"cpu_millis": ...,
//! "memory_mb": ..., "disk_mb": ...} | null, "max_session_timeout_ms": ... | null,
//! "metrics": {"load_1m": ...}}`; only `id` and `endpoint` are required (`state` defaults to
//! `provisioning` in a provision answer and `ready` in a list, `capacity` to what the sidecar
//! measures).
//!
//! Config (the `config` table of the `[[drivers]]` entry): `url` (required), `timeout_ms`
//! (default 10000), `token_secret` (the name of a secret sent as `Authorization: Bearer`).
//! A 4xx answer is `refused`, a 5xx or no answer `unavailable`.

// The generated export glue passes each host-info field as an argument.
#![allow(clippy::too_many_arguments)]

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use toolgate::plugin::driver_types::{HostState, Resources};
use toolgate::plugin::host;
use toolgate_plugin_sdk::ToolError;
use toolgate_plugin_sdk::http::{Request, send};

wit_bindgen::generate!({ path: "../../../wit", world: "host-driver" });

/// The most of an answer read.
const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    token_secret: Option<String>,
}

fn default_timeout() -> u64 {
    10_000
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    hosts: Vec<HostJson>,
}

#[derive(Deserialize)]
struct ResourcesJson {
    cpu_millis: u64,
    memory_mb: u64,
    disk_mb: u64,
}

#[derive(Deserialize)]
struct HostJson {
    id: String,
    endpoint: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    capacity: Option<ResourcesJson>,
    #[serde(default)]
    max_session_timeout_ms: Option<u64>,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
}

fn config(text: &str) -> Result<Config, DriverError> {
    let config: Config = serde_json::from_str(text)
        .map_err(|e| DriverError::InvalidConfig(format!("the webhook driver's config: {e}")))?;
    if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
        return Err(DriverError::InvalidConfig(format!(
            "`url` must be an http(s) URL, not {:?}",
            config.url
        )));
    }
    Ok(config)
}

/// POSTs `body` to the webhook and parses its JSON answer.
fn post(config: &Config, body: &Value) -> Result<Option<Answer>, DriverError> {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(name) = &config.token_secret {
        let token = host::get_secret(name).map_err(|e| match e {
            host::SecretError::Denied(why) => {
                DriverError::Refused(format!("secret `{name}`: {why}"))
            }
            host::SecretError::NotFound => {
                DriverError::InvalidConfig(format!("secret `{name}` is not granted"))
            }
        })?;
        headers.push(("authorization".to_owned(), format!("Bearer {token}")));
    }
    let body = body.to_string();
    let response = send(&Request {
        url: &config.url,
        method: "POST",
        headers: &headers,
        body: Some(body.as_bytes()),
        max_bytes: MAX_ANSWER_BYTES,
        timeout_ms: Some(config.timeout_ms),
    })
    .map_err(|e| match e {
        ToolError::Denied(why) => DriverError::Refused(why),
        ToolError::InvalidInput(why) => DriverError::InvalidConfig(why),
        ToolError::UnknownTool(why) | ToolError::Failed(why) => DriverError::Unavailable(why),
    })?;
    let text = String::from_utf8_lossy(&response.body);
    let excerpt: String = text.chars().take(512).collect();
    match response.status {
        200..=299 => {}
        400..=499 => {
            return Err(DriverError::Refused(format!(
                "the webhook answered {}: {excerpt}",
                response.status
            )));
        }
        status => {
            return Err(DriverError::Unavailable(format!(
                "the webhook answered {status}: {excerpt}"
            )));
        }
    }
    if response.truncated {
        return Err(DriverError::Failed(format!(
            "the webhook's answer is over {MAX_ANSWER_BYTES} bytes"
        )));
    }
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| DriverError::Failed(format!("the webhook's answer is not hosts JSON: {e}")))
}

fn state(word: Option<&str>, default: HostState) -> Result<HostState, DriverError> {
    Ok(match word {
        None => default,
        Some("ready") => HostState::Ready,
        Some("draining") => HostState::Draining,
        Some("unhealthy") => HostState::Unhealthy,
        Some("standby") => HostState::Standby,
        Some("provisioning") => HostState::Provisioning,
        Some(other) => {
            return Err(DriverError::Failed(format!(
                "the webhook answered host state {other:?} (expected ready, draining, unhealthy, standby or provisioning)"
            )));
        }
    })
}

fn hosts(answer: Option<Answer>, default: HostState) -> Result<Vec<HostInfo>, DriverError> {
    let Some(answer) = answer else {
        return Ok(Vec::new());
    };
    answer
        .hosts
        .into_iter()
        .map(|h| {
            Ok(HostInfo {
                state: state(h.state.as_deref(), default)?,
                id: h.id,
                endpoint: h.endpoint,
                labels: h.labels.into_iter().collect(),
                capacity: h.capacity.map(|c| Resources {
                    cpu_millis: c.cpu_millis,
                    memory_mb: c.memory_mb,
                    disk_mb: c.disk_mb,
                }),
                max_session_timeout_ms: h.max_session_timeout_ms,
                metrics: h.metrics.into_iter().collect(),
            })
        })
        .collect()
}

struct Webhook;

impl Guest for Webhook {
    fn describe(text: String) -> Result<DriverInfo, DriverError> {
        let config = config(&text)?;
        Ok(DriverInfo {
            description: format!("hosts from the autoscaler webhook at {}", config.url),
            can_provision: true,
        })
    }

    fn list_hosts(text: String) -> Result<Vec<HostInfo>, DriverError> {
        let config = config(&text)?;
        hosts(
            post(&config, &json!({ "action": "list" }))?,
            HostState::Ready,
        )
    }

    fn provision(text: String, request: ProvisionRequest) -> Result<Vec<HostInfo>, DriverError> {
        let config = config(&text)?;
        let labels: BTreeMap<String, String> = request.labels.into_iter().collect();
        let body = json!({
            "action": "provision",
            "count": request.count,
            "resources": request.resources.map(|r| json!({
                "cpu_millis": r.cpu_millis, "memory_mb": r.memory_mb, "disk_mb": r.disk_mb,
            })),
            "labels": labels,
            "reason": request.reason,
        });
        hosts(post(&config, &body)?, HostState::Provisioning)
    }

    fn release(text: String, host: String) -> Result<(), DriverError> {
        let config = config(&text)?;
        post(&config, &json!({ "action": "release", "host": host }))?;
        Ok(())
    }
}

export!(Webhook);
