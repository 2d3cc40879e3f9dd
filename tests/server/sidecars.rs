//! One orchestrator and two `toolgate sidecar` processes of the built binary, on loopback:
//! sessions spread over both, tasks run where their workspace is, capability decisions and
//! secrets work remotely, events arrive in order across a cut relay connection, and a
//! sidecar killed with SIGKILL takes only its own sessions with it.

use crate::common::*;
use crate::processes::{Process, spawn, write};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy on loopback whose open connections the test can cut at once.
struct CuttableProxy {
    address: String,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let held = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().unwrap().push(task);
            }
        });
        Self {
            address,
            connections,
        }
    }

    /// Drops every connection open now (new ones are taken as before).
    fn cut(&self) -> usize {
        let open: Vec<_> = self.connections.lock().unwrap().drain(..).collect();
        let live = open.iter().filter(|t| !t.is_finished()).count();
        for task in open {
            task.abort();
        }
        live
    }
}

struct Cluster {
    base: String,
    admin: String,
    networked: String,
    client: reqwest::Client,
    proxy: CuttableProxy,
    sidecar_b: Mutex<Process>,
    _orchestrator: Process,
    _sidecar_a: Process,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let token = root.join("sidecar.token");
        write(&token, "a-token-of-at-least-sixteen-characters\n");
        let token_arg = token.to_str().unwrap();
        let sidecar = |name: &str| {
            let data = root.join(name);
            spawn(
                &[
                    "sidecar",
                    "--listen",
                    "127.0.0.1:0",
                    "--token-file",
                    token_arg,
                    "--data-dir",
                    data.to_str().unwrap(),
                ],
                "toolgate sidecar listening on ",
            )
        };
        let (sidecar_a, url_a) = sidecar("sidecar-a");
        let (sidecar_b, url_b) = sidecar("sidecar-b");
        // Sidecar `a` is reached through a proxy the test can cut.
        let proxy = CuttableProxy::start(url_a.trim_start_matches("http://").to_owned()).await;
        let policies = test_policies(root);
        // The shipped profiles give secrets to http.fetch only; this test's tool reads one.
        write(
            &policies.join("secrets.cedar"),
            r#"@id("test.secret")
permit (principal, action == Action::"read_secret", resource == Secret::"github_token")
when { context.tool == "hostile.secret" };
"#,
        );
        let plugins = root.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(artifact("hostile"), plugins.join("hostile.wasm")).unwrap();
        let secrets = root.join("secrets.json");
        write(&secrets, r#"{"github_token": "ghp_remote_secret_value"}"#);
        let config = root.join("toolgate.toml");
        write(
            &config,
            &format!(
                r#"local_sidecar = false
sidecar_health_interval_ms = 200
sidecar_health_timeout_ms = 1500
rate_limit = 100000
rate_burst = 100000

[[sidecars]]
id = "a"
url = "http://{}"
token_file = "{token_arg}"

[[sidecars]]
id = "b"
url = "{url_b}"
token_file = "{token_arg}"
"#,
                proxy.address
            ),
        );
        let data = root.join("orchestrator");
        let (orchestrator, base) = spawn(
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
                "--secrets-file",
                secrets.to_str().unwrap(),
            ],
            "toolgate listening on ",
        );
        let admin = std::fs::read_to_string(data.join("admin.key"))
            .unwrap()
            .trim()
            .to_owned();
        let created = Command::new(env!("CARGO_BIN_EXE_toolgate"))
            .args([
                "keys",
                "create",
                "--principal",
                "bob",
                "--profile",
                "networked",
            ])
            .args([
                "--data-dir",
                data.to_str().unwrap(),
                "--policies",
                policies.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );
        let networked = String::from_utf8_lossy(&created.stdout)
            .split_whitespace()
            .find(|w| w.starts_with("tg_"))
            .expect("the new key is printed")
            .to_owned();
        Self {
            base,
            admin,
            networked,
            client: reqwest::Client::new(),
            proxy,
            sidecar_b: Mutex::new(sidecar_b),
            _orchestrator: orchestrator,
            _sidecar_a: sidecar_a,
            _dir: dir,
        }
    }

