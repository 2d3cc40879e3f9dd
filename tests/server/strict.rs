//! Inputs are checked against their contracts: unknown tools, tool input schemas, session
//! resources, limits in force, cancelling a queued task, and denials that say why.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The session's events up to and including the one `last` matches.
async fn events_until(
    server: &Server,
    key: &str,
    session: &str,
    last: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    let response = server
        .get(key, &format!("/v1/sessions/{session}/events?after=0"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(30), read_events(response, last))
        .await
        .expect("the events arrive")
}

fn of_task<'a>(events: &'a [SseEvent], task: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e.data["task"] == task)
        .map(|e| e.name.as_str())
        .collect()
}

#[tokio::test]
async fn an_unknown_tool_is_a_422_whether_its_plugin_exists_or_not() {
    let server = Server::start().await;
    let key = server.key("uma", "developer");
    let session = server.session(&key).await;
    for tool in ["json.nope", "nope.x", "nodot"] {
        let response = server
            .post(
                &key,
                &format!("/v1/sessions/{session}/tasks"),
                json!({"tool": tool}),
            )
            .await;
        let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "unknown_tool").await;
        assert!(body["detail"].as_str().unwrap().contains(tool), "{body}");
        let response = server
            .post(&key, "/v1/sessions", json!({"tools": [tool]}))
            .await;
        problem(response, StatusCode::UNPROCESSABLE_ENTITY, "unknown_tool").await;
    }
    // Nothing was queued, decided or recorded for them.
    let session_view: Value = server
        .get(&key, &format!("/v1/sessions/{session}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(session_view["last_event_id"], 2, "{session_view}");
}

#[tokio::test]
async fn tool_input_is_checked_against_its_schema_before_the_component_runs() {
    let server = Server::start().await;
    let key = server.key("vic", "developer");
    let session = server.session(&key).await;
    let task: Value = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "fs.write", "input": {"path": "a.txt", "content": 12}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["state"], "failed", "{task}");
    assert_eq!(task["error"]["kind"], "invalid_input", "{task}");
    assert_eq!(task["error"]["path"], "/content", "{task}");
    assert!(
        task["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input schema of `fs.write`"),
        "{task}"
    );
    // The component never ran: no fuel, no file.
    assert_eq!(task["usage"]["fuel_consumed"], 0, "{task}");
    assert!(
        !server
            .data_dir()
            .join("workspaces")
            .join(&session)
            .join("a.txt")
            .exists()
    );

    // A missing required field names the whole input.
    let task: Value = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "fs.read", "input": {}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["error"]["kind"], "invalid_input", "{task}");
    assert_eq!(task["error"]["path"], "", "{task}");
}

#[tokio::test]
async fn a_plugin_whose_schema_does_not_compile_is_refused_at_upload() {
    let server = Server::start().await;
    let bytes = std::fs::read(artifact("bad_schema")).unwrap();
    let response = server
        .client
        .put(server.url("/v1/plugins/bad_schema"))
        .bearer_auth(&server.admin)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin").await;
    assert_eq!(body["reason"], "invalid_input_schema", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("`broken`"),
        "{body}"
    );
}

