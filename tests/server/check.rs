//! `toolgate check` against a running server: every readiness check printed with its reasons,
//! exit 0 when all pass and 1 when one fails (a denied domain, a host too small, a server
//! that cannot be reached or refuses the key), 2 for bad usage.

use crate::common::Server;
use serde_json::{Value, json};
use std::process::Output;

async fn check(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .arg("check")
        .args(args)
        .env_remove("TOOLGATE_KEY")
        .env_remove("TOOLGATE_SERVER")
        .output()
        .await
        .expect("run toolgate check")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The line of one check, e.g. `PASS  host local ...`.
fn line<'a>(output: &'a str, verdict: &str, check: &str) -> Option<&'a str> {
    output
        .lines()
        .find(|l| l.starts_with(&format!("{verdict}  {check}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_every_readiness_check_and_fails_with_the_reasons() {
    // The local host may hold 200 cpu_millis: a session asking for 1000 has no room.
    let server = Server::start_with(|config| {
        config.overcommit = toolgate::hosts::Overcommit {
            cpu: 0.1,
            memory: 1.0,
            disk: 1.0,
        };
    })
    .await;
    let key = server.key("dana", "developer");
    let base = server.base.clone();

    let fits = json!({ "resources": { "cpu_millis": 100, "memory_mb": 64, "disk_mb": 10, "timeout_ms": 60000 } });
    let dir = tempfile::tempdir().unwrap();
    let request = dir.path().join("session.json");
    std::fs::write(&request, fits.to_string()).unwrap();
    let request = request.to_str().unwrap();
    let passed = check(&[
        "--server",
        &base,
        "--key",
        &key,
        "--request",
        request,
        "--tool",
        "fs.read",
        "--tool",
        "fs.write",
    ])
    .await;
    let out = text(&passed);
    assert_eq!(passed.status.code(), Some(0), "{out}");
    for (check, says) in [
        ("api", "reachable from here"),
        ("capacity local", "ready, with room for 100 cpu_millis"),
        ("create_session", "allowed"),
        ("tool fs.read", "allowed: policy"),
        ("tool fs.write", "allowed: policy"),
        ("events", "file.changed (file change)"),
        ("mode", "api"),
    ] {
        let found = line(&out, "PASS", check).unwrap_or_else(|| panic!("{check} in {out}"));
        assert!(found.contains(says), "{found}");
    }
    assert!(out.contains("mode: api"), "{out}");
    assert!(out.contains("ready: all"), "{out}");

    // A domain the profile lacks fails its check with the policy's reasons; a session too
    // large for any host fails the capacity check. Both at once, exit 1.
    let failed = check(&[
        "--server",
        &base,
        "--key",
        &key,
        "--domain",
        "example.com",
        "--no-event-test",
    ])
    .await;
    let out = text(&failed);
    assert_eq!(failed.status.code(), Some(1), "{out}");
    let domain = line(&out, "FAIL", "domain example.com").unwrap_or_else(|| panic!("{out}"));
    assert!(domain.contains("denied"), "{domain}");
    let session = line(&out, "FAIL", "create_session").unwrap_or_else(|| panic!("{out}"));
    assert!(
        session.contains("session.network-needs-networked"),
        "{session}"
    );
    let host = line(&out, "FAIL", "capacity").unwrap_or_else(|| panic!("{out}"));
    assert!(
        host.contains("no host has room for 1000 cpu_millis") && host.contains("too little free"),
        "{host}"
    );
    assert!(line(&out, "PASS", "events").is_none(), "skipped: {out}");
    assert!(out.contains("not ready: "), "{out}");

    // As JSON, for a script.
    let json_out = check(&[
        "--server",
        &base,
        "--key",
        &key,
        "--request",
        request,
        "--json",
    ])
    .await;
    assert_eq!(json_out.status.code(), Some(0), "{}", text(&json_out));
    let doc: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(doc["ready"], true);
    assert_eq!(doc["mode"], "api");
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for name in [
        "api",
        "policy_set",
        "store",
        "sessions",
        "capacity",
        "create_session",
        "events",
        "mode",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }

    // A key the server refuses, a server nobody answers at, no key at all.
    let refused = check(&["--server", &base, "--key", "tg_not-a-key"]).await;
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    assert!(line(&out, "FAIL", "api").unwrap().contains("401"), "{out}");
    let gone = check(&["--server", "http://127.0.0.1:1", "--key", &key]).await;
    let out = text(&gone);
    assert_eq!(gone.status.code(), Some(1), "{out}");
    assert!(
        line(&out, "FAIL", "api")
            .unwrap()
            .contains("not reachable from here"),
        "{out}"
    );
    let usage = check(&["--server", &base]).await;
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
    let bad_file = check(&[
        "--server",
        &base,
        "--key",
        &key,
        "--request",
        "/nonexistent.json",
    ])
    .await;
    assert_eq!(bad_file.status.code(), Some(2), "{}", text(&bad_file));
    server.stop().await;
}

/// The event self-test's session is the probe's own: the caller never sees it.
#[tokio::test]
async fn the_event_self_test_leaves_nothing_in_the_callers_sessions() {
    let server = Server::start().await;
    let key = server.key("erin", "developer");
    let answer = server.post(&key, "/v1/preflight", json!({})).await;
    assert_eq!(answer.status(), 200);
    let preflight: Value = answer.json().await.unwrap();
    let events = preflight["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "events")
        .cloned()
        .unwrap();
    assert_eq!(events["ok"], true, "{preflight}");
    let mine: Value = server.get(&key, "/v1/sessions").await.json().await.unwrap();
    assert_eq!(mine["sessions"].as_array().unwrap().len(), 0, "{mine}");
    // Nor in the store: the probe's own session is deleted once its events were read.
    let probes: Value = server
        .get(&server.admin, "/v1/sessions?principal=toolgate%3Aprobe")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(probes["sessions"].as_array().unwrap().len(), 0, "{probes}");
    assert_eq!(server.app.orchestrator.open_sessions(), 0);
    // Skipped on request.
    let quick: Value = server
        .post(&key, "/v1/preflight?event_self_test=false", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !quick["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["check"] == "events"),
        "{quick}"
    );
    server.stop().await;
}

/// Something else answering where toolgate was expected is a failed check, never a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_against_a_server_that_is_not_toolgate() {
    use axum::routing::{get, post};
    let impostor = axum::Router::new().route(
        "/v1/info",
        get(|| async { axum::Json(json!({ "hello": "world" })) }),
    );
    let half = axum::Router::new()
        .route(
            "/v1/info",
            get(|| async { axum::Json(json!({ "name": "toolgate", "mode": "api" })) }),
        )
        .route("/v1/preflight", post(|| async { axum::Json(json!({})) }));
    let mut bases = Vec::new();
    for app in [impostor, half] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        bases.push(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    let impostor = check(&["--server", &bases[0], "--key", "k"]).await;
    let out = text(&impostor);
    assert_eq!(impostor.status.code(), Some(1), "{out}");
    assert!(
        line(&out, "FAIL", "api").unwrap().contains("not toolgate"),
        "{out}"
    );
    let half = check(&["--server", &bases[1], "--key", "k"]).await;
    let out = text(&half);
    assert_eq!(half.status.code(), Some(1), "{out}");
    assert!(
        line(&out, "FAIL", "preflight")
            .unwrap()
            .contains("not a preflight answer"),
        "{out}"
    );
}
