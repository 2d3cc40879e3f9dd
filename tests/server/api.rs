//! The API's behaviour and every error code.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_session_runs_tasks_in_its_own_workspace() {
    let server = Server::start().await;
    let key = server.key("alice", "developer");
    let session = server.session(&key).await;

    let write = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "fs.write", "input": {"path": "notes.txt", "content": "hello"}}),
        )
        .await;
    assert_eq!(write.status(), StatusCode::OK);
    let task: Value = write.json().await.unwrap();
    assert_eq!(task["state"], "completed", "{task}");
    assert_eq!(task["decision"]["allowed"], true);
    assert!(task["usage"]["fuel_consumed"].as_u64().unwrap() > 0);

    let read = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "fs.read", "input": {"path": "notes.txt"}}),
        )
        .await;
    let task: Value = read.json().await.unwrap();
    assert_eq!(task["output"]["content"], "hello", "{task}");

    // GET the task back; wait=false answers 202 at once.
    let id = task["id"].as_str().unwrap();
    let again: Value = server
        .get(&key, &format!("/v1/sessions/{session}/tasks/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["state"], "completed");
    let queued = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "fs.list", "input": {}, "wait": false}),
        )
        .await;
    assert_eq!(queued.status(), StatusCode::ACCEPTED);

    let closed = server
        .delete(&key, &format!("/v1/sessions/{session}"))
        .await;
    assert_eq!(closed.status(), StatusCode::OK);
    let closed: Value = closed.json().await.unwrap();
    assert_eq!(closed["state"], "closed");
    assert!(server.app.store.get_session(&session).unwrap().is_some());
    server.stop().await;
}

