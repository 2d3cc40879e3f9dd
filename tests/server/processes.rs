//! Processes of the built binary for multi-process tests (sidecars, orchestrators): started,
//! waited for, stopped, killed when the test ends; and the calls the tests make of them.

use crate::common::{artifact, test_policies};
use reqwest::StatusCode;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed when the test ends, however it ends.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with `args` and waits for `banner` on stderr; returns what follows it.
pub fn spawn(args: &[&str], banner: &str) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(args)
        .env("TOOLGATE_LOG", "warn,toolgate::sidecar=debug")
        .env("RUST_BACKTRACE", "0")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start toolgate");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let rest = loop {
        let line = lines
            .next()
            .expect("the process says where it listens")
            .unwrap();
        if let Some(rest) = line.strip_prefix(banner) {
            break rest.trim().to_owned();
        }
        // What it says before it listens (why it did not start, say) shows with a failure.
        eprintln!("[{}] {line}", args[0]);
    };
    // What the processes say is shown with a failing test.
    let who = args[0].to_owned();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("[{who}] {line}");
        }
    });
    (Process(child), rest)
}

/// Writes a file aside and renames it in, so a process never reads it half written.
pub fn write(path: &std::path::Path, text: &str) {
    let aside = path.with_extension("partial");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(aside, path).unwrap();
}

/// The shared token of the test sidecars.
pub const TOKEN: &str = "a-token-of-at-least-sixteen-characters";

/// A `toolgate sidecar` on a port of its own, with `extra` arguments.
pub fn sidecar(dir: &Path, extra: &[&str]) -> (Process, String) {
    sidecar_on(dir, "127.0.0.1:0", extra)
}

/// A `toolgate sidecar` listening on `listen` (a restart on the port it had).
pub fn sidecar_on(dir: &Path, listen: &str, extra: &[&str]) -> (Process, String) {
    let token = dir.join("sidecar.token");
    write(&token, TOKEN);
    let data = dir.join("sidecar");
    let mut args = vec![
        "sidecar",
        "--listen",
        listen,
        "--token-file",
        token.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    spawn(&args, "toolgate sidecar listening on ")
}

/// An orchestrator with the given `[[sidecars]]` tables (and no in-process sidecar).
pub fn orchestrator(dir: &Path, sidecars: &str) -> (Process, String, String) {
    orchestrator_with(dir, sidecars, |_| {})
}

/// An orchestrator with the given config tables, its policy directory changed by `policies`
/// first.
pub fn orchestrator_with(
    dir: &Path,
    sidecars: &str,
    policies: impl FnOnce(&Path),
) -> (Process, String, String) {
    let config = dir.join("toolgate.toml");
    write(
        &config,
        &format!(
            "local_sidecar = false\nsidecar_health_interval_ms = 200\nsidecar_health_timeout_ms = 1500\n{sidecars}"
        ),
    );
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(artifact("hostile"), plugins.join("hostile.wasm")).unwrap();
    let policy_dir = test_policies(dir);
    policies(&policy_dir);
    let policies = policy_dir;
    let data = dir.join("orchestrator");
    let (process, base) = spawn(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--policies",
            policies.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
        ],
        "toolgate listening on ",
    );
    let admin = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    (process, base, admin)
}

/// Stops a process with SIGTERM and waits for it to exit.
pub fn stop(process: &mut Process) {
    let pid = process.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    while process.0.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "{pid} exits");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// POSTs `body` with `key`: the status and the JSON answer.
pub async fn call(
    client: &reqwest::Client,
    key: &str,
    url: String,
    body: Value,
) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// GETs `url` with `key`: the JSON answer.
pub async fn get(client: &reqwest::Client, key: &str, url: String) -> Value {
    client
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
