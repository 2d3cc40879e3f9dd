//! Kill the binary mid-task, start it again: nothing is lost, the cut task is
//! `interrupted`, and an SSE client resumes from its last id.

use crate::common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn start(
    data: &std::path::Path,
    policies: &std::path::Path,
    plugins: &std::path::Path,
) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .arg("--policies")
        .arg(policies)
        .arg("--plugins")
        .arg(plugins)
        .env("TOOLGATE_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start toolgate serve");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        if let Some(url) = line.strip_prefix("toolgate listening on ") {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

/// `GET url` as `key`, the answer as JSON.
async fn get_json(client: &reqwest::Client, key: &str, url: String) -> Value {
    let response = client.get(url).bearer_auth(key).send().await.unwrap();
    response.json().await.unwrap()
}

/// `POST url` with `body` as `key`, the answer as JSON.
async fn post_json(client: &reqwest::Client, key: &str, url: String, body: Value) -> Value {
    let response = client
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

#[tokio::test]
async fn kill_9_mid_task_then_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policies = test_policies(dir.path());
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(artifact("hostile"), plugins.join("hostile.wasm")).unwrap();
    let client = reqwest::Client::new();

    let (mut child, base) = start(&data, &policies, &plugins);
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    let session = post_json(&client, &key, format!("{base}/v1/sessions"), json!({})).await;
    let session = session["id"].as_str().unwrap().to_owned();
    // A plugin uploaded before the crash is there after it.
    let uploaded = client
        .put(format!("{base}/v1/plugins/echo2"))
        .bearer_auth(&key)
        .header("content-type", "application/wasm")
        .body(std::fs::read(artifact("echo")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), reqwest::StatusCode::CREATED);
    let tasks = format!("{base}/v1/sessions/{session}/tasks");
    let write = json!({"tool": "fs.write", "input": {"path": "kept.txt", "content": "kept"}});
    let done = post_json(&client, &key, tasks.clone(), write).await;
    assert_eq!(done["state"], "completed");
    let sleep = json!({"tool": "hostile.sleep", "input": {"ms": 60000}, "wait": false});
    let cut = post_json(&client, &key, tasks, sleep).await;
    let cut_id = cut["id"].as_str().unwrap().to_owned();
    // Read the stream up to the cut task's start: the client's last id.
    let stream = client
        .get(format!("{base}/v1/sessions/{session}/events?after=0"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let seen = read_events(stream, |e| {
        e.name == "task.started" && e.data["task"] == cut_id.as_str()
    })
    .await;
    let last_id = seen.last().unwrap().id.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // let the batched writes land

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (mut child, base) = start(&data, &policies, &plugins);
    let task = get_json(
        &client,
        &key,
        format!("{base}/v1/sessions/{session}/tasks/{cut_id}"),
    )
    .await;
    assert_eq!(task["state"], "interrupted", "{task}");
    let done_id = done["id"].as_str().unwrap();
    let kept = get_json(
        &client,
        &key,
        format!("{base}/v1/sessions/{session}/tasks/{done_id}"),
    )
    .await;
    assert_eq!(kept["state"], "completed");
    let view = get_json(&client, &key, format!("{base}/v1/sessions/{session}")).await;
    assert_eq!(view["state"], "open");
    let plugins = get_json(&client, &key, format!("{base}/v1/plugins")).await;
    let echo2 = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "echo2");
    assert_eq!(
        echo2.unwrap()["tools"],
        json!(["echo2.echo", "echo2.fail"]),
        "{plugins}"
    );

    // The SSE client resumes from its last id: the interruption, nothing repeated.
    let resumed = client
        .get(format!("{base}/v1/sessions/{session}/events"))
        .bearer_auth(&key)
        .header("Last-Event-ID", last_id.to_string())
        .send()
        .await
        .unwrap();
    let rest = read_events(resumed, |e| e.name == "task.failed").await;
    assert_eq!(rest.first().unwrap().id, Some(last_id + 1), "{rest:?}");
    assert_eq!(rest.last().unwrap().data["state"], "interrupted");
    child.kill().unwrap();
    child.wait().unwrap();
}
