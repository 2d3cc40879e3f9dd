//! The SSE gateway: ordering, replay without loss or duplicates, the end.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;

async fn run_task(server: &Server, key: &str, session: &str, path: &str) {
    let response = server
        .post(
            key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "fs.write", "input": {"path": path, "content": "x"}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

fn events_url(session: &str) -> String {
    format!("/v1/sessions/{session}/events")
}

#[tokio::test]
async fn a_sessions_life_as_events() {
    let server = Server::start().await;
    let key = server.key("alice", "developer");
    let session = server.session(&key).await;
    run_task(&server, &key, &session, "a.txt").await;

    let stream = server
        .get(&key, &format!("{}?after=0", events_url(&session)))
        .await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_events(stream, |e| e.name == "task.completed").await;
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "session.created",
            "policy.decision",
            "task.queued",
            "policy.decision",
            "task.started",
            "file.changed",
            "task.completed"
        ],
    );
    let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert_eq!(events[5].data["changes"]["created"], json!(["a.txt"]));

    // Closing ends the stream after session.closed; a reconnect gets 204.
    let stream = server
        .get(
            &key,
            &format!("{}?after={}", events_url(&session), ids.last().unwrap()),
        )
        .await;
    server
        .delete(&key, &format!("/v1/sessions/{session}"))
        .await;
    let rest = read_events(stream, |_| false).await;
    assert_eq!(rest.last().unwrap().name, "session.closed", "{rest:?}");
    let after = rest.last().unwrap().id.unwrap();
    let again = server
        .get(&key, &format!("{}?after={after}", events_url(&session)))
        .await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    server.stop().await;
}

#[tokio::test]
async fn file_changed_names_what_each_task_did_and_only_that() {
    let server = Server::start().await;
    let key = server.key("carol", "developer");
    let session = server.session(&key).await;
    let tasks = format!("/v1/sessions/{session}/tasks");
    let write = |path: &str, content: &str| json!({"tool": "fs.write", "input": {"path": path, "content": content, "create_dirs": true}});
    for body in [
        write("notes/a.txt", "first"),
        write("notes/a.txt", "second, longer"),
        json!({"tool": "fs.read", "input": {"path": "notes/a.txt"}}),
    ] {
        assert_eq!(
            server.post(&key, &tasks, body).await.status(),
            StatusCode::OK
        );
    }
    // Changed by someone else between tasks: not the next task's doing.
    let workspace = server.data_dir().join("workspaces").join(&session);
    std::fs::write(workspace.join("outside.txt"), "o").unwrap();
    let body = write("notes/b.txt", "b");
    assert_eq!(
        server.post(&key, &tasks, body).await.status(),
        StatusCode::OK
    );

    let mut completed = 0;
    let events = read_events(
        server
            .get(&key, &format!("{}?after=0", events_url(&session)))
            .await,
        |e| {
            completed += usize::from(e.name == "task.completed" || e.name == "task.failed");
            completed == 4
        },
    )
    .await;
    let ended: Vec<_> = events
        .iter()
        .filter(|e| {
            e.name.starts_with("task.") && e.name != "task.queued" && e.name != "task.started"
        })
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(ended, ["task.completed"; 4], "{events:?}");
    let changes: Vec<_> = events
        .iter()
        .filter(|e| e.name == "file.changed")
        .map(|e| e.data["changes"].clone())
        .collect();
    let none: [&str; 0] = [];
    assert_eq!(
        changes,
        [
            json!({"created": ["notes/a.txt"], "modified": none, "deleted": none}),
            json!({"created": none, "modified": ["notes/a.txt"], "deleted": none}),
            json!({"created": ["notes/b.txt"], "modified": none, "deleted": none}),
        ],
        "the read changed nothing"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_dropped_connection_resumes_without_loss_or_duplicates() {
    let server = Server::start().await;
    let key = server.key("bob", "developer");
    let session = server.session(&key).await;
    run_task(&server, &key, &session, "one.txt").await;

    let first = read_events(
        server
            .get(&key, &format!("{}?after=0", events_url(&session)))
            .await,
        |e| e.id == Some(3),
    )
    .await;
    let last = first.last().unwrap().id.unwrap();
    // While nobody listens, more happens.
    run_task(&server, &key, &session, "two.txt").await;
    run_task(&server, &key, &session, "three.txt").await;

    let resumed = server
        .client
        .get(server.url(&events_url(&session)))
        .bearer_auth(&key)
        .header("Last-Event-ID", last.to_string())
        .send()
        .await
        .unwrap();
    let mut completed = 0;
    let rest = read_events(resumed, |e| {
        completed += usize::from(e.name == "task.completed");
        completed == 3
    })
    .await;
    let mut ids: Vec<u64> = first.iter().chain(&rest).map(|e| e.id.unwrap()).collect();
    let total = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), total, "no duplicates");
    assert_eq!(ids, (1..=total as u64).collect::<Vec<_>>(), "no loss");
    server.stop().await;
}

