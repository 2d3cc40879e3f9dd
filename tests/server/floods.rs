//! Every event a task causes counts against its budget: floods of empty log records,
//! progress reports and refused requests fail the task `output_too_large` at the record
//! cap or the byte budget, and the events made until then are kept. A session's stored
//! events are bounded by `event_retention`, the oldest pruned by the server itself.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The engine's default cap on a task's host records, and its default log budget.
const RECORD_CAP: u64 = 10_000;
const LOG_BYTES: u64 = 1 << 20;

async fn run_hostile(server: &Server, key: &str, session: &str, tool: &str, input: Value) -> Value {
    let response = server
        .post(
            key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": format!("hostile.{tool}"), "input": input}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Every stored event of the session, oldest first.
fn stored(server: &Server, session: &str) -> Vec<toolgate::store::StoredEvent> {
    server.app.store.flush().unwrap();
    server
        .app
        .store
        .events_after(session, 0, usize::MAX)
        .unwrap()
}

fn count(events: &[toolgate::store::StoredEvent], name: &str) -> u64 {
    events.iter().filter(|e| e.name == name).count() as u64
}

/// Replays the session's events over SSE from the start up to the task's end.
async fn replay(server: &Server, key: &str, session: &str) -> Vec<SseEvent> {
    let stream = server
        .get(key, &format!("/v1/sessions/{session}/events?after=0"))
        .await;
    assert_eq!(stream.status(), StatusCode::OK);
    read_events(stream, |e| {
        e.name.starts_with("task.") && e.name != "task.queued" && e.name != "task.started"
    })
    .await
}

#[tokio::test]
async fn a_million_empty_log_records_stop_at_the_record_cap_and_are_kept() {
    let server = Server::start().await;
    let key = server.key("fay", "developer");
    let session = server.session(&key).await;
    let task = run_hostile(
        &server,
        &key,
        &session,
        "log_empty",
        json!({"count": 1_000_000}),
    )
    .await;
    assert_eq!(task["state"], "failed", "{task}");
    assert_eq!(task["error"]["kind"], "output_too_large", "{task}");
    assert_eq!(task["error"]["limit_records"], RECORD_CAP, "{task}");
    assert_eq!(task["error"]["what"], "log output");

    // Every record made before the cap is stored, and nothing past it.
    let events = stored(&server, &session);
    assert_eq!(count(&events, "tool.log"), RECORD_CAP);
    assert!(events.len() as u64 <= RECORD_CAP + 10, "{}", events.len());
    assert_eq!(events.last().unwrap().name, "task.failed");

    // A client replaying the session sees them all, in order, before the failure.
    let replayed = replay(&server, &key, &session).await;
    assert_eq!(replayed.first().unwrap().name, "session.created");
    assert_eq!(
        replayed.iter().filter(|e| e.name == "tool.log").count() as u64,
        RECORD_CAP
    );
    let last = replayed.last().unwrap();
    assert_eq!(last.name, "task.failed");
    assert_eq!(
        last.data["error"]["kind"], "output_too_large",
        "{:?}",
        last.data
    );
    server.stop().await;
}

#[tokio::test]
async fn progress_reports_cost_a_record_each_and_their_bytes() {
    let server = Server::start().await;
    let key = server.key("gil", "developer");
    let session = server.session(&key).await;

    // Empty reports: the record cap.
    let task = run_hostile(
        &server,
        &key,
        &session,
        "progress_flood",
        json!({"count": 1_000_000}),
    )
    .await;
    assert_eq!(task["error"]["kind"], "output_too_large", "{task}");
    assert_eq!(task["error"]["limit_records"], RECORD_CAP, "{task}");
    let empty = count(&stored(&server, &session), "tool.progress");
    assert_eq!(empty, RECORD_CAP);

    // Reports with a message: the byte budget, each costing its message and a fixed amount.
    let task = run_hostile(
        &server,
        &key,
        &session,
        "progress_flood",
        json!({"count": 1_000_000, "message_bytes": 200}),
    )
    .await;
    assert_eq!(task["error"]["kind"], "output_too_large", "{task}");
    assert_eq!(task["error"]["limit_bytes"], LOG_BYTES, "{task}");
    let with_message = count(&stored(&server, &session), "tool.progress") - empty;
    assert!(with_message > 0);
    assert!(with_message * (200 + 64) <= LOG_BYTES, "{with_message}");
    server.stop().await;
}

#[tokio::test]
async fn a_task_that_ignores_refused_requests_is_stopped_by_its_budget() {
    let server = Server::start().await;
    let key = server.key("hal", "developer");
    let session = server.session(&key).await;
    // Each request is a `connect` decision (denied, and announced as an event); the tool
    // ignores every refusal and would go on for a million of them.
    let task = run_hostile(
        &server,
        &key,
        &session,
        "fetch_flood",
        json!({"count": 1_000_000}),
    )
    .await;
    assert_eq!(task["state"], "failed", "{task}");
    assert_eq!(task["error"]["kind"], "output_too_large", "{task}");
    // A decision carries its request (about 100 bytes here): the byte budget runs out first.
    assert_eq!(task["error"]["limit_bytes"], LOG_BYTES, "{task}");
    let events = stored(&server, &session);
    let connects = events
        .iter()
        .filter(|e| e.name == "policy.decision" && e.data.contains("\"connect\""))
        .count() as u64;
    assert!(connects > 1000, "{connects}");
    assert!(connects * 100 <= LOG_BYTES, "{connects}");
    assert!(events.len() as u64 <= connects + 10, "{}", events.len());
    server.stop().await;
}

#[tokio::test]
async fn the_server_prunes_a_sessions_oldest_events_past_event_retention() {
    const RETENTION: u64 = 300;
    let server = Server::start_with(|c| {
        c.event_buffer = 16;
        c.event_retention = RETENTION;
        c.reap_interval = Duration::from_millis(50);
    })
    .await;
    let key = server.key("ivy", "developer");
    let session = server.session(&key).await;
    let task = run_hostile(&server, &key, &session, "log_empty", json!({"count": 2000})).await;
    assert_eq!(task["state"], "completed", "{task}");
    let last = server.app.orchestrator.hub().last_seq(&session);
    assert!(last > 2000, "{last}");

    // Nobody but the server's own reaper prunes here.
    let deadline = Instant::now() + Duration::from_secs(30);
    let kept = loop {
        let kept = stored(&server, &session);
        if kept.len() as u64 <= RETENTION || Instant::now() > deadline {
            break kept;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kept.len() as u64, RETENTION);
    assert_eq!(kept.first().unwrap().seq, last - RETENTION + 1);
    assert_eq!(kept.last().unwrap().seq, last);

    // A replay from the start is told what was pruned, then gets what is kept.
    let replayed = replay(&server, &key, &session).await;
    assert_eq!(replayed[0].name, "gap", "{:?}", &replayed[..2]);
    assert_eq!(replayed[0].data, json!({"from": 1, "to": last - RETENTION}));
    assert_eq!(replayed.len() as u64, RETENTION + 1);
    assert_eq!(replayed.last().unwrap().name, "task.completed");
    assert_eq!(replayed.last().unwrap().id, Some(last));
    server.stop().await;
}

#[tokio::test]
async fn thousands_of_long_names_make_a_bounded_change_event() {
    let server = Server::start().await;
    let key = server.key("dev", "developer");
    let session = server.session(&key).await;
    let name = "n".repeat(200);
    let response = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "hostile.fill", "input": {"how": "files", "path": name, "count": 3000}}),
        )
        .await;
    let task: serde_json::Value = response.json().await.unwrap();
    assert_eq!(task["state"], "completed", "{task}");
    let events = server
        .get(&key, &format!("/v1/sessions/{session}/events?after=0"))
        .await;
    let events = read_events(events, |e| e.name == "task.completed").await;
    let changed = events
        .iter()
        .find(|e| e.name == "file.changed")
        .expect("a file.changed event");
    let size = changed.data.to_string().len();
    assert!(size < 100 << 10, "file.changed is {size} bytes");
    let changes = &changed.data["changes"];
    let listed = changes["created"].as_array().unwrap().len() as u64;
    assert!(listed > 0);
    assert_eq!(
        listed + changes["omitted"].as_u64().unwrap(),
        3000,
        "{changes}"
    );
    server.stop().await;
}
