//! Shared fixtures: one engine per test binary, plugins from the build
//! script's artifacts, a tiny HTTP server on loopback.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
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

/// A loopback HTTP server answering every request with `hello`, counting connections.
pub struct TestServer {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
}

impl TestServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { port, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}