    async fn post(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, key: &str, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    async fn session(&self, key: &str, body: Value) -> Value {
        let (status, session) = self.post(key, "/v1/sessions", body).await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        session
    }

    async fn task(&self, key: &str, session: &str, body: Value) -> Value {
        let (status, task) = self
            .post(key, &format!("/v1/sessions/{session}/tasks"), body)
            .await;
        assert!(status.is_success(), "{status} {task}");
        task
    }

    async fn events(&self, key: &str, session: &str) -> reqwest::Response {
        self.client
            .get(format!(
                "{}/v1/sessions/{session}/events?after=0",
                self.base
            ))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_runs_sessions_on_two_sidecars_and_survives_losing_one() {
    let cluster = Cluster::start().await;
    let admin = cluster.admin.clone();

    // Sessions spread over both sidecars, in turn.
    let mut on = std::collections::BTreeMap::<String, Vec<String>>::new();
    for _ in 0..4 {
        let session = cluster.session(&admin, json!({})).await;
        on.entry(session["sidecar"].as_str().unwrap().to_owned())
            .or_default()
            .push(session["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(on.keys().collect::<Vec<_>>(), ["a", "b"], "{on:?}");
    assert!(on.values().all(|s| s.len() == 2), "{on:?}");

    // A task writes in its session's workspace on the sidecar; the change is seen there.
    for sessions in on.values() {
        let session = &sessions[0];
        let task = cluster
            .task(
                &admin,
                session,
                json!({"tool": "fs.write", "input": {"path": "note.txt", "content": "remote"}}),
            )
            .await;
        assert_eq!(task["state"], "completed", "{task}");
        let task = cluster
            .task(
                &admin,
                session,
                json!({"tool": "fs.read", "input": {"path": "note.txt"}}),
            )
            .await;
        assert_eq!(task["state"], "completed", "{task}");
        assert!(task["output"].to_string().contains("remote"), "{task}");
        let stream = cluster.events(&admin, session).await;
        let mut completed = 0;
        let events = read_events(stream, |e| {
            completed += usize::from(e.name == "task.completed");
            completed == 2
        })
        .await;
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        assert!(names.contains(&"file.changed"), "{names:?}");
        let ids: Vec<u64> = events.iter().filter_map(|e| e.id).collect();
        assert!(
            ids.windows(2).all(|w| w[1] == w[0] + 1),
            "in order, none twice: {ids:?}"
        );
    }

    // Capability decisions and secrets, decided on the sidecar by the shipped policy set.
    let bob = cluster.networked.clone();
    let secret_session = cluster
        .session(&bob, json!({"profile": "networked", "secrets": ["github_token"], "tools": ["hostile.secret"]}))
        .await;
    let secret_session = secret_session["id"].as_str().unwrap().to_owned();
    let read = cluster
        .task(
            &bob,
            &secret_session,
            json!({"tool": "hostile.secret", "input": {"name": "github_token"}}),
        )
        .await;
    assert_eq!(read["state"], "completed", "{read}");
    assert_eq!(
        read["output"]["length"],
        "ghp_remote_secret_value".len(),
        "{read}"
    );
    let denied = cluster
        .task(
            &bob,
            &secret_session,
            json!({"tool": "hostile.secret", "input": {"name": "aws_key"}}),
        )
        .await;
    assert_eq!(denied["state"], "failed", "{denied}");
    assert_eq!(denied["error"]["kind"], "denied", "{denied}");
    let stream = cluster.events(&bob, &secret_session).await;
    let events = read_events(stream, |e| {
        e.data["task"] == denied["id"] && e.name == "task.failed"
    })
    .await;
    let decisions: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "policy.decision" && e.data["decision"]["request"].is_object())
        .map(|e| &e.data["decision"])
        .collect();
    assert_eq!(
        decisions.len(),
        2,
        "one capability decision per read: {decisions:?}"
    );
    assert!(decisions.iter().all(|d| {
        d["decision"]["policy_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    }));
    let all = serde_json::to_string(&events.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
    assert!(
        !all.contains("ghp_remote_secret_value"),
        "a secret's value never appears in events"
    );

    // Cutting sidecar a's connections mid-task loses and doubles nothing.
    let session_a = on["a"][1].clone();
    let stream = cluster.events(&admin, &session_a).await;
    let reader = tokio::spawn(read_events(stream, |e| e.name == "task.completed"));
    let flood = {
        let (client, base, admin, session) = (
            cluster.client.clone(),
            cluster.base.clone(),
            admin.clone(),
            session_a.clone(),
        );
        tokio::spawn(async move {
            client
                .post(format!("{base}/v1/sessions/{session}/tasks"))
                .bearer_auth(admin)
                .json(&json!({"tool": "hostile.progress_flood", "input": {"count": 3000, "message_bytes": 64}}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let mut cuts = 0;
    let started = Instant::now();
    while !flood.is_finished() && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(30)).await;
        if cluster.proxy.cut() > 0 {
            cuts += 1;
        }
    }
    let task = flood.await.unwrap();
    assert_eq!(task["state"], "completed", "{task}");
    let events = reader.await.unwrap();
    let progress: Vec<u64> = events
        .iter()
        .filter(|e| e.name == "tool.progress")
        .map(|e| e.data["done"].as_u64().unwrap())
        .collect();
    assert!(cuts > 0, "the relay was cut at least once");
    assert_eq!(
        progress,
        (1..=3000).collect::<Vec<u64>>(),
        "every progress report once, in order ({cuts} cuts)"
    );

    // SIGKILL of sidecar b: its sessions end host_lost, a running task fails host_lost.
    let session_b = on["b"][1].clone();
    let stream = cluster.events(&admin, &session_b).await;
    let reader = tokio::spawn(read_events(stream, |e| e.name == "session.closed"));
    let sleeping = cluster
        .task(
            &admin,
            &session_b,
            json!({"tool": "hostile.sleep", "input": {"ms": 15000}, "wait": false}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    cluster.sidecar_b.lock().unwrap().0.kill().unwrap();
    let events = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the session ends")
        .unwrap();
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "within the health timeout and a little: {:?}",
        killed.elapsed()
    );
    let terminal: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "task.failed" && e.data["task"] == sleeping["id"])
        .map(|e| &e.data)
        .collect();
    assert_eq!(terminal.len(), 1, "one terminal event: {terminal:?}");
    assert_eq!(terminal[0]["error"]["kind"], "host_lost");
    let closed = events.last().unwrap();
    assert_eq!(closed.data["reason"], "host_lost");
    let task = cluster
        .get(
            &admin,
            &format!(
                "/v1/sessions/{session_b}/tasks/{}",
                sleeping["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(task["state"], "failed");
    assert_eq!(task["error"]["kind"], "host_lost");
    for id in &on["b"] {
        let session = cluster.get(&admin, &format!("/v1/sessions/{id}")).await;
        assert_eq!(session["state"], "closed", "{session}");
        assert_eq!(session["close_reason"], "host_lost", "{session}");
    }
    // The orchestrator keeps serving; new sessions go to the sidecar that is left.
    for _ in 0..3 {
        let session = cluster.session(&admin, json!({})).await;
        assert_eq!(session["sidecar"], "a", "{session}");
        let task = cluster
            .task(
                &admin,
                session["id"].as_str().unwrap(),
                json!({"tool": "fs.write", "input": {"path": "x", "content": "y"}}),
            )
            .await;
        assert_eq!(task["state"], "completed");
    }
}
