//! A `toolgate sidecar` process at its edges: every bad request is a problem+json with a
//! stable code and leaves nothing half made; plain HTTP off loopback refused; connections
//! bounded; TLS between orchestrator and sidecar.

use crate::processes::{TOKEN, call, orchestrator, sidecar, write};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use toolgate::policy::{ResourceRequest, TaskIdentity};
use toolgate::sandbox::Limits;
use toolgate::sidecar::server::{PluginRef, TaskBody};
use toolgate::sidecar::{SessionSpec, TaskSpec};

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
        credentials: Vec::new(),
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