#[tokio::test]
async fn every_error_has_its_status_and_code() {
    let server = Server::start_with(|c| c.max_sessions = 2).await;
    let alice = server.key("alice", "developer");
    let bob = server.key("bob", "readonly");

    // 401: no key, a wrong key.
    let none = server
        .client
        .get(server.url("/v1/info"))
        .send()
        .await
        .unwrap();
    problem(none, StatusCode::UNAUTHORIZED, "unauthorized").await;
    problem(
        server.get("tg_wrong", "/v1/info").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    // 403: bob may not open a developer session.
    let body = problem(
        server
            .post(&bob, "/v1/sessions", json!({"profile": "developer"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        body["reasons"],
        json!([]),
        "no policy determined it: {body}"
    );
    assert!(
        body["explanation"][0]
            .as_str()
            .unwrap()
            .contains("default deny"),
        "{body}"
    );

    // 404: another principal's session is not found, not forbidden.
    let session = server.session(&alice).await;
    problem(
        server.get(&bob, &format!("/v1/sessions/{session}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        server.get(&alice, "/v1/sessions/s_nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // 422: bad bodies.
    problem(
        server
            .post(&alice, "/v1/sessions", json!({"nonsense": 1}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    let tasks = format!("/v1/sessions/{session}/tasks");
    problem(
        server
            .post(&alice, &tasks, json!({"tool": "fs.read", "input": [1]}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    problem(
        server.post(&alice, &tasks, json!({"tool": "nope.x"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_tool",
    )
    .await;

    // 413: a body over the limit.
    let huge = "x".repeat(2 << 20);
    let response = server
        .post(
            &alice,
            &tasks,
            json!({"tool": "fs.write", "input": {"path": "a", "content": huge}}),
        )
        .await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // 503: the session limit.
    let _second = server.session(&alice).await;
    problem(
        server.post(&alice, "/v1/sessions", json!({})).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "capacity",
    )
    .await;

    // 409: a task on a closed session.
    server
        .delete(&alice, &format!("/v1/sessions/{session}"))
        .await;
    problem(
        server
            .post(&alice, &tasks, json!({"tool": "fs.list"}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let server = Server::start_with(|c| {
        c.rate_limit = 1;
        c.rate_burst = 2;
    })
    .await;
    let key = server.key("carol", "developer");
    let mut limited = None;
    for _ in 0..10 {
        let response = server.get(&key, "/v1/info").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("the burst runs out");
    assert!(response.headers().contains_key("retry-after"));
    problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another principal is not affected.
    let other = server.key("dave", "developer");
    assert_eq!(
        server.get(&other, "/v1/info").await.status(),
        StatusCode::OK
    );
    server.stop().await;
}

#[tokio::test]
async fn a_task_denied_by_policy_is_reported_with_its_decision() {
    let server = Server::start().await;
    let bob = server.key("bob", "readonly");
    let session = {
        let response = server
            .post(&bob, "/v1/sessions", json!({"profile": "readonly"}))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let task: Value = server
        .post(
            &bob,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "fs.write", "input": {"path": "x", "content": "y"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["state"], "failed");
    assert_eq!(task["error"]["kind"], "denied");
    assert_eq!(task["decision"]["allowed"], false);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_while_waiting_cancels_its_task() {
    let server = Server::start().await;
    let key = server.key("dora", "developer");
    let session = server.session(&key).await;
    // The plugin is loaded first, so the call that goes away has a task to cancel.
    let warm = server
        .post(&key, "/v1/preflight", json!({"tools": ["hostile.spin"]}))
        .await;
    assert_eq!(warm.status(), StatusCode::OK);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let gone = impatient
        .post(server.url(&format!("/v1/sessions/{session}/tasks")))
        .bearer_auth(&key)
        .json(&json!({"tool": "hostile.spin", "input": {}, "limits": {"fuel": 40000000000u64}}))
        .send()
        .await;
    assert!(
        gone.is_err_and(|e| e.is_timeout()),
        "the call was still waiting"
    );
    drop(impatient);
    let started = Instant::now();
    let events = read_events(
        server
            .get(&key, &format!("/v1/sessions/{session}/events?after=0"))
            .await,
        |e| e.name == "task.failed",
    )
    .await;
    let ended = events.last().unwrap();
    assert_eq!(ended.name, "task.failed", "{events:?}");
    assert_eq!(ended.data["state"], "cancelled", "{ended:?}");
    assert_eq!(ended.data["error"]["kind"], "cancelled");
    assert!(started.elapsed() < Duration::from_secs(10));
    let id = ended.data["task"].as_str().unwrap();
    let task: Value = server
        .get(&key, &format!("/v1/sessions/{session}/tasks/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        task["state"], "cancelled",
        "the store has the end too: {task}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server =
        Server::start_with(|config| config.header_timeout = Duration::from_millis(300)).await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(started.elapsed() >= Duration::from_millis(250));
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // A client that sends its headers in time is served as usual.
    let mut quick = tokio::net::TcpStream::connect(&address).await.unwrap();
    quick
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    quick.read_to_end(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    server.stop().await;
}

#[tokio::test]
async fn stopping_cancels_running_tasks_and_answers_their_waiting_clients() {
    let server = Server::start().await;
    let key = server.key("gus", "developer");
    let session = server.session(&key).await;
    let waiting = {
        let request = server
            .client
            .post(server.url(&format!("/v1/sessions/{session}/tasks")))
            .bearer_auth(&key)
            .json(
                &json!({"tool": "hostile.spin", "input": {}, "limits": {"fuel": 40000000000u64}}),
            );
        tokio::spawn(async move { request.send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let store = server.app.store.clone();
    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly"
    );
    let response = waiting
        .await
        .unwrap()
        .expect("the waiting client got an answer");
    let task: Value = response.json().await.unwrap();
    assert_eq!(task["state"], "cancelled", "{task}");
    let stored = store
        .get_task(&session, task["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        stored.unwrap().state,
        "cancelled",
        "recorded before the store closed"
    );
}

#[tokio::test]
async fn cancel_stops_a_running_component_promptly() {
    let server = Server::start().await;
    let key = server.key("erin", "developer");
    let session = server.session(&key).await;
    let queued: Value = server
        .post(&key, &format!("/v1/sessions/{session}/tasks"), json!({"tool": "hostile.spin", "input": {}, "wait": false, "limits": {"fuel": 40000000000u64}}))
        .await
        .json()
        .await
        .unwrap();
    let id = queued["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let cancel = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
    let mut state = Value::Null;
    while started.elapsed() < Duration::from_secs(10) {
        let task: Value = server
            .get(&key, &format!("/v1/sessions/{session}/tasks/{id}"))
            .await
            .json()
            .await
            .unwrap();
        state = task["state"].clone();
        if state != "running" && state != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, "cancelled");
    // A finished task cannot be cancelled again.
    let again = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks/{id}/cancel"),
            json!({}),
        )
        .await;
    problem(again, StatusCode::CONFLICT, "conflict").await;
    server.stop().await;
}

#[tokio::test]
async fn a_busy_session_does_not_slow_another() {
    let server = Server::start().await;
    let key = server.key("frank", "developer");
    let busy = server.session(&key).await;
    let calm = server.session(&key).await;
    let mut hogs = Vec::new();
    for _ in 0..2 {
        let response = server
            .post(&key, &format!("/v1/sessions/{busy}/tasks"), json!({"tool": "hostile.spin", "input": {}, "wait": false, "limits": {"timeout_ms": 20000, "fuel": 40000000000u64}}))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        hogs.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        let task: Value = server
            .post(
                &key,
                &format!("/v1/sessions/{calm}/tasks"),
                json!({"tool": "fs.list", "input": {}}),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(task["state"], "completed", "{task}");
    }
    // The calm tasks finished while the busy ones were still spinning.
    for hog in &hogs {
        let task: Value = server
            .get(&key, &format!("/v1/sessions/{busy}/tasks/{hog}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(task["state"], "running", "{task}");
    }
    server.delete(&key, &format!("/v1/sessions/{busy}")).await;
    server.stop().await;
}

#[tokio::test]
async fn health_info_and_metrics() {
    let server = Server::start().await;
    assert_eq!(
        server
            .client
            .get(server.url("/livez"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        server
            .client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let info: Value = server
        .get(&server.admin, "/v1/info")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["mode"], "api");
    assert_eq!(info["policy"]["version"].as_str().unwrap().len(), 16);
    let tools: Value = server
        .get(&server.admin, "/v1/tools")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "fs.read")
    );
    let session = server.session(&server.admin).await;
    server
        .post(
            &server.admin,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "fs.list"}),
        )
        .await;
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("toolgate_tasks_total"), "{metrics}");
    assert!(metrics.contains("toolgate_sessions_active"), "{metrics}");
    assert!(!metrics.contains(&session), "no per-session labels");
    server.stop().await;
}

#[tokio::test]
async fn preflight_says_what_would_work_and_why_not() {
    let secrets = tempfile::tempdir().unwrap();
    let secrets_file = secrets.path().join("secrets.json");
    std::fs::write(&secrets_file, r#"{"github_token": "ghp_preflight"}"#).unwrap();
    let server = Server::start_with(|config| config.secrets_file = Some(secrets_file)).await;
    let key = server.key("nina", "networked");
    let response = server
        .post(
            &key,
            "/v1/preflight",
            json!({
                "tools": ["http.fetch", "fs.nope"],
                "domains": ["api.github.com", "evil.example"],
                "files": ["/srv/toolgate/shared/notes.md"],
                "secrets": ["github_token", "aws_key"],
                "model_provider": "local",
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    let outcome = |check: &str, name: Option<&str>| -> bool {
        let found = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == check && c["name"].as_str() == name)
            .unwrap_or_else(|| panic!("no {check} {name:?} check in {report}"));
        found["ok"].as_bool().unwrap()
    };
    assert_eq!(report["ready"], false, "{report}");
    for server_check in ["policy_set", "store", "sessions", "create_session"] {
        assert!(outcome(server_check, None), "{server_check}: {report}");
    }
    assert!(outcome("tool", Some("http.fetch")));
    assert!(!outcome("tool", Some("fs.nope")), "no such tool");
    assert!(outcome("domain", Some("api.github.com")));
    assert!(
        !outcome("domain", Some("evil.example")),
        "not an allowed domain"
    );
    assert!(outcome("file", Some("/srv/toolgate/shared/notes.md")));
    assert!(outcome("secret", Some("github_token")));
    assert!(
        !outcome("secret", Some("aws_key")),
        "neither allowed nor configured"
    );
    assert!(outcome("model_provider", Some("local")));
    assert!(
        !report.to_string().contains("ghp_preflight"),
        "no secret value"
    );

    // A readonly caller asking for a domain: the session itself would be refused.
    let reader = server.key("rita", "readonly");
    let report: Value = server
        .post(
            &reader,
            "/v1/preflight",
            json!({"domains": ["api.github.com"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["ready"], false);
    let session = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "create_session")
        .unwrap();
    assert_eq!(session["ok"], false, "{report}");
    let plain: Value = server
        .post(&reader, "/v1/preflight", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(plain["ready"], true, "{plain}");

    // Nothing was created.
    assert_eq!(server.app.orchestrator.open_sessions(), 0);
    problem(
        server
            .post(&reader, "/v1/preflight", json!({"tool": "x"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    let many: Vec<String> = (0..65).map(|n| format!("d{n}.example")).collect();
    problem(
        server
            .post(&reader, "/v1/preflight", json!({"domains": many}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn admins_install_plugins_and_the_next_task_uses_them() {
    let server = Server::start_with(|config| config.plugin_limit = 512 * 1024).await;
    let upload = |key: &str, name: &str, content_type: &str, bytes: Vec<u8>| {
        server
            .client
            .put(server.url(&format!("/v1/plugins/{name}")))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(bytes)
            .send()
    };
    let echo = std::fs::read(artifact("echo")).unwrap();

    // Only admins; a bad upload changes nothing.
    let user = server.key("ursula", "developer");
    problem(
        upload(&user, "hostile", "application/wasm", echo.clone())
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let admin = server.admin.clone();
    problem(
        upload(&admin, "hostile", "text/plain", echo.clone())
            .await
            .unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    problem(
        upload(&admin, "Bad Name", "application/wasm", echo.clone())
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    for bad in [
        b"not wasm at all".to_vec(),
        std::fs::read(artifact("not-a-tool")).unwrap(),
    ] {
        let response = upload(&admin, "hostile", "application/wasm", bad)
            .await
            .unwrap();
        problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin").await;
    }
    problem(
        upload(
            &admin,
            "hostile",
            "application/wasm",
            vec![0; 512 * 1024 + 1],
        )
        .await
        .unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    let uploads = server.data_dir().join("plugins");
    assert!(!uploads.join("hostile.wasm").exists(), "nothing stored");

    // A new plugin: listed, stored.
    let response = upload(&admin, "echo2", "application/wasm", echo.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let installed: Value = response.json().await.unwrap();
    assert_eq!(
        installed["tools"],
        json!(["echo2.echo", "echo2.fail"]),
        "{installed}"
    );
    assert_eq!(installed["replaced"], false);
    assert_eq!(std::fs::read(uploads.join("echo2.wasm")).unwrap(), echo);
    let plugins: Value = server
        .get(&admin, "/v1/plugins")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "echo2")
    );

    // Replacing a plugin: the next task runs the new one (the test policy allows `hostile`).
    let response = upload(&admin, "hostile", "application/wasm", echo)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let session = server.session(&admin).await;
    let task: Value = server
        .post(
            &admin,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "hostile.echo", "input": {"said": "hi"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["state"], "completed", "{task}");
    assert_eq!(task["output"]["said"], "hi", "{task}");
    server.stop().await;
}

#[tokio::test]
async fn a_refused_policy_reload_shows_in_info_and_metrics() {
    let server = Server::start_with(|config| config.policy_poll = Duration::from_millis(50)).await;
    let policies = server.data_dir().parent().unwrap().join("policies");
    let metric = |text: &str, name: &str| -> Option<String> {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .map(str::to_owned)
    };
    let scrape = || async {
        let text = server
            .client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let info: Value = server
            .get(&server.admin, "/v1/info")
            .await
            .json()
            .await
            .unwrap();
        (text, info)
    };
    // The metrics and info once `toolgate_policy_reload_failing` reads `value` (5 s at most).
    let failing_becomes = |value: &'static str| async move {
        for _ in 0..100 {
            let (text, info) = scrape().await;
            if metric(&text, "toolgate_policy_reload_failing").as_deref() == Some(value) {
                return Some((text, info));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    };
    let (text, info) = scrape().await;
    assert_eq!(
        metric(&text, "toolgate_policy_reload_failing").as_deref(),
        Some("0"),
        "{text}"
    );
    let version = info["policy"]["version"].clone();

    // A broken set is refused; the last good one stays in force. Written aside and renamed
    // in, so the 50 ms poll never reads it half-written (an empty file is a good set).
    std::fs::write(
        policies.join("broken.part"),
        "permit (principal, action, resource) when {",
    )
    .unwrap();
    std::fs::rename(policies.join("broken.part"), policies.join("broken.cedar")).unwrap();
    let (text, info) = failing_becomes("1")
        .await
        .expect("the refused reload shows in the metrics");
    assert_eq!(
        metric(&text, "toolgate_policy_reload_failures_total").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        info["policy"]["version"], version,
        "the last good set stays"
    );
    assert!(
        info["policy"]["last_error"]
            .as_str()
            .unwrap()
            .contains("broken.cedar"),
        "{info}"
    );

    // A good set again: reloaded, no longer failing.
    std::fs::write(
        policies.join("broken.part"),
        "@id(\"extra.none\")\nforbid (principal, action, resource) when { false };\n",
    )
    .unwrap();
    std::fs::rename(policies.join("broken.part"), policies.join("broken.cedar")).unwrap();
    let (text, info) = failing_becomes("0")
        .await
        .expect("the good set is reloaded");
    assert_eq!(
        metric(&text, "toolgate_policy_reloads_total").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_ne!(info["policy"]["version"], version);
    server.stop().await;
}

#[tokio::test]
async fn errors_from_outside_the_routes_are_problems_too() {
    let server = Server::start().await;
    let key = server.key("gina", "developer");
    let wrong_method = server
        .client
        .put(server.url("/v1/info"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    problem(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    problem(
        server.get(&key, "/v1/nowhere").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let session = server.session(&key).await;
    let bad_cursor = server
        .get(&key, &format!("/v1/sessions/{session}/events?after=soon"))
        .await;
    problem(
        bad_cursor,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    let unauthorized = server
        .client
        .get(server.url("/v1/info"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.headers()["www-authenticate"], "Bearer");
    let not_json = server
        .client
        .post(server.url("/v1/sessions"))
        .bearer_auth(&key)
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(
        not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    server.stop().await;
}

#[test]
fn bad_server_settings_and_key_requests_exit_two_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nrate_limitt = 5\n").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_toolgate"))
            .args(args)
            .env("TOOLGATE_DATA_DIR", dir.path().join("data"))
            .output()
            .unwrap()
    };
    let out = run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rate_limitt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&[
        "keys",
        "create",
        "--principal",
        "",
        "--profile",
        "developer",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--principal"));
    // Nothing was created by the refused request; a good one prints the key alone on the last line.
    let out = run(&[
        "keys",
        "create",
        "--principal",
        "ivy",
        "--profile",
        "developer",
        "--init",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim().lines().last().unwrap().starts_with("tg_"),
        "{stdout}"
    );
    let store = toolgate::store::Store::open(&dir.path().join("data")).unwrap();
    assert_eq!(store.key_count().unwrap(), 1);
}
