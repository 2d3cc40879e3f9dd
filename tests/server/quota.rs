//! Disk quotas: a session's `disk_mb` holds for everything its tools write in the
//! workspace, whatever way they write, across concurrent tasks and restarts.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;

const MIB: u64 = 1 << 20;

/// A session asking for `disk_mb` of disk.
async fn session_with_disk(server: &Server, key: &str, disk_mb: u64) -> String {
    let response = server
        .post(
            key,
            "/v1/sessions",
            json!({"resources": {"cpu_millis": 1000, "memory_mb": 256, "disk_mb": disk_mb, "timeout_ms": 60000}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let session: Value = response.json().await.unwrap();
    assert_eq!(session["disk"]["quota_bytes"], disk_mb * MIB, "{session}");
    session["id"].as_str().unwrap().to_owned()
}

async fn fill(server: &Server, key: &str, session: &str, input: Value) -> Value {
    let response = server
        .post(
            key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "hostile.fill", "input": input}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let task: Value = response.json().await.unwrap();
    assert_eq!(task["state"], "completed", "{task}");
    task["output"].clone()
}

/// A fill that must finish without being refused.
async fn fill_ok(server: &Server, key: &str, session: &str, input: Value) {
    let output = fill(server, key, session, input).await;
    assert_eq!(output["error"], Value::Null, "{output}");
}

async fn disk(server: &Server, key: &str, session: &str) -> (u64, u64) {
    let view: Value = server
        .get(key, &format!("/v1/sessions/{session}"))
        .await
        .json()
        .await
        .unwrap();
    (
        view["disk"]["used_bytes"].as_u64().unwrap(),
        view["disk"]["quota_bytes"].as_u64().unwrap(),
    )
}

/// What the workspace really holds: file bytes, and entries of any kind.
fn on_disk(root: &Path) -> (u64, u64) {
    let (mut bytes, mut entries) = (0, 0);
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            entries += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                bytes += meta.len();
            }
        }
    }
    (bytes, entries)
}

fn workspace(server: &Server, session: &str) -> std::path::PathBuf {
    server.data_dir().join("workspaces").join(session)
}

/// Whether the quota stopped the fill: `insufficient-space` from WASI (std shows it as
/// `StorageFull`), or, for std writes through an output stream, the bare EIO that
/// wasi-libc makes of every failed stream write.
fn refused(output: &Value) -> bool {
    let kind = output["error"]["kind"].as_str();
    let message = output["error"]["message"].as_str().unwrap_or_default();
    matches!(kind, Some("StorageFull" | "insufficient-space"))
        || (kind == Some("Uncategorized") && message.contains("os error 29"))
}

