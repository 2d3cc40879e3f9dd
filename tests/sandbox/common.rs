//! Shared fixtures: one engine per test binary, plugins from the build
//! script's artifacts, a tiny HTTP server on loopback.

use std::sync::Arc;
use toolgate::policy::{AllowAll, Gate};
use toolgate::sandbox::{Executor, Plugin, TaskOutcome, TaskRequest};

pub use crate::plugins::{artifact, catalog, engine, plugin};

pub fn executor(gate: impl Gate) -> Executor {
    Executor::new(engine(), Arc::new(gate))
}

pub async fn run(plugin: &Plugin, request: TaskRequest) -> TaskOutcome {
    executor(AllowAll).run(plugin, request).await
}

/// The error kind of a failed outcome, or a panic showing the output.
pub fn error_kind(outcome: &TaskOutcome) -> &'static str {
    match &outcome.result {
        Ok(output) => panic!("expected an error, got output {output}"),
        Err(error) => error.kind().as_str(),
    }
}

pub fn output(outcome: &TaskOutcome) -> serde_json::Value {
    match &outcome.result {
        Ok(output) => serde_json::from_str(output).expect("output is JSON"),
        Err(error) => panic!(
            "expected output, got {error:?} (stderr: {})",
            outcome.stderr
        ),
    }
}

/// Proves the engine still serves ordinary calls after whatever just happened.
pub async fn assert_engine_healthy() {
    let echo = plugin("echo").await;
    let outcome = run(&echo, TaskRequest::new("echo", r#"{"still":"alive"}"#)).await;
    assert_eq!(output(&outcome), serde_json::json!({"still": "alive"}));
}

pub use crate::server::TestServer;
