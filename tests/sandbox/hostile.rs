//! Misbehaving components: each gets its typed error, and the same engine
//! serves the next call normally.

use crate::common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use toolgate::policy::{CapabilityRequest, Decision, Gate};
use toolgate::sandbox::{DirGrant, Grants, Limits, OutputBound, Secret, TaskError, TaskRequest};

fn limited(tool: &str, input: &str, limits: Limits) -> TaskRequest {
    TaskRequest {
        limits: Some(limits),
        ..TaskRequest::new(tool, input)
    }
}

#[tokio::test]
async fn endless_loop_runs_out_of_fuel() {
    let hostile = plugin("hostile").await;
    let limits = Limits {
        fuel: 20_000_000,
        ..Limits::default()
    };
    let outcome = run(&hostile, limited("spin", "{}", limits)).await;
    assert_eq!(error_kind(&outcome), "fuel_exhausted");
    assert!(
        outcome.usage.fuel_consumed >= 20_000_000 - 1_000,
        "usage: {:?}",
        outcome.usage
    );
    assert_engine_healthy().await;
}

#[tokio::test]
async fn endless_loop_hits_the_deadline() {
    let hostile = plugin("hostile").await;
    let limits = Limits {
        fuel: u64::MAX / 2,
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let outcome = run(&hostile, limited("spin", "{}", limits)).await;
    assert_eq!(error_kind(&outcome), "timeout");
    assert!(
        outcome.usage.execute_us >= 250_000,
        "usage: {:?}",
        outcome.usage
    );
    // Stopped by the epoch check, so the fuel account is exact, not stale.
    assert!(
        outcome.usage.fuel_consumed > 1_000_000,
        "usage: {:?}",
        outcome.usage
    );
    assert_engine_healthy().await;
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() {
    let hostile = plugin("hostile").await;
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let outcome = run(&hostile, limited("alloc", r#"{"step_mb": 4}"#, limits)).await;
    assert_eq!(error_kind(&outcome), "memory_limit");
    assert!(outcome.usage.peak_memory_bytes <= 32 << 20);
    assert!(
        outcome.usage.peak_memory_bytes >= 16 << 20,
        "usage: {:?}",
        outcome.usage
    );
    assert_engine_healthy().await;
}

#[tokio::test]
async fn deep_recursion_traps_with_stack_exhaustion() {
    let hostile = plugin("hostile").await;
    let outcome = run(&hostile, TaskRequest::new("recurse", "{}")).await;
    // Rust guests keep their stack in linear memory: running off its end is
    // an out-of-bounds access; other guests exhaust the native wasm stack.
    assert_eq!(error_kind(&outcome), "trap");
    let message = outcome.result.unwrap_err().to_string();
    assert!(
        message.contains("out of bounds") || message.contains("stack"),
        "{message}"
    );
    assert_engine_healthy().await;
}

#[tokio::test]
async fn stdout_flood_exceeds_the_output_budget() {
    let hostile = plugin("hostile").await;
    let limits = Limits {
        log_bytes: 64 << 10,
        ..Limits::default()
    };
    let outcome = run(&hostile, limited("flood", "{}", limits)).await;
    assert_eq!(error_kind(&outcome), "output_too_large");
    assert!(outcome.result.unwrap_err().to_string().contains("stdout"));
    assert!(outcome.usage.stdout_bytes <= 64 << 10);
    assert_engine_healthy().await;
}

#[tokio::test]
async fn log_flood_exceeds_the_output_budget() {
    let hostile = plugin("hostile").await;
    let limits = Limits {
        log_bytes: 64 << 10,
        ..Limits::default()
    };
    let outcome = run(&hostile, limited("flood_log", "{}", limits)).await;
    assert_eq!(error_kind(&outcome), "output_too_large");
    assert_engine_healthy().await;
}

/// Counts the events a task emits.
#[derive(Default)]
struct CountEvents(std::sync::atomic::AtomicUsize);

impl toolgate::sandbox::EventSink for CountEvents {
    fn emit(&self, _event: toolgate::sandbox::ToolEvent) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl CountEvents {
    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[tokio::test]
async fn empty_log_records_cost_a_fixed_amount_each() {
    let hostile = plugin("hostile").await;
    // The bytes of 100 empty records, and room for many more records than that.
    let limits = Limits {
        log_bytes: 64 * 100,
        log_records: 1_000_000,
        ..Limits::default()
    };
    let events = std::sync::Arc::new(CountEvents::default());
    let request = TaskRequest {
        events: Some(events.clone()),
        ..limited("log_empty", r#"{"count": 1000000}"#, limits)
    };
    let outcome = run(&hostile, request).await;
    assert_eq!(
        outcome.result,
        Err(TaskError::OutputTooLarge {
            what: "log output".into(),
            limit: OutputBound::Bytes(64 * 100)
        })
    );
    assert_eq!(events.count(), 100, "the records before the budget ran out");
    assert_engine_healthy().await;
}

#[tokio::test]
async fn a_task_has_a_cap_on_records_as_well_as_bytes() {
    let hostile = plugin("hostile").await;
    let limits = Limits {
        log_records: 50,
        ..Limits::default()
    };
    for tool in ["log_empty", "progress_flood"] {
        let events = std::sync::Arc::new(CountEvents::default());
        let request = TaskRequest {
            events: Some(events.clone()),
            ..limited(tool, r#"{"count": 1000000}"#, limits)
        };
        let outcome = run(&hostile, request).await;
        let error = outcome.result.unwrap_err();
        assert_eq!(error.kind(), "output_too_large", "{tool}");
        assert_eq!(
            error.to_json()["limit_records"],
            50,
            "{tool}: {}",
            error.to_json()
        );
        assert_eq!(
            error.to_string(),
            "log output exceeded its limit of 50 records"
        );
        assert_eq!(events.count(), 50, "{tool}");
    }
    assert_engine_healthy().await;
}

#[tokio::test]
async fn a_task_that_ignores_its_refusals_still_fails_at_the_record_cap() {
    let hostile = plugin("hostile").await;
    // No network granted: every request is refused, recorded, and ignored by the tool.
    let limits = Limits {
        log_records: 20,
        timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let outcome = run(
        &hostile,
        limited("fetch_flood", r#"{"count": 1000000}"#, limits),
    )
    .await;
    assert_eq!(
        error_kind(&outcome),
        "output_too_large",
        "{:?}",
        outcome.result
    );
    assert_eq!(outcome.decisions.len(), 20);
    assert_engine_healthy().await;
}

#[tokio::test]
async fn oversized_result_is_refused() {
    let hostile = plugin("hostile").await;
    let limits = Limits {
        output_bytes: 256 << 10,
        ..Limits::default()
    };
    let outcome = run(
        &hostile,
        limited("big_output", r#"{"bytes": 1048576}"#, limits),
    )
    .await;
    assert_eq!(error_kind(&outcome), "output_too_large");
    assert!(outcome.result.unwrap_err().to_string().contains("result"));
    assert_engine_healthy().await;
}

#[tokio::test]
async fn blocking_host_call_is_bounded_by_the_deadline() {
    let hostile = plugin("hostile").await;
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let started = Instant::now();
    let outcome = run(&hostile, limited("sleep", r#"{"ms": 30000}"#, limits)).await;
    assert_eq!(error_kind(&outcome), "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a 30 s sleep must be cut at the deadline"
    );
    assert_engine_healthy().await;
}

#[tokio::test]
async fn cancellation_stops_a_busy_component() {
    let hostile = plugin("hostile").await;
    let cancel = CancellationToken::new();
    let request = TaskRequest {
        cancel: Some(cancel.clone()),
        limits: Some(Limits {
            fuel: u64::MAX / 2,
            timeout: Duration::from_secs(60),
            ..Limits::default()
        }),
        ..TaskRequest::new("spin", "{}")
    };
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let outcome = run(&hostile, request).await;
    assert_eq!(error_kind(&outcome), "cancelled");
    assert_engine_healthy().await;
}

/// A workspace with a secret file beside it (outside) and a symlink inside
/// that points at the secret.
struct Escape {
    _root: tempfile::TempDir,
    workspace: std::path::PathBuf,
    secret_path: std::path::PathBuf,
}

const SECRET_TEXT: &str = "the-launch-codes-0451";

fn escape_fixture() -> Escape {
    let root = tempfile::tempdir().unwrap();
    let workspace = root.path().join("workspace");
    std::fs::create_dir(&workspace).unwrap();
    std::fs::write(workspace.join("ok.txt"), "inside").unwrap();
    let secret_path = root.path().join("secret.txt");
    std::fs::write(&secret_path, SECRET_TEXT).unwrap();
    std::os::unix::fs::symlink(&secret_path, workspace.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(root.path(), workspace.join("up")).unwrap();
    Escape {
        _root: root,
        workspace,
        secret_path,
    }
}

fn in_workspace(fixture: &Escape, tool: &str, input: serde_json::Value) -> TaskRequest {
    TaskRequest {
        grants: Grants {
            dirs: vec![DirGrant {
                host: fixture.workspace.clone(),
                guest: "/workspace".into(),
                writable: true,
                quota: None,
            }],
            ..Grants::default()
        },
        ..TaskRequest::new(tool, input.to_string())
    }
}

#[tokio::test]
async fn reads_outside_the_preopens_are_refused() {
    let fixture = escape_fixture();
    let hostile = plugin("hostile").await;
    let inside = run(
        &hostile,
        in_workspace(
            &fixture,
            "read",
            serde_json::json!({"path": "/workspace/ok.txt"}),
        ),
    )
    .await;
    assert_eq!(output(&inside)["content"], "inside");

    let host_secret = fixture.secret_path.to_str().unwrap().to_owned();
    for path in [
        "/workspace/../secret.txt",
        "../secret.txt",
        "/workspace/link.txt",
        "/workspace/up/secret.txt",
        host_secret.as_str(),
        "/etc/passwd",
    ] {
        let outcome = run(
            &hostile,
            in_workspace(&fixture, "read", serde_json::json!({ "path": path })),
        )
        .await;
        let error = outcome.result.as_ref().expect_err(path);
        assert!(
            matches!(error.kind().as_str(), "denied" | "tool_error"),
            "{path}: {error:?}"
        );
        let shown = serde_json::to_string(&outcome).unwrap();
        assert!(
            !shown.contains(SECRET_TEXT),
            "{path} leaked the secret: {shown}"
        );
    }
    let written = run(
        &hostile,
        in_workspace(
            &fixture,
            "write",
            serde_json::json!({"path": "/workspace/../planted.txt", "content": "x"}),
        ),
    )
    .await;
    assert!(written.result.is_err());
    assert!(
        !fixture
            .workspace
            .parent()
            .unwrap()
            .join("planted.txt")
            .exists()
    );
    assert_engine_healthy().await;
}

#[tokio::test]
async fn read_only_directories_cannot_be_written() {
    let fixture = escape_fixture();
    let hostile = plugin("hostile").await;
    let mut request = in_workspace(
        &fixture,
        "write",
        serde_json::json!({"path": "/workspace/new.txt", "content": "x"}),
    );
    request.grants.dirs[0].writable = false;
    let outcome = run(&hostile, request).await;
    assert!(outcome.result.is_err(), "{:?}", outcome.result);
    assert!(!fixture.workspace.join("new.txt").exists());
}

#[tokio::test]
async fn environment_holds_only_granted_variables() {
    let hostile = plugin("hostile").await;
    let bare = output(&run(&hostile, TaskRequest::new("env", "{}")).await);
    assert_eq!(bare["vars"], serde_json::json!({}), "{bare}");
    assert_eq!(bare["args"], serde_json::json!([]), "{bare}");

    let request = TaskRequest {
        grants: Grants {
            env: vec![("GREETING".into(), "hi".into())],
            ..Grants::default()
        },
        ..TaskRequest::new("env", "{}")
    };
    let granted = output(&run(&hostile, request).await);
    assert_eq!(granted["vars"], serde_json::json!({"GREETING": "hi"}));
    // The host's own environment (PATH, HOME, ...) never shows through.
    assert!(std::env::var("PATH").is_ok());
    assert!(granted["vars"].get("PATH").is_none());
}

#[tokio::test]
async fn raw_sockets_are_refused() {
    let server = TestServer::start().await;
    let hostile = plugin("hostile").await;
    let input = serde_json::json!({"addr": format!("127.0.0.1:{}", server.port)}).to_string();
    let outcome = run(&hostile, TaskRequest::new("socket", input)).await;
    assert_eq!(error_kind(&outcome), "denied", "{:?}", outcome.result);
    assert_eq!(server.connections(), 0);
    assert_engine_healthy().await;
}

/// Denies every secret read.
struct NoSecrets;
impl Gate for NoSecrets {
    fn decide(&self, request: &CapabilityRequest) -> Decision {
        match request {
            CapabilityRequest::ReadSecret { name, .. } => {
                Decision::deny(format!("policy forbids secret {name}"))
            }
            _ => Decision::allow("test"),
        }
    }
}

#[tokio::test]
async fn secrets_are_released_only_when_granted_and_allowed() {
    let hostile = plugin("hostile").await;
    let grants = Grants {
        secrets: BTreeMap::from([("api_key".to_owned(), Secret::new("s3cr3t-value-123"))]),
        ..Grants::default()
    };
    let request = |name: &str| TaskRequest {
        grants: grants.clone(),
        ..TaskRequest::new("secret", format!(r#"{{"name":"{name}"}}"#))
    };

    let read = run(&hostile, request("api_key")).await;
    assert_eq!(output(&read)["length"], 16);
    assert_eq!(read.decisions.len(), 1);
    assert!(read.decisions[0].decision.allowed);

    let missing = run(&hostile, request("other")).await;
    assert_eq!(error_kind(&missing), "tool_error");

    let denied = executor(NoSecrets).run(&hostile, request("api_key")).await;
    assert_eq!(error_kind(&denied), "denied");
    let shown = serde_json::to_string(&denied).unwrap();
    assert!(shown.contains("policy forbids secret api_key"), "{shown}");
    for outcome in [&read, &missing, &denied] {
        assert!(
            !serde_json::to_string(outcome)
                .unwrap()
                .contains("s3cr3t-value-123")
        );
        assert!(!format!("{outcome:?}").contains("s3cr3t-value-123"));
    }
}

#[tokio::test]
async fn log_and_progress_reach_the_event_sink() {
    use std::sync::{Arc, Mutex};
    use toolgate::sandbox::{EventSink, ToolEvent};
    #[derive(Default)]
    struct Collect(Mutex<Vec<ToolEvent>>);
    impl EventSink for Collect {
        fn emit(&self, event: ToolEvent) {
            self.0.lock().unwrap().push(event);
        }
    }
    let sink = Arc::new(Collect::default());
    let hostile = plugin("hostile").await;
    let request = TaskRequest {
        events: Some(sink.clone()),
        ..TaskRequest::new("progress", "{}")
    };
    let outcome = run(&hostile, request).await;
    assert_eq!(output(&outcome)["ok"], true);
    let events = sink.0.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ToolEvent::Log { message, .. } if message == "working")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            ToolEvent::Progress {
                done: 2,
                total: Some(2),
                ..
            }
        )),
        "{events:?}"
    );
}

#[tokio::test]
async fn unknown_tools_and_bad_inputs_are_invalid_input() {
    let echo = plugin("echo").await;
    let unknown = run(&echo, TaskRequest::new("nope", "{}")).await;
    assert_eq!(error_kind(&unknown), "invalid_input");
    let not_json = run(&echo, TaskRequest::new("echo", "{not json")).await;
    assert_eq!(error_kind(&not_json), "invalid_input");
    let not_object = run(&echo, TaskRequest::new("echo", "[1,2]")).await;
    assert_eq!(error_kind(&not_object), "invalid_input");
    let failed = run(&echo, TaskRequest::new("fail", "{}")).await;
    assert_eq!(error_kind(&failed), "tool_error");
}
