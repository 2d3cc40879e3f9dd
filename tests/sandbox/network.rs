//! Outbound HTTP: only when granted, every request asked of the gate, and the
//! resolved address checked before connecting.

use crate::common::*;
use toolgate::policy::{AllowAll, CapabilityRequest, Decision, Gate};
use toolgate::sandbox::{Grants, NetworkGrant, TaskRequest};

fn fetch(url: &str, network: NetworkGrant) -> TaskRequest {
    TaskRequest {
        grants: Grants {
            network,
            ..Grants::default()
        },
        ..TaskRequest::new("fetch", serde_json::json!({ "url": url }).to_string())
    }
}

/// Allows outbound requests to one host name only.
struct OnlyHost(&'static str);

impl Gate for OnlyHost {
    fn decide(&self, request: &CapabilityRequest) -> Decision {
        match request {
            CapabilityRequest::Connect(c) if c.host == self.0 => Decision::allow("the test host"),
            CapabilityRequest::Connect(c) => {
                Decision::deny(format!("{} is not on the allow list", c.host))
            }
            _ => Decision::allow("test"),
        }
    }
}

fn http_only() -> NetworkGrant {
    NetworkGrant {
        http: true,
        allow_private_addresses: false,
    }
}

fn reasons(outcome: &toolgate::sandbox::TaskOutcome) -> String {
    match &outcome.result {
        Err(toolgate::sandbox::TaskError::Denied { reasons }) => reasons.join(" | "),
        other => panic!("expected denied, got {other:?}"),
    }
}

#[tokio::test]
async fn no_network_grant_means_no_request() {
    let server = TestServer::start().await;
    let hostile = plugin("hostile").await;
    let url = format!("http://127.0.0.1:{}/", server.port);
    let outcome = run(&hostile, fetch(&url, NetworkGrant::default())).await;
    assert!(
        reasons(&outcome).contains("not granted"),
        "{}",
        reasons(&outcome)
    );
    assert_eq!(server.connections(), 0);
    assert_engine_healthy().await;
}

#[tokio::test]
async fn a_host_the_gate_denies_is_never_resolved_or_contacted() {
    let server = TestServer::start().await;
    let hostile = plugin("hostile").await;
    let gate = OnlyHost("example.com");
    let url = format!("http://localhost:{}/", server.port);
    let outcome = executor(gate).run(&hostile, fetch(&url, http_only())).await;
    assert!(
        reasons(&outcome).contains("localhost is not on the allow list"),
        "{}",
        reasons(&outcome)
    );
    assert_eq!(
        outcome.decisions.len(),
        1,
        "denied before resolution: {:?}",
        outcome.decisions
    );
    assert!(outcome.decisions[0].decision.reasons[0].contains("localhost"));
    assert_eq!(server.connections(), 0);
    assert_engine_healthy().await;
}

#[tokio::test]
async fn loopback_and_metadata_addresses_are_refused_after_resolution() {
    let server = TestServer::start().await;
    let hostile = plugin("hostile").await;
    for (url, expected) in [
        (format!("http://127.0.0.1:{}/", server.port), "loopback"),
        (format!("http://localhost:{}/", server.port), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "metadata",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{}/", server.port),
            "loopback",
        ),
        ("http://10.0.0.1/".to_owned(), "private"),
    ] {
        let outcome = executor(AllowAll)
            .run(&hostile, fetch(&url, http_only()))
            .await;
        let why = reasons(&outcome);
        assert!(why.contains(expected), "{url}: {why}");
    }
    assert_eq!(server.connections(), 0);
    assert_engine_healthy().await;
}

#[tokio::test]
async fn an_explicit_private_grant_reaches_loopback() {
    let server = TestServer::start().await;
    let http = plugin("http").await;
    let url = format!("http://127.0.0.1:{}/hello", server.port);
    let network = NetworkGrant {
        http: true,
        allow_private_addresses: true,
    };
    let outcome = run(&http, fetch(&url, network)).await;
    let response = output(&outcome);
    assert_eq!(response["status"], 200, "{response}");
    assert_eq!(response["body"], "hello");
    assert_eq!(server.connections(), 1);
    // Two decisions: the host before resolution, then the address.
    assert_eq!(outcome.decisions.len(), 2, "{:?}", outcome.decisions);
    assert!(outcome.decisions.iter().all(|d| d.decision.allowed));
    let second = serde_json::to_value(&outcome.decisions[1]).unwrap();
    assert_eq!(second["request"]["addr"], "127.0.0.1");
}
