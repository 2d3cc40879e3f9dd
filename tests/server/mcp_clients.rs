//! `/mcp` driven by the official MCP SDKs: the Python `mcp` package (2025-11-25 sessions and
//! stateless 2026-07-28) and the TypeScript `@modelcontextprotocol/sdk` (2025-11-25), each run
//! by the scripts of `tests/clients/` against a real server. Each connects with a key, lists
//! tools (a denied one absent), writes and reads a file, sees a denied call come back as
//! `isError`, an unknown tool as a JSON-RPC error, cancels a slow call, and gets a tool's
//! progress and logs as notifications; the events of its calls are then read off the session's
//! SSE stream.
//!
//! `tests/clients/setup.sh` installs each pinned client on first use. Where one cannot be had
//! (no Python >= 3.11 or Node >= 18, no registry) it exits 3 and that client's part is skipped
//! with a `SKIPPED:` line on stderr; `TOOLGATE_REQUIRE_CLIENTS=1` (CI) makes that a failure.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The scripts' exit status for "this client is unavailable".
const UNAVAILABLE: i32 = 3;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients")
}

/// What `setup.sh` prints last: the venv's python, or the npm prefix. `None`: unavailable.
async fn setup(language: &str) -> Option<String> {
    let output = tokio::process::Command::new("bash")
        .arg(clients_dir().join("setup.sh"))
        .arg(language)
        .output()
        .await
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => Some(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .last()
                .expect("setup prints where the client is")
                .trim()
                .to_owned(),
        ),
        Some(UNAVAILABLE) if std::env::var("TOOLGATE_REQUIRE_CLIENTS").as_deref() != Ok("1") => {
            eprintln!("SKIPPED: the {language} MCP client: {}", stderr.trim());
            None
        }
        _ => panic!("tests/clients/setup.sh {language} failed:\n{stderr}"),
    }
}

/// Runs one client script against `server` with `key`; its summary (the last line).
async fn run_client(
    server: &Server,
    key: &str,
    program: &str,
    args: &[PathBuf],
    env: &[(&str, String)],
) -> Value {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env("TOOLGATE_MCP_URL", server.url("/mcp"))
        .env("TOOLGATE_KEY", key)
        .env("TOOLGATE_DENIED_TOOL", "http.fetch")
        .env("TOOLGATE_SLOW_TOOL", "hostile.sleep")
        .env("TOOLGATE_SLOW_TOOL_INPUT", r#"{"ms": 15000}"#)
        .env("TOOLGATE_LOG_TOOL", "hostile.progress")
        .env("TOOLGATE_LOG_TOOL_INPUT", "{}")
        .env_remove("VIRTUAL_ENV")
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the client finishes")
        .expect("the client starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no summary line ({e}):\n{stdout}"))
}

/// The summary's calls are tasks of its session, and their events are on the session's
/// stream; progress and logs came through as notifications.
async fn check_summary(server: &Server, key: &str, summary: &Value, protocol: &str) {
    assert_eq!(summary["protocol"], protocol, "{summary}");
    assert_eq!(summary["progress"], 2, "{summary}");
    assert_eq!(summary["logs"], 1, "{summary}");
    let session = summary["session"].as_str().expect("a session");
    let tasks = &summary["tasks"];
    let stream = server
        .client
        .get(server.url(&format!("/v1/sessions/{session}/events?after=0")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let (write, read, denied) = (&tasks["write"], &tasks["read"], &tasks["denied"]);
    let mut seen = (false, false);
    let events = read_events(stream, |e| {
        if e.name == "task.completed" && &e.data["task"] == write {
            seen.0 = true;
        }
        if e.name == "task.completed" && &e.data["task"] == read {
            seen.1 = true;
        }
        e.name == "task.failed" && &e.data["task"] == denied
    })
    .await;
    assert!(seen.0 && seen.1, "{events:?}");
    let denial = events.last().unwrap();
    assert_eq!(denial.data["error"]["kind"], "denied", "{denial:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_and_typescript_clients_use_the_gated_tools() {
    let server = Server::start().await;
    if let Some(python) = setup("python").await {
        let script = clients_dir().join("mcp_python.py");
        for (mode, protocol) in [("legacy", "2025-11-25"), ("auto", "2026-07-28")] {
            let key = server.key(&format!("py-{mode}"), "developer");
            let summary = run_client(
                &server,
                &key,
                &python,
                std::slice::from_ref(&script),
                &[("TOOLGATE_MCP_MODE", mode.to_owned())],
            )
            .await;
            check_summary(&server, &key, &summary, protocol).await;
        }
    }
    if let Some(prefix) = setup("node").await {
        let key = server.key("node", "developer");
        let summary = run_client(
            &server,
            &key,
            "node",
            &[clients_dir().join("mcp_node.mjs")],
            &[("TOOLGATE_NODE_PREFIX", prefix)],
        )
        .await;
        check_summary(&server, &key, &summary, "2025-11-25").await;
    }
}
