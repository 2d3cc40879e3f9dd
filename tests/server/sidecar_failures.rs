//! A sidecar that fails its orchestrator: stopped (SIGTERM drains), restarted on either
//! side, frozen, closing sessions behind the orchestrator's back, or writing frames that do
//! not read. Nothing hangs, nothing runs that was reported lost, nothing is resurrected.

use crate::common::*;
use crate::processes::{TOKEN, call, get, orchestrator, sidecar, sidecar_on, stop, write};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `[[sidecars]]` table of one sidecar, `only`, at `url`.
fn only_sidecar(url: &str, token: &std::path::Path) -> String {
    format!(
        "[[sidecars]]\nid = \"only\"\nurl = \"{url}\"\ntoken_file = \"{}\"\n",
        token.display()
    )
}

/// Waits until the sidecar at `url` says it runs a task (not only that it was sent one).
async fn running_on(client: &reqwest::Client, url: &str) {
    let started = Instant::now();
    loop {
        let health: Value = client
            .get(format!("{url}/v1/sidecar/health"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["running_tasks"] == 1 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_stopped_with_sigterm_drains_and_its_orchestrator_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut sidecar_process, url) = sidecar(root, &[]);
    let token = root.join("sidecar.token");
    let (_orchestrator, base, admin) = orchestrator(root, &only_sidecar(&url, &token));
    let client = reqwest::Client::new();
    let (status, session) = call(&client, &admin, format!("{base}/v1/sessions"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["id"].as_str().unwrap().to_owned();
    let (status, sleeping) = call(
        &client,
        &admin,
        format!("{base}/v1/sessions/{id}/tasks"),
        json!({"tool": "hostile.sleep", "input": {"ms": 20000}, "wait": false}),
    )
    .await;
    assert!(status.is_success(), "{sleeping}");
    let task_url = format!(
        "{base}/v1/sessions/{id}/tasks/{}",
        sleeping["id"].as_str().unwrap()
    );
    // Running on the sidecar (not only sent to it) before the stop.
    running_on(&client, &url).await;
    let pid = sidecar_process.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The running task is cancelled, and its outcome still reaches the orchestrator.
    let started = Instant::now();
    let task = loop {
        let task: Value = client
            .get(&task_url)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if task["state"] != "running" {
            break task;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(task["state"], "cancelled", "{task}");
    // A draining or gone sidecar takes no new session: 503 with Retry-After, nothing half made.
    let response = client
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(&admin)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    // `capacity` once the host registry has seen the sidecar draining (its host is not
    // ready), `sidecar_unavailable` when the sidecar refused the session before that.
    let code = body["code"].as_str().unwrap_or_default();
    assert!(
        code == "capacity" && body["detail"].as_str().unwrap().contains("not ready")
            || code == "sidecar_unavailable",
        "{body}"
    );
    // The sidecar exits by itself once drained.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = sidecar_process.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the sidecar exits"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    // Its sessions are gone with it: ended `host_lost`, not left open.
    let started = Instant::now();
    loop {
        let session: Value = client
            .get(format!("{base}/v1/sessions/{id}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if session["state"] == "closed" {
            assert_eq!(session["close_reason"], "host_lost", "{session}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{session}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_restart_keeps_remote_sessions_but_a_sidecar_restart_does_not_resurrect_them()
 {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut sidecar_process, url) = sidecar(root, &[]);
    let token = root.join("sidecar.token");
    let tables = only_sidecar(&url, &token);
    let client = reqwest::Client::new();
    let (mut first, base, admin) = orchestrator(root, &tables);
    let (status, session) = call(&client, &admin, format!("{base}/v1/sessions"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["id"].as_str().unwrap().to_owned();
    let (_, task) = call(
        &client,
        &admin,
        format!("{base}/v1/sessions/{id}/tasks"),
        json!({"tool": "fs.write", "input": {"path": "kept.txt", "content": "still here"}}),
    )
    .await;
    assert_eq!(task["state"], "completed", "{task}");

    // The orchestrator restarts; the sidecar kept the workspace, and the session goes on.
    stop(&mut first);
    let (mut second, base, admin) = orchestrator(root, &tables);
    let session = get(&client, &admin, format!("{base}/v1/sessions/{id}")).await;
    assert_eq!(session["state"], "open", "{session}");
    let (_, task) = call(
        &client,
        &admin,
        format!("{base}/v1/sessions/{id}/tasks"),
        json!({"tool": "fs.read", "input": {"path": "kept.txt"}}),
    )
    .await;
    assert!(task["output"].to_string().contains("still here"), "{task}");
    let stream = client
        .get(format!("{base}/v1/sessions/{id}/events?after=0"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let mut completed = 0;
    let events = read_events(stream, |e| {
        completed += usize::from(e.name == "task.completed");
        completed == 2
    })
    .await;
    let ids: Vec<u64> = events.iter().filter_map(|e| e.id).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "one stream across the restart, none twice: {ids:?}"
    );

    // Both restart, the sidecar while the orchestrator is down: it no longer holds the
    // session, and the orchestrator ends it rather than open an empty workspace.
    stop(&mut second);
    stop(&mut sidecar_process);
    let address = url.trim_start_matches("http://");
    let (_sidecar_again, _) = sidecar_on(root, address, &[]);
    let (_third, base, admin) = orchestrator(root, &tables);
    let session = get(&client, &admin, format!("{base}/v1/sessions/{id}")).await;
    assert_eq!(
        (session["state"].as_str(), session["close_reason"].as_str()),
        (Some("closed"), Some("host_lost")),
        "{session}"
    );
    let (status, fresh) = call(&client, &admin, format!("{base}/v1/sessions"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{fresh}");
    let fresh_id = fresh["id"].as_str().unwrap();
    let (_, task) = call(
        &client,
        &admin,
        format!("{base}/v1/sessions/{fresh_id}/tasks"),
        json!({"tool": "fs.read", "input": {"path": "kept.txt"}}),
    )
    .await;
    assert_eq!(
        task["state"], "failed",
        "a new session starts empty: {task}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_its_sidecar_no_longer_holds_ends_host_lost_with_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (_sidecar, url) = sidecar(root, &[]);
    let token = root.join("sidecar.token");
    let (_orchestrator, base, admin) = orchestrator(root, &only_sidecar(&url, &token));
    let client = reqwest::Client::new();
    let (_, session) = call(&client, &admin, format!("{base}/v1/sessions"), json!({})).await;
    let id = session["id"].as_str().unwrap().to_owned();
    let (status, sleeping) = call(
        &client,
        &admin,
        format!("{base}/v1/sessions/{id}/tasks"),
        json!({"tool": "hostile.sleep", "input": {"ms": 20000}, "wait": false}),
    )
    .await;
    assert!(status.is_success(), "{sleeping}");
    let task_url = format!(
        "{base}/v1/sessions/{id}/tasks/{}",
        sleeping["id"].as_str().unwrap()
    );
    running_on(&client, &url).await;
    // Someone with the token closes the session on the sidecar behind the orchestrator's back.
    let closed = client
        .delete(format!("{url}/v1/sidecar/sessions/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), StatusCode::NO_CONTENT);
    let started = Instant::now();
    let task = loop {
        let task = get(&client, &admin, task_url.clone()).await;
        if task["state"] != "running" {
            break task;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(task["state"], "failed", "{task}");
    assert_eq!(task["error"]["kind"], "host_lost", "{task}");
    // The session closes right after its tasks have ended.
    let started = Instant::now();
    let session = loop {
        let session = get(&client, &admin, format!("{base}/v1/sessions/{id}")).await;
        if session["state"] != "open" || started.elapsed() > Duration::from_secs(5) {
            break session;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (session["state"].as_str(), session["close_reason"].as_str()),
        (Some("closed"), Some("host_lost")),
        "{session}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_given_up_on_a_frozen_sidecar_never_runs_there_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (sidecar_process, url) = sidecar(root, &[]);
    let token = root.join("sidecar.token");
    let (_orchestrator, base, admin) = orchestrator(root, &only_sidecar(&url, &token));
    let client = reqwest::Client::new();
    let (_, session) = call(&client, &admin, format!("{base}/v1/sessions"), json!({})).await;
    let id = session["id"].as_str().unwrap().to_owned();
    // A reader of the sidecar's own event stream sees every frame it writes for the session.
    let frames = {
        let response = client
            .get(format!("{url}/v1/sidecar/sessions/{id}/events?after=0"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        tokio::spawn(async move {
            let text = tokio::time::timeout(Duration::from_secs(20), response.text()).await;
            text.ok().and_then(Result::ok).unwrap_or_default()
        })
    };
    let pid = sidecar_process.0.id().to_string();
    let signal = |name: &str| {
        assert!(
            Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let frozen = Instant::now();
    let (status, task) = call(
        &client,
        &admin,
        format!("{base}/v1/sessions/{id}/tasks"),
        json!({"tool": "hostile.progress", "input": {}}),
    )
    .await;
    assert!(status.is_success(), "{task}");
    assert_eq!(task["error"]["kind"], "host_lost", "{task}");
    assert!(
        frozen.elapsed() < Duration::from_secs(5),
        "answered at the health timeout, not a call timeout: {:?}",
        frozen.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal("-CONT");
    // Thawed, the sidecar reads the task it was sent while frozen: too late, refused. The
    // orchestrator then closes the session there, which ends the stream.
    let frames = frames.await.unwrap();
    let task_id = task["id"].as_str().unwrap();
    assert!(
        !frames.contains(task_id),
        "the task ran on the sidecar after it was reported lost: {frames}"
    );
}

/// A sidecar of the test's own that answers like one but writes the event frames it is
/// told to: the orchestrator's side of a broken or hostile sidecar.
struct FakeSidecar {
    url: String,
    /// Lines to write on the session's event stream, for each task posted, in turn.
    tasks: tokio::sync::mpsc::UnboundedReceiver<String>,
    lines: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
}

impl FakeSidecar {
    async fn start() -> Self {
        use axum::routing::{delete, get, post};
        let (task_tx, tasks) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (lines, line_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let line_rx = Arc::new(tokio::sync::Mutex::new(line_rx));
        let health = || async {
            axum::Json(json!({
                "state": "ready", "boot": "fake", "sessions": 1, "running_tasks": 0,
                "policy_versions": [], "now_ms": toolgate::sidecar::wall_ms(),
            }))
        };
        let events = move || {
            let line_rx = line_rx.clone();
            async move {
                let stream = futures_util::stream::unfold(line_rx, |rx| async move {
                    let line = rx.lock().await.recv().await?;
                    Some((
                        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(line)),
                        rx,
                    ))
                });
                axum::body::Body::from_stream(stream)
            }
        };
        let post_task = move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let task_tx = task_tx.clone();
            async move {
                // Stamped with the moment its orchestrator would give it up: about the
                // health timeout (1.5 s) from now, in this clock.
                let not_after: u64 = headers[toolgate::sidecar::NOT_AFTER_HEADER]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let now = toolgate::sidecar::wall_ms();
                assert!(
                    not_after > now && not_after <= now + 1_600,
                    "{not_after} against {now}"
                );
                let body: Value = serde_json::from_slice(&body).unwrap();
                task_tx
                    .send(body["spec"]["id"].as_str().unwrap().to_owned())
                    .unwrap();
                axum::http::StatusCode::ACCEPTED
            }
        };
        let app = axum::Router::new()
            .route("/v1/sidecar/health", get(health))
            .route(
                "/v1/sidecar/sessions",
                post(|| async { axum::http::StatusCode::NO_CONTENT }),
            )
            .route(
                "/v1/sidecar/sessions/{id}",
                delete(|| async { axum::http::StatusCode::NO_CONTENT }),
            )
            .route("/v1/sidecar/sessions/{id}/tasks", post(post_task))
            .route("/v1/sidecar/sessions/{id}/events", get(events))
            .route(
                "/v1/sidecar/ack",
                post(|| async { axum::http::StatusCode::NO_CONTENT }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, tasks, lines }
    }

    fn write(&self, line: impl AsRef<[u8]>) {
        let mut line = line.as_ref().to_vec();
        line.push(b'\n');
        self.lines.send(line).unwrap();
    }
}

fn finished_frame(seq: u64, task: &str) -> String {
    serde_json::to_string(&toolgate::sidecar::Frame {
        seq,
        task: task.to_owned(),
        event: toolgate::sidecar::TaskEvent::Finished {
            finished: toolgate::sidecar::TaskFinished {
                result: Ok(r#"{"from": "the fake"}"#.to_owned()),
                usage: toolgate::sandbox::Usage::default(),
                decision_us: Vec::new(),
            },
        },
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_frames_fail_only_their_own_tasks_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut fake = FakeSidecar::start().await;
    let token = root.join("sidecar.token");
    write(&token, TOKEN);
    let (_orchestrator, base, admin) = orchestrator(
        root,
        &format!(
            "[[sidecars]]\nid = \"fake\"\nurl = \"{}\"\ntoken_file = \"{}\"\n",
            fake.url,
            token.display()
        ),
    );
    let client = reqwest::Client::new();
    let (status, session) = call(&client, &admin, format!("{base}/v1/sessions"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["id"].as_str().unwrap().to_owned();
    let run = |client: reqwest::Client, base: String, admin: String, id: String| {
        tokio::spawn(async move {
            call(
                &client,
                &admin,
                format!("{base}/v1/sessions/{id}/tasks"),
                json!({"tool": "hostile.sleep", "input": {"ms": 1}}),
            )
            .await
            .1
        })
    };

    // A frame that names its task but does not read as a frame: that task fails.
    let first = run(client.clone(), base.clone(), admin.clone(), id.clone());
    let task = fake.tasks.recv().await.unwrap();
    fake.write(format!(
        r#"{{"seq":1,"task":"{task}","event":{{"kind":"no such kind"}}}}"#
    ));
    let first = first.await.unwrap();
    assert_eq!(first["state"], "failed", "{first}");
    assert_eq!(first["error"]["kind"], "internal", "{first}");
    assert!(
        first["error"]["message"].to_string().contains("frame"),
        "{first}"
    );

    // Bytes that say nothing of whose they are are skipped; the next frame is read.
    let second = run(client.clone(), base.clone(), admin.clone(), id.clone());
    let task = fake.tasks.recv().await.unwrap();
    fake.write(b"\xff\xfe not a frame at all");
    fake.write(finished_frame(3, &task));
    let second = second.await.unwrap();
    assert_eq!(second["state"], "completed", "{second}");
    assert_eq!(second["output"]["from"], "the fake", "{second}");

    // A frame past the size bound is dropped as it comes (memory stays bounded), its task
    // fails, and the stream goes on.
    let third = run(client.clone(), base.clone(), admin.clone(), id.clone());
    let task = fake.tasks.recv().await.unwrap();
    let mut huge =
        format!(r#"{{"seq":4,"task":"{task}","event":{{"kind":"tool","pad":""#).into_bytes();
    huge.resize(70 << 20, b'x');
    huge.extend_from_slice(br#""}}"#);
    fake.write(huge);
    let third = third.await.unwrap();
    assert_eq!(third["state"], "failed", "{third}");
    assert!(
        third["error"]["message"].to_string().contains("bytes"),
        "{third}"
    );
    let fourth = run(client.clone(), base.clone(), admin.clone(), id.clone());
    let task = fake.tasks.recv().await.unwrap();
    fake.write(finished_frame(5, &task));
    let fourth = fourth.await.unwrap();
    assert_eq!(fourth["state"], "completed", "{fourth}");
}
