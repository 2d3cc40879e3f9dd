//! The server's own work on a workspace (the change scan behind `file.changed`, its inotify
//! watches, deletion when the session closes) stays inside the workspace while a tool swaps
//! its directories for links to outside, as fast as it can.

use crate::common::*;
use reqwest::StatusCode;
use rustix::fd::OwnedFd;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the tool races the server's walks.
const RACE_MS: u64 = 3000;

/// Sees any open, listing, read, change or deletion of the canary directory and its file.
fn watch_canary(canary: &Path) -> OwnedFd {
    use rustix::fs::inotify::{CreateFlags, WatchFlags, add_watch, init};
    let fd = init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).unwrap();
    add_watch(&fd, canary, WatchFlags::ALL_EVENTS).unwrap();
    add_watch(&fd, canary.join("secret.txt"), WatchFlags::ALL_EVENTS).unwrap();
    fd
}

/// The events the canary's watcher saw since the last call, as their flags.
fn canary_events(fd: &OwnedFd) -> Vec<String> {
    use rustix::fs::inotify::Reader;
    use std::mem::MaybeUninit;
    let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
    let mut reader = Reader::new(fd, &mut buffer);
    let mut events = Vec::new();
    while let Ok(event) = reader.next() {
        events.push(format!("{:?} {:?}", event.events(), event.file_name()));
    }
    events
}

/// Runs short tasks in `session` until `stop` is set; each is walked around (before, after).
async fn keep_tasking(
    server: &Server,
    key: &str,
    session: &str,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> usize {
    let mut tasks = 0;
    while !*stop.borrow() {
        let response = server
            .post(
                key,
                &format!("/v1/sessions/{session}/tasks"),
                json!({"tool": "hostile.sleep", "input": {"ms": 0}}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        tasks += 1;
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_swapping_directories_for_links_never_leads_the_host_outside() {
    let server = Server::start_with(|c| {
        c.rate_limit = 100_000;
        c.rate_burst = 100_000;
        c.event_buffer = 1 << 20;
        c.event_retention = 1 << 20;
    })
    .await;
    let key = server.key("mallory", "developer");
    let session = server.session(&key).await;
    let workspace = server.data_dir().join("workspaces").join(&session);
    // Beside the data directory: `workspaces/<id>/d` → `../../../canary`.
    let canary = server.data_dir().parent().unwrap().join("canary");
    std::fs::create_dir_all(canary.join("inner")).unwrap();
    std::fs::write(canary.join("secret.txt"), "kept").unwrap();
    // Enough entries that a walk takes a while between listing `d` and entering it.
    std::fs::create_dir_all(workspace.join("d/sub")).unwrap();
    for n in 0..200 {
        std::fs::write(workspace.join(format!("filler-{n}")), "f").unwrap();
    }
    // One task first, so the plugin is loaded before tasks race to use it.
    let warm = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "hostile.sleep", "input": {"ms": 0}}),
        )
        .await;
    assert_eq!(warm.json::<Value>().await.unwrap()["state"], "completed");
    let watched = watch_canary(&canary);
    let events = tokio::spawn(read_events(
        server
            .get(&key, &format!("/v1/sessions/{session}/events?after=0"))
            .await,
        |e| e.name == "session.closed",
    ));

    let swap = json!({"tool": "hostile.swap", "input": {"dir": "/workspace/d", "target": "../../../canary", "ms": RACE_MS}});
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let racer = async {
        let response = server
            .post(&key, &format!("/v1/sessions/{session}/tasks"), swap.clone())
            .await;
        let _ = stop.send(true);
        response.json::<Value>().await.unwrap()
    };
    let (raced, a, b, c) = tokio::join!(
        racer,
        keep_tasking(&server, &key, &session, &stopped),
        keep_tasking(&server, &key, &session, &stopped),
        keep_tasking(&server, &key, &session, &stopped),
    );
    assert_eq!(raced["state"], "completed", "{raced}");
    assert!(raced["output"]["swaps"].as_u64().unwrap() > 0, "{raced}");
    assert!(a + b + c > 0);

    // Closed while a second race runs: the deletion meets the links too.
    let mut swap = swap;
    swap["wait"] = json!(false);
    swap["input"]["ms"] = json!(10_000);
    // A directory of its own: the first race left `d` a link.
    swap["input"]["dir"] = json!("/workspace/e");
    let queued = server
        .post(&key, &format!("/v1/sessions/{session}/tasks"), swap)
        .await;
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    let task = queued.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now: Value = server
            .get(&key, &format!("/v1/sessions/{session}/tasks/{task}"))
            .await
            .json()
            .await
            .unwrap();
        if now["state"] == "running" {
            break;
        }
        assert_eq!(now["state"], "queued", "{now}");
        assert!(Instant::now() < deadline, "the second race never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let closed = server
        .delete(&key, &format!("/v1/sessions/{session}"))
        .await;
    assert_eq!(closed.status(), StatusCode::OK);
    assert!(!workspace.exists(), "the workspace is deleted");

    let events = events.await.unwrap();
    let changed: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "file.changed")
        .map(|e| &e.data["changes"])
        .collect();
    assert!(!changed.is_empty(), "the swaps were seen as changes");
    for changes in &changed {
        let text = changes.to_string();
        assert!(
            !text.contains("secret.txt") && !text.contains("inner"),
            "an entry of the outside directory was reported: {text}"
        );
    }
    assert!(
        events.iter().all(|e| e.name != "gap"),
        "every event was read"
    );
    assert_eq!(
        canary_events(&watched),
        Vec::<String>::new(),
        "nothing outside the workspace was opened, listed, read or changed"
    );
    assert_eq!(
        std::fs::read_to_string(canary.join("secret.txt")).unwrap(),
        "kept"
    );
    assert!(canary.join("inner").is_dir());
    server.stop().await;
}
