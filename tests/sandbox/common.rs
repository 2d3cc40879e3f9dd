//! Shared fixtures: one engine per test binary, plugins from the build
//! script's artifacts, a tiny HTTP server on loopback.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use toolgate::policy::{AllowAll, Gate};
use toolgate::sandbox::{
    Catalog, EngineConfig, Executor, Plugin, SandboxEngine, TaskOutcome, TaskRequest,
};

/// Path of a plugin built by the build script (`fs`, `echo`, `hostile`, ...).
pub fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("TOOLGATE_PLUGIN_ARTIFACTS")).join(format!("{name}.wasm"))
}

/// The engine shared by every test of this binary, as one process would share it.
pub fn engine() -> Arc<SandboxEngine> {
    static ENGINE: OnceLock<Arc<SandboxEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Arc::new(SandboxEngine::new(EngineConfig::default()).expect("engine")))
        .clone()
}

/// A cache shared by the tests so each plugin is compiled once per run.
fn shared_cache() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
        .to_owned()
}

pub fn catalog() -> Catalog {
    Catalog::new(engine(), Some(&shared_cache()))
}

pub async fn plugin(name: &str) -> Plugin {
    catalog()
        .load_file(&artifact(name))
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

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
        Err(error) => error.kind(),
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