#[tokio::test]
async fn every_way_of_growing_a_workspace_stops_at_the_quota() {
    let server = Server::start().await;
    let key = server.key("dev", "developer");
    // Each fill tries to write 3 MiB (or 3000 entries) into a 1 MiB quota.
    let attempts = [
        json!({"how": "std", "bytes": 3 * MIB}),
        json!({"how": "write", "bytes": 3 * MIB}),
        json!({"how": "stream", "bytes": 3 * MIB}),
        json!({"how": "append", "bytes": 3 * MIB}),
        json!({"how": "extend", "bytes": 3 * MIB}),
        json!({"how": "seek", "bytes": 3 * MIB}),
        json!({"how": "files", "bytes": 0, "count": 3000}),
        json!({"how": "files", "bytes": 10_000, "count": 3000}),
        json!({"how": "dirs", "count": 3000}),
        json!({"how": "links", "count": 3000}),
        json!({"how": "race", "count": 200}),
    ];
    for attempt in attempts {
        let session = session_with_disk(&server, &key, 1).await;
        let output = fill(&server, &key, &session, attempt.clone()).await;
        assert!(refused(&output), "{attempt}: {output}");
        let (used, quota) = disk(&server, &key, &session).await;
        assert!(used <= quota, "{attempt}: {used} of {quota}");
        let (bytes, entries) = on_disk(&workspace(&server, &session));
        assert!(bytes <= quota, "{attempt}: {bytes} bytes on disk");
        assert!(entries <= quota / 4096, "{attempt}: {entries} entries");
        // A refused write wrote nothing: what is there is what was reported done.
        if ["files", "dirs", "links", "race"].contains(&attempt["how"].as_str().unwrap()) {
            assert!(output["done"].as_u64().unwrap() <= 256, "{output}");
        } else {
            assert!(output["done"].as_u64().unwrap() <= MIB, "{output}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn space_given_back_can_be_used_again() {
    let server = Server::start().await;
    let key = server.key("dev", "developer");
    let session = session_with_disk(&server, &key, 1).await;
    fill_ok(
        &server,
        &key,
        &session,
        json!({"how": "std", "path": "big", "bytes": 900 * 1024}),
    )
    .await;
    let (used, _) = disk(&server, &key, &session).await;
    assert!(used >= 900 * 1024, "{used}");
    // Truncating the file to nothing gives its blocks back.
    fill_ok(
        &server,
        &key,
        &session,
        json!({"how": "extend", "path": "big", "bytes": 0}),
    )
    .await;
    let (used, _) = disk(&server, &key, &session).await;
    assert!(used < 64 * 1024, "{used}");
    fill_ok(
        &server,
        &key,
        &session,
        json!({"how": "std", "path": "again", "bytes": 900 * 1024}),
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn concurrent_tasks_of_a_session_share_its_quota() {
    let server = Server::start().await;
    let key = server.key("dev", "developer");
    let session = session_with_disk(&server, &key, 2).await;
    let tasks = (0..6).map(|i| {
        fill(
            &server,
            &key,
            &session,
            json!({"how": "std", "path": format!("part-{i}"), "bytes": MIB}),
        )
    });
    let outputs = futures_util::future::join_all(tasks).await;
    let refusals = outputs.iter().filter(|o| refused(o)).count();
    assert!(refusals >= 4, "six 1 MiB writes into 2 MiB: {outputs:?}");
    let (used, quota) = disk(&server, &key, &session).await;
    assert!(used <= quota);
    let (bytes, _) = on_disk(&workspace(&server, &session));
    assert!(bytes <= quota, "{bytes} bytes on disk");
    server.stop().await;
}

#[tokio::test]
async fn usage_survives_a_restart() {
    let server = Server::start().await;
    let key = server.key("dev", "developer");
    let session = session_with_disk(&server, &key, 1).await;
    fill_ok(
        &server,
        &key,
        &session,
        json!({"how": "std", "path": "kept", "bytes": 700 * 1024}),
    )
    .await;
    let (before, _) = disk(&server, &key, &session).await;

    let server = server.restart().await;
    let (after, quota) = disk(&server, &key, &session).await;
    assert_eq!(after, before, "usage rebuilt from the workspace");
    assert_eq!(quota, MIB);
    let output = fill(
        &server,
        &key,
        &session,
        json!({"how": "std", "path": "more", "bytes": 700 * 1024}),
    )
    .await;
    assert!(refused(&output), "{output}");
    server.stop().await;
}

fn disk_check(preflight: &Value) -> Value {
    preflight["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "disk")
        .expect("a disk check")
        .clone()
}

#[tokio::test]
async fn preflight_shows_the_disk_a_session_would_get() {
    let server = Server::start().await;
    let key = server.key("dev", "developer");
    let response = server
        .post(
            &key,
            "/v1/preflight",
            json!({"resources": {"cpu_millis": 1000, "memory_mb": 256, "disk_mb": 64, "timeout_ms": 60000}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let preflight: Value = response.json().await.unwrap();
    let check = disk_check(&preflight);
    assert_eq!(check["ok"], true, "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("quota {} bytes", 64 * MIB)),
        "{detail}"
    );
    // Figures of the host are for admins.
    assert!(!detail.contains("free"), "{detail}");
    let admin: Value = server
        .post(&server.admin, "/v1/preflight", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let admin_check = disk_check(&admin);
    assert!(
        admin_check["detail"]
            .as_str()
            .unwrap()
            .contains("bytes free"),
        "{admin_check}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_refused_write_is_announced_to_the_session() {
    let server = Server::start().await;
    let key = server.key("dev", "developer");
    let session = session_with_disk(&server, &key, 1).await;
    let output = fill(
        &server,
        &key,
        &session,
        json!({"how": "std", "bytes": 2 * MIB}),
    )
    .await;
    assert!(refused(&output), "{output}");
    let events = server
        .get(&key, &format!("/v1/sessions/{session}/events?after=0"))
        .await;
    let events = read_events(events, |e| e.name == "task.completed").await;
    let warnings: Vec<&SseEvent> = events
        .iter()
        .filter(|e| e.name == "tool.log" && e.data["level"] == "warn")
        .collect();
    assert_eq!(warnings.len(), 1, "{events:?}");
    let message = warnings[0].data["message"].as_str().unwrap();
    assert!(message.contains("disk quota exceeded"), "{message}");
    assert!(message.contains("insufficient-space"), "{message}");
    server.stop().await;
}