#[tokio::test]
async fn session_resources_are_each_optional_and_misspelt_ones_refused() {
    let server = Server::start().await;
    let key = server.key("wes", "developer");
    let response = server
        .post(
            &key,
            "/v1/sessions",
            json!({"resources": {"memory_mb": 512}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let session: Value = response.json().await.unwrap();
    assert_eq!(
        session["request"]["resources"],
        json!({"cpu_millis": 1000, "memory_mb": 512, "disk_mb": 512, "timeout_ms": 600000})
    );
    let response = server
        .post(
            &key,
            "/v1/sessions",
            json!({"resources": {"memory_MB": 512}}),
        )
        .await;
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("memory_MB"),
        "{body}"
    );
}

#[tokio::test]
async fn a_denied_session_says_which_bound_it_crossed_and_its_reasons_agree() {
    let server = Server::start().await;
    let key = server.key("xia", "developer");
    let response = server
        .post(
            &key,
            "/v1/sessions",
            json!({"resources": {"memory_mb": 4096}}),
        )
        .await;
    let body = problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(body["reasons"], json!(["session.max-memory"]), "{body}");
    assert_eq!(body["reasons"], body["decision"]["reasons"], "{body}");
    let explanation = body["explanation"][0].as_str().unwrap();
    assert!(explanation.contains("session.max-memory"), "{body}");
    assert!(explanation.contains("1024 MiB"), "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("1024 MiB"),
        "{body}"
    );
}

#[tokio::test]
async fn every_decided_preflight_check_carries_one_decision_object() {
    let server = Server::start().await;
    let key = server.key("yan", "developer");
    let response = server
        .post(
            &key,
            "/v1/preflight",
            json!({"tools": ["fs.read", "http.fetch"], "domains": ["docs.rs"], "files": ["/srv/toolgate/shared/a", "/etc/passwd"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let preflight: Value = response.json().await.unwrap();
    let checks = preflight["checks"].as_array().unwrap();
    for check in checks {
        let kind = check["check"].as_str().unwrap();
        // Checks of the server itself, decided by no policy.
        if [
            "policy_set",
            "store",
            "sessions",
            "capacity",
            "disk",
            "events",
            "mode",
        ]
        .contains(&kind)
        {
            assert!(check.get("decision").is_none(), "{check}");
            continue;
        }
        let decision = &check["decision"];
        assert!(decision.is_object(), "one decision object: {check}");
        assert_eq!(decision["allowed"], check["ok"], "{check}");
        assert!(decision["policy_version"].is_string(), "{check}");
    }
    let file = checks.iter().find(|c| c["name"] == "/etc/passwd").unwrap();
    assert_eq!(file["ok"], false);
}

#[tokio::test]
async fn a_tasks_recorded_limits_are_those_in_force() {
    let server = Server::start().await;
    let key = server.key("zed", "developer");
    let session = server.session(&key).await;
    // Less than the policy's fuel, more than its memory: the tighter of each applies.
    let task: Value = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "fs.list", "input": {}, "limits": {"fuel": 5000000, "memory_mb": 100000}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["state"], "completed", "{task}");
    let decision = &task["decision"];
    assert_eq!(decision["limits"]["fuel"], 5000000, "{task}");
    assert_eq!(decision["limits"]["memory_mb"], 128, "{task}");
    assert_eq!(decision["limits"]["timeout_ms"], 10000, "{task}");
    assert_eq!(decision["policy_limits"]["fuel"], 1000000000u64, "{task}");
    assert_eq!(decision["capped"], json!(["memory_mb"]), "{task}");
    // The same on the event stream and in the stored decision the task points at.
    let id = task["id"].as_str().unwrap();
    let events = events_until(&server, &key, &session, |e| {
        e.name == "task.completed" && e.data["task"] == id
    })
    .await;
    let announced = events
        .iter()
        .find(|e| e.name == "policy.decision" && e.data["task"] == id)
        .unwrap();
    assert_eq!(announced.data["decision"]["limits"], decision["limits"]);
}

#[tokio::test]
async fn a_task_cancelled_while_queued_is_never_decided_or_started() {
    let server = Server::start_with(|config| config.max_running_tasks = 1).await;
    let key = server.key("abe", "developer");
    let session = server.session(&key).await;
    let tasks = format!("/v1/sessions/{session}/tasks");
    let busy: Value = server
        .post(&key, &tasks, json!({"tool": "hostile.spin", "wait": false}))
        .await
        .json()
        .await
        .unwrap();
    let busy = busy["id"].as_str().unwrap().to_owned();
    // Wait until the first task holds the only slot.
    let started = Instant::now();
    loop {
        let task: Value = server
            .get(&key, &format!("{tasks}/{busy}"))
            .await
            .json()
            .await
            .unwrap();
        if task["state"] == "running" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{task}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A tool of the plugin already loaded: loading another would wait for the slot too.
    let response = server
        .post(&key, &tasks, json!({"tool": "hostile.spin", "wait": false}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let queued: Value = response.json().await.unwrap();
    let queued = queued["id"].as_str().unwrap().to_owned();
    let response = server
        .post(&key, &format!("{tasks}/{queued}/cancel"), json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = server
        .post(&key, &format!("{tasks}/{busy}/cancel"), json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let mut ended = 0;
    let events = events_until(&server, &key, &session, |e| {
        if e.name == "task.failed" {
            ended += 1;
        }
        ended == 2
    })
    .await;
    assert_eq!(of_task(&events, &queued), ["task.queued", "task.failed"]);
    let failed = events
        .iter()
        .find(|e| e.name == "task.failed" && e.data["task"] == queued.as_str())
        .unwrap();
    assert_eq!(failed.data["state"], "cancelled");
    let record: Value = server
        .get(&key, &format!("{tasks}/{queued}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["state"], "cancelled", "{record}");
    assert!(record["decision"].is_null(), "{record}");
    assert!(record["started_at_ms"].is_null(), "{record}");
    // The busy one was decided, started and cancelled while running.
    assert_eq!(
        of_task(&events, &busy),
        [
            "task.queued",
            "policy.decision",
            "task.started",
            "task.failed"
        ]
    );
}
