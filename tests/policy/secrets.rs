//! A secret's value never shows up in logs, events, errors or decisions.

use crate::common::*;
use std::process::Command;
use std::sync::{Arc, Mutex};
use toolgate::sandbox::{EventSink, Grants, TaskRequest, ToolEvent};

const SECRET: &str = "sk-live-DO-NOT-LEAK-4242";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<ToolEvent>>);
impl EventSink for Events {
    fn emit(&self, event: ToolEvent) {
        self.0.lock().unwrap().push(event);
    }
}

/// Set in the child process that runs the log-capturing test alone.
const ALONE: &str = "TOOLGATE_TEST_ALONE";

/// Log capture needs a process of its own: a thread-local subscriber misses a log line
/// whose callsite another test's thread registered at the same moment, with none.
#[test]
fn secrets_stay_out_of_logs_events_errors_and_decisions() {
    if std::env::var_os(ALONE).is_some() {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(secrets_stay_out_alone());
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "secrets::secrets_stay_out_of_logs_events_errors_and_decisions",
            "--exact",
            "--nocapture",
        ])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains("1 passed"), "the test ran: {all}");
}

async fn secrets_stay_out_alone() {
    let logs = Capture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Callsites first hit by other tests (with no subscriber) cached "not
    // interested"; ask them again now that this thread has one.
    tracing::callsite::rebuild_interest_cache();

    let policy = load(&repo_policies());
    member(&policy, "carol", "networked");
    let hostile = plugin("hostile").await;
    let mut grants = Grants::default();
    grants.secrets.insert(
        "github_token".into(),
        toolgate::sandbox::Secret::new(SECRET),
    );
    let events = Arc::new(Events::default());
    let mut outcomes = Vec::new();
    // hostile.secret is not http.fetch: the shipped policy denies it, and says so.
    for tool in ["secret", "progress"] {
        let request = TaskRequest {
            grants: grants.clone(),
            events: Some(events.clone()),
            ..TaskRequest::new(tool, r#"{"name":"github_token"}"#)
        };
        outcomes.push(
            run(
                &policy,
                &hostile,
                identity("carol", "networked", &format!("hostile.{tool}")),
                request,
            )
            .await,
        );
    }
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("decision"),
        "decisions are logged: {logged}"
    );
    assert!(!logged.contains(SECRET));
    assert!(!format!("{:?}", events.0.lock().unwrap()).contains(SECRET));
    for outcome in &outcomes {
        assert!(!serde_json::to_string(outcome).unwrap().contains(SECRET));
        assert!(!format!("{outcome:?}").contains(SECRET));
    }
}

#[test]
fn the_cli_never_prints_a_secret() {
    let policies = r#"
@id("dev.hostile") permit (principal, action == Action::"invoke", resource in Plugin::"hostile")
when { principal in context.profile };
@id("dev.secrets") permit (principal, action == Action::"read_secret", resource)
when { principal in context.profile };
"#;
    let entities = r#"[
      { "uid": { "type": "Profile", "id": "dev" }, "attrs": {}, "parents": [] },
      { "uid": { "type": "Tool", "id": "hostile.secret" }, "attrs": {}, "parents": [{ "type": "Plugin", "id": "hostile" }] },
      { "uid": { "type": "Tool", "id": "hostile.env" }, "attrs": {}, "parents": [{ "type": "Plugin", "id": "hostile" }] }
    ]"#;
    let dir = policy_dir(policies, entities);
    let cache = tempfile::tempdir().unwrap();
    let hostile = artifact("hostile");
    // Each input fits its tool's schema (`env` takes no fields).
    for (tool, proof, input) in [
        ("secret", "\"length\"", r#"{"name":"github_token"}"#),
        ("env", "\"vars\"", "{}"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_toolgate"))
            .args([
                "run",
                "--plugin",
                hostile.to_str().unwrap(),
                "--tool",
                tool,
                "--profile",
                "dev",
            ])
            .arg("--policies")
            .arg(dir.path())
            .args(["--input", input])
            .env("TOOLGATE_SECRET_GITHUB_TOKEN", SECRET)
            .env("TOOLGATE_CACHE_DIR", cache.path())
            .env(
                "TOOLGATE_LOG",
                "trace,cranelift_codegen=warn,wasmtime_cranelift=warn,regalloc2=warn",
            )
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{tool}: {all}");
        assert!(all.contains(proof), "{tool} ran: {all}");
        assert!(all.contains("decision"), "{tool}: {all}");
        assert!(!all.contains(SECRET), "{tool}: {all}");
    }
}