#[tokio::test]
async fn live_events_reach_a_subscriber_while_tasks_run() {
    let server = Server::start().await;
    let key = server.key("carol", "developer");
    let session = server.session(&key).await;
    let stream = server.get(&key, &events_url(&session)).await;
    let reader = tokio::spawn(read_events(stream, |e| e.name == "task.completed"));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    run_task(&server, &key, &session, "live.txt").await;
    let events = reader.await.unwrap();
    // Subscribed without a cursor: only what happened after subscribing.
    assert_eq!(events.first().unwrap().name, "task.queued", "{events:?}");
    assert_eq!(events.last().unwrap().name, "task.completed");
    server.stop().await;
}

#[tokio::test]
async fn a_cursor_older_than_what_is_kept_gets_a_gap() {
    let server = Server::start_with(|c| {
        c.event_buffer = 4;
        c.event_retention = 4;
    })
    .await;
    let key = server.key("dave", "developer");
    let session = server.session(&key).await;
    run_task(&server, &key, &session, "a.txt").await;
    run_task(&server, &key, &session, "b.txt").await;
    server.app.store.flush().unwrap();
    let pruned = server.app.store.prune_events(4).unwrap(); // what the server's reaper does every few seconds
    let kept = server.app.store.events_after(&session, 0, 100).unwrap();
    assert_eq!(kept.len(), 4, "pruned {pruned}: {kept:?}");
    let last = server.app.orchestrator.hub().last_seq(&session);
    assert!(last > 8, "{last}");

    let stream = server
        .get(&key, &format!("{}?after=0", events_url(&session)))
        .await;
    let events = read_events(stream, |e| e.id == Some(last)).await;
    assert_eq!(events[0].name, "gap", "{events:?}");
    assert_eq!(
        events[0].id,
        Some(last - 4),
        "a reconnect resumes after the gap"
    );
    assert_eq!(events[0].data, json!({ "from": 1, "to": last - 4 }));
    let ids: Vec<u64> = events[1..].iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, ((last - 3)..=last).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_sessions_stream_ends_after_its_cancelled_tasks_ends() {
    let server = Server::start().await;
    let key = server.admin.clone();
    let session = server.session(&key).await;
    let live = server
        .get(&key, &format!("/v1/sessions/{session}/events"))
        .await;
    assert_eq!(live.status(), StatusCode::OK);
    let reader = tokio::spawn(read_events(live, |e| e.name == "session.closed"));
    let mut started = 0;
    for _ in 0..5 {
        let response = server
            .post(
                &key,
                &format!("/v1/sessions/{session}/tasks"),
                json!({"tool": "hostile.sleep", "input": {"ms": 20000}, "wait": false}),
            )
            .await;
        assert!(response.status().is_success());
        started += 1;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let deleted = server
        .delete(&key, &format!("/v1/sessions/{session}"))
        .await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let events = reader.await.unwrap();
    let ended = events.iter().filter(|e| e.name == "task.failed").count();
    assert_eq!(
        ended, started,
        "every cancelled task's end reaches a live subscriber before the close"
    );
    assert_eq!(events.last().unwrap().name, "session.closed");
}
