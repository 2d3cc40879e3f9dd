//! A `toolgate sidecar` process at its edges: every bad request is a problem+json with a
//! stable code and leaves nothing half made; TLS between orchestrator and sidecar; plain
//! HTTP off loopback refused; SIGTERM drains.

use crate::common::*;
use crate::processes::{Process, spawn, write};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use toolgate::policy::{ResourceRequest, TaskIdentity};
use toolgate::sandbox::Limits;
use toolgate::sidecar::server::{PluginRef, TaskBody};
use toolgate::sidecar::{SessionSpec, TaskSpec};

const TOKEN: &str = "a-token-of-at-least-sixteen-characters";

fn sidecar(dir: &Path, extra: &[&str]) -> (Process, String) {
    sidecar_on(dir, "127.0.0.1:0", extra)
}

fn sidecar_on(dir: &Path, listen: &str, extra: &[&str]) -> (Process, String) {
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

/// The answer's status, content type and JSON body.
async fn answer(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, kind, body)
}

/// Asserts a problem+json answer with `status` and `code`; returns its body.
async fn problem(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let (got, kind, body) = answer(response).await;
    assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    assert_eq!(kind, "application/problem+json", "{body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

fn session_spec(id: &str) -> Value {
    serde_json::to_value(SessionSpec {
        id: id.into(),
        principal: "admin".into(),
        profile: "developer".into(),
        resources: ResourceRequest::default(),
        resume: false,
    })
    .unwrap()
}

fn task_body(session: &str, policy_version: &str) -> Value {
    serde_json::to_value(TaskBody {
        spec: TaskSpec {
            id: "t_0123456789abcdef0123456789abcdef".into(),
            identity: TaskIdentity {
                principal: "admin".into(),
                profile: "developer".into(),
                session: session.into(),
                tool: "fs.write".into(),
            },
            input: r#"{"path": "a", "content": "b"}"#.into(),
            limits: Limits::default(),
            policy_version: policy_version.into(),
            entities: Vec::new(),
        },
        plugin: PluginRef {
            name: "fs".into(),
            digest: toolgate::sandbox::plugin_digest(b"not shipped"),
        },
        secrets: [("api_key".to_owned(), "s3cr3t-value-never-echoed".to_owned())].into(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_to_a_sidecar_is_a_problem_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (_sidecar, base) = sidecar(dir.path(), &[]);
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{base}/v1/sidecar{path}");
    let session = "s_0123456789abcdef0123456789abcdef";

    // No token, a wrong one of the same length, a longer one: 401.
    let wrong = "b".repeat(TOKEN.len());
    let longer = format!("{TOKEN}x");
    for token in [None, Some(wrong.as_str()), Some(longer.as_str()), Some("")] {
        let mut request = client.get(url("/health"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        problem(
            request.send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    // Refused before anything else: an unauthenticated session is not opened.
    problem(
        client
            .post(url("/sessions"))
            .json(&session_spec(session))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    let post = |path: &str, body: Vec<u8>| {
        client
            .post(url(path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
    };
    // Garbled, truncated, of the wrong shape: 422, and the body's contents are not echoed.
    for body in [
        br#"{"id": "s_0123", "principal": "s3cr3t-value-never-echoed""#.to_vec(),
        b"\xff\xfe not json".to_vec(),
        br#"{"id": 7}"#.to_vec(),
        br#"{"id": "../../etc", "principal": "a", "profile": "b", "resources": {}}"#.to_vec(),
    ] {
        let body = problem(
            post("/sessions", body).send().await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        )
        .await;
        assert!(!body.to_string().contains("s3cr3t"), "{body}");
    }
    let garbled_task = post(&format!("/sessions/{session}/tasks"), b"[1, 2".to_vec());
    problem(
        garbled_task.send().await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    // Over the body limit: 413 as a problem. (On a connection of its own: the sidecar
    // answers before reading the rest and then closes it, as HTTP/1.1 servers do.)
    let huge = vec![b' '; 17 << 20];
    problem(
        reqwest::Client::new()
            .post(url("/sessions"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;

    // A task for a session the sidecar does not hold: 404 naming it, secrets not echoed.
    let body = problem(
        client
            .post(url(&format!("/sessions/{session}/tasks")))
            .bearer_auth(TOKEN)
            .json(&task_body(session, "0000000000000000"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "unknown_session",
    )
    .await;
    assert_eq!(body["subject"], session);
    assert!(!body.to_string().contains("s3cr3t"), "{body}");
    for (request, status, code) in [
        (
            client.delete(url(&format!("/sessions/{session}"))),
            StatusCode::NOT_FOUND,
            "unknown_session",
        ),
        (
            client.get(url(&format!("/sessions/{session}/events"))),
            StatusCode::NOT_FOUND,
            "unknown_session",
        ),
        (
            client.get(url(&format!("/sessions/{session}/events?after=minus-one"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            client.get(url("/no/such/route")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            client.get(url("/sessions")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ] {
        problem(
            request.bearer_auth(TOKEN).send().await.unwrap(),
            status,
            code,
        )
        .await;
    }

    // A plugin whose bytes are not its digest, one that is no component, one without a name.
    let digest = toolgate::sandbox::plugin_digest(b"other bytes");
    let put = |path: String, body: Vec<u8>| client.put(url(&path)).bearer_auth(TOKEN).body(body);
    problem(
        put(format!("/plugins/{digest}?name=fs"), b"some bytes".to_vec())
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    let junk = b"\0asm junk that is no component".to_vec();
    let junk_digest = toolgate::sandbox::plugin_digest(&junk);
    problem(
        put(format!("/plugins/{junk_digest}?name=fs"), junk.clone())
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    problem(
        put(format!("/plugins/{junk_digest}"), junk)
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    // A policy set that hashes to another version than the one it is shipped as.
    problem(
        put(
            "/policies/0123456789abcdef".into(),
            br#"{"policies": [], "schema": null, "entities": null}"#.to_vec(),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;

    // After all that: nothing was opened, and a good session opens.
    let health = client
        .get(url("/health"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let (_, _, health) = answer(health).await;
    assert_eq!(
        (health["state"].as_str(), health["sessions"].as_u64()),
        (Some("ready"), Some(0)),
        "{health}"
    );
    // A request stamped with a deadline already past (its orchestrator gave it up) is refused.
    let past = (toolgate::sidecar::wall_ms() - 1).to_string();
    problem(
        client
            .post(url("/sessions"))
            .bearer_auth(TOKEN)
            .header(toolgate::sidecar::NOT_AFTER_HEADER, &past)
            .json(&session_spec(session))
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
        "stale_request",
    )
    .await;
    let future = (toolgate::sidecar::wall_ms() + 60_000).to_string();
    let opened = client
        .post(url("/sessions"))
        .bearer_auth(TOKEN)
        .header(toolgate::sidecar::NOT_AFTER_HEADER, &future)
        .json(&session_spec(session))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::NO_CONTENT);
    problem(
        client
            .post(url(&format!("/sessions/{session}/tasks")))
            .bearer_auth(TOKEN)
            .header(toolgate::sidecar::NOT_AFTER_HEADER, &past)
            .json(&task_body(session, "feedfacefeedface"))
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
        "stale_request",
    )
    .await;
    // Open, but the sidecar holds no policy set yet: the task is refused naming the version.
    let body = problem(
        client
            .post(url(&format!("/sessions/{session}/tasks")))
            .bearer_auth(TOKEN)
            .json(&task_body(session, "feedfacefeedface"))
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
        "policy_version_missing",
    )
    .await;
    assert_eq!(body["subject"], "feedfacefeedface");
    // A task whose spec names another session than its path.
    problem(
        client
            .post(url(&format!("/sessions/{session}/tasks")))
            .bearer_auth(TOKEN)
            .json(&task_body(
                "s_ffffffffffffffffffffffffffffffff",
                "feedfacefeedface",
            ))
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    let health = client
        .get(url("/health"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let (_, _, health) = answer(health).await;
    assert_eq!(
        (
            health["sessions"].as_u64(),
            health["running_tasks"].as_u64()
        ),
        (Some(1), Some(0)),
        "{health}"
    );
}

#[test]
fn a_sidecar_refuses_what_would_put_its_token_at_risk() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    write(&token, TOKEN);
    let not_pem = dir.path().join("not.pem");
    write(&not_pem, "this is no certificate");
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_toolgate"))
            .arg("sidecar")
            .args(["--token-file", token.to_str().unwrap()])
            .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--listen", "0.0.0.0:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("in the clear") && stderr.contains("--tls-cert"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--tls-cert", not_pem.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
    let not_pem = not_pem.to_str().unwrap();
    let (code, stderr) = run(&["--tls-cert", not_pem, "--tls-key", not_pem]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
    let short = dir.path().join("short");
    write(&short, "short");
    let output = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["sidecar", "--token-file", short.to_str().unwrap()])
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("shorter than 16"));
}

/// An orchestrator with the given `[[sidecars]]` tables (and no in-process sidecar).
fn orchestrator(dir: &Path, sidecars: &str) -> (Process, String, String) {
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
    let policies = test_policies(dir);
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

async fn call(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_reaches_its_sidecar_over_tls_and_trusts_only_its_roots() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (root.join("sidecar.pem"), root.join("sidecar.key"));
    write(&cert, &certified.cert.pem());
    write(&key, &certified.signing_key.serialize_pem());
    let (_sidecar, url) = sidecar(
        root,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let port = url
        .strip_prefix("https://127.0.0.1:")
        .expect("the sidecar says it serves https");
    let token = root.join("sidecar.token");
    let token = token.to_str().unwrap();
    // The same sidecar twice: once with its certificate trusted, once without.
    let (_orchestrator, base, admin) = orchestrator(
        root,
        &format!(
            r#"[[sidecars]]
id = "trusted"
url = "https://localhost:{port}"
token_file = "{token}"
ca_file = "{}"

[[sidecars]]
id = "untrusted"
url = "https://localhost:{port}"
token_file = "{token}"
"#,
            cert.display()
        ),
    );
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let (status, session) =
            call(&client, &admin, format!("{base}/v1/sessions"), json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        assert_eq!(session["sidecar"], "trusted", "{session}");
        let id = session["id"].as_str().unwrap();
        let (_, task) = call(
            &client,
            &admin,
            format!("{base}/v1/sessions/{id}/tasks"),
            json!({"tool": "fs.write", "input": {"path": "a.txt", "content": "over tls"}}),
        )
        .await;
        assert_eq!(task["state"], "completed", "{task}");
        let (_, task) = call(
            &client,
            &admin,
            format!("{base}/v1/sessions/{id}/tasks"),
            json!({"tool": "fs.read", "input": {"path": "a.txt"}}),
        )
        .await;
        assert!(task["output"].to_string().contains("over tls"), "{task}");
    }
    // Plain HTTP to the TLS port is no way in either.
    let plain = client
        .get(format!("http://127.0.0.1:{port}/v1/sidecar/health"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_stopped_with_sigterm_drains_and_its_orchestrator_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut sidecar_process, url) = sidecar(root, &[]);
    let token = root.join("sidecar.token");
    let (_orchestrator, base, admin) = orchestrator(
        root,
        &format!(
            "[[sidecars]]\nid = \"only\"\nurl = \"{url}\"\ntoken_file = \"{}\"\n",
            token.display()
        ),
    );
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
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    assert_eq!(body["code"], "sidecar_unavailable", "{body}");
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

/// Stops a process with SIGTERM and waits for it to exit.
fn stop(process: &mut Process) {
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

async fn get(client: &reqwest::Client, key: &str, url: String) -> Value {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_restart_keeps_remote_sessions_but_a_sidecar_restart_does_not_resurrect_them()
 {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut sidecar_process, url) = sidecar(root, &[]);
    let token = root.join("sidecar.token");
    let tables = format!(
        "[[sidecars]]\nid = \"only\"\nurl = \"{url}\"\ntoken_file = \"{}\"\n",
        token.display()
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_closes_idle_connections_and_those_past_its_cap() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let (_sidecar, url) = sidecar(
        dir.path(),
        &["--max-connections", "8", "--header-timeout-ms", "400"],
    );
    let address = url.trim_start_matches("http://").to_owned();
    // Eight connections that say nothing take every slot; the ninth is closed at once.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut surplus = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(300), surplus.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed at once: {read:?}"
    );
    // The silent ones are closed after the header timeout, and the sidecar answers again.
    for mut connection in idle {
        let read = tokio::time::timeout(Duration::from_secs(3), connection.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "closed when idle: {read:?}"
        );
    }
    let health = reqwest::Client::new()
        .get(format!("{url}/v1/sidecar/health"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_its_sidecar_no_longer_holds_ends_host_lost_with_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (_sidecar, url) = sidecar(root, &[]);
    let token = root.join("sidecar.token");
    let (_orchestrator, base, admin) = orchestrator(
        root,
        &format!(
            "[[sidecars]]\nid = \"only\"\nurl = \"{url}\"\ntoken_file = \"{}\"\n",
            token.display()
        ),
    );
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
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let (_orchestrator, base, admin) = orchestrator(
        root,
        &format!(
            "[[sidecars]]\nid = \"only\"\nurl = \"{url}\"\ntoken_file = \"{}\"\n",
            token.display()
        ),
    );
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
