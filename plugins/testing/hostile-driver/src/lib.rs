//! A host driver that misbehaves the way its config's `mode` says, in `list-hosts` and
//! `provision` (`describe` always answers, so it loads):
//!
//! - `loop`: spins forever;
//! - `flood`: answers 200,000 hosts with long ids (megabytes to copy out);
//! - `many`: answers 5,000 small hosts (more than a driver may report);
//! - `forbidden`: fetches `url` (which no policy allows) and reports what happened;
//! - `log-flood`: logs without end;
//! - `memory`: grows its memory without end;
//! - `liar`: answers a host whose endpoint is `file:///etc/passwd`;
//! - `ok`: answers one host at `url`.

// The generated export glue passes each host-info field as an argument.
#![allow(clippy::too_many_arguments)]

use serde::Deserialize;
use toolgate::plugin::driver_types::HostState;
use toolgate::plugin::host::{self, LogLevel};
use toolgate_plugin_sdk::http::{Request, send};

wit_bindgen::generate!({ path: "../../../wit", world: "host-driver" });

#[derive(Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    url: String,
}

fn config(text: &str) -> Result<Config, DriverError> {
    serde_json::from_str(text).map_err(|e| DriverError::InvalidConfig(e.to_string()))
}

fn host(id: String, endpoint: String) -> HostInfo {
    HostInfo {
        id,
        endpoint,
        state: HostState::Ready,
        labels: Vec::new(),
        capacity: None,
        max_session_timeout_ms: None,
        metrics: Vec::new(),
    }
}

fn misbehave(text: &str) -> Result<Vec<HostInfo>, DriverError> {
    let config = config(text)?;
    match config.mode.as_str() {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "flood" => Ok((0..200_000)
            .map(|i| host(format!("{i:0>100}"), "http://127.0.0.1:1".into()))
            .collect()),
        "many" => Ok((0..5_000)
            .map(|i| host(format!("h{i}"), "http://127.0.0.1:1".into()))
            .collect()),
        "forbidden" => {
            let answer = send(&Request {
                url: &config.url,
                method: "GET",
                headers: &[],
                body: None,
                max_bytes: 1024,
                timeout_ms: Some(2000),
            });
            match answer {
                Ok(response) => Err(DriverError::Failed(format!(
                    "reached {} ({})",
                    config.url, response.status
                ))),
                Err(error) => Err(DriverError::Refused(format!("{error:?}"))),
            }
        }
        "log-flood" => loop {
            host::log(LogLevel::Info, &"x".repeat(64 * 1024));
        },
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "liar" => Ok(vec![host("liar".into(), "file:///etc/passwd".into())]),
        "ok" => Ok(vec![host("fine".into(), config.url)]),
        other => Err(DriverError::InvalidConfig(format!(
            "unknown mode {other:?}"
        ))),
    }
}

struct Hostile;

impl Guest for Hostile {
    fn describe(text: String) -> Result<DriverInfo, DriverError> {
        config(&text)?;
        Ok(DriverInfo {
            description: "misbehaves for tests".into(),
            can_provision: true,
        })
    }

    fn list_hosts(text: String) -> Result<Vec<HostInfo>, DriverError> {
        misbehave(&text)
    }

    fn provision(text: String, _request: ProvisionRequest) -> Result<Vec<HostInfo>, DriverError> {
        misbehave(&text)
    }

    fn release(_text: String, _host: String) -> Result<(), DriverError> {
        Ok(())
    }
}

export!(Hostile);
