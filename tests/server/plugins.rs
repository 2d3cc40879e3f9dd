//! Plugins through the server: a hostile plugin's load is bounded and never stops the server
//! answering; a broken plugin shows callers its name and a stable code, never a host path.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// Generous: these are bounds on a hang, not expectations of speed.
const ANSWERED_WITHIN: Duration = Duration::from_secs(60);

/// `request`'s answer, or a failure saying `what` hung while plugins were loading.
async fn within<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(ANSWERED_WITHIN, request)
        .await
        .unwrap_or_else(|_| panic!("{what} is not answered while plugins load"))
}

async fn upload(server: &Server, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    server
        .send(
            server
                .client
                .put(server.url(&format!("/v1/plugins/{name}")))
                .bearer_auth(&server.admin)
                .header("content-type", "application/wasm")
                .body(bytes),
        )
        .await
}

/// The same component with a custom section appended: other bytes, so another digest.
fn with_custom_section(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.extend_from_slice(&[0, 5, 4, b'n', b'o', b't', b'e']);
    bytes
}

#[tokio::test]
async fn a_plugin_describing_too_many_tools_is_refused_while_the_server_keeps_answering() {
    let server = Server::start().await;
    let key = server.key("alice", "developer");
    let session = server.session(&key).await;
    let many = std::fs::read(artifact("many_tools")).unwrap();
    let tasks = format!("/v1/sessions/{session}/tasks");

    // Two uploads of a component describing 400,000 tools and, while they are in flight,
    // the health check and another caller's task: everything is answered.
    let (first, second, livez, task) = tokio::join!(
        within("an upload", upload(&server, "many", many.clone())),
        within("an upload", upload(&server, "many", many.clone())),
        within("/livez", async {
            server
                .client
                .get(server.url("/livez"))
                .send()
                .await
                .unwrap()
        }),
        within(
            "a task",
            server.post(
                &key,
                &tasks,
                json!({"tool": "fs.write", "input": {"path": "a.txt", "content": "hi"}}),
            )
        ),
    );
    assert_eq!(livez.status(), StatusCode::OK);
    let task: Value = task.json().await.unwrap();
    assert_eq!(task["state"], "completed", "{task}");

    // Each upload is refused, naming the bound it crossed.
    for response in [first, second] {
        let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin").await;
        assert_eq!(body["reason"], "too_many_tools", "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("400000 tools") && detail.contains("at most 256 tools"),
            "{detail}"
        );
    }
    assert!(!server.data_dir().join("plugins/many.wasm").exists());

    // The failure is remembered by digest: the same bytes are refused without a new load,
    // other bytes are a new try.
    let catalog = server.app.orchestrator.catalog().clone();
    let attempts = catalog.load_attempts();
    let again = upload(&server, "many", many.clone()).await;
    let body = problem(again, StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin").await;
    assert_eq!(body["reason"], "too_many_tools", "{body}");
    assert_eq!(catalog.load_attempts(), attempts, "not loaded again");
    let changed = upload(&server, "many", with_custom_section(many)).await;
    problem(changed, StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin").await;
    assert_eq!(
        catalog.load_attempts(),
        attempts + 1,
        "other bytes are loaded"
    );

    // And the server still installs a good plugin afterwards.
    let echo = upload(&server, "echo", std::fs::read(artifact("echo")).unwrap()).await;
    assert_eq!(echo.status(), StatusCode::CREATED);
    server.stop().await;
}

#[tokio::test]
async fn callers_who_are_not_admins_never_see_host_paths() {
    let mut plugins_dir = PathBuf::new();
    let server = Server::start_with(|config| {
        plugins_dir = config
            .plugins
            .clone()
            .expect("the test server has a plugins dir");
        // A core module (magic and version, no component layer): not a component.
        std::fs::write(plugins_dir.join("broken.wasm"), b"\0asm\x01\0\0\0").unwrap();
    })
    .await;
    let dir = plugins_dir.display().to_string();
    let temp_name = plugins_dir
        .parent()
        .and_then(|p| p.file_name())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let leaks = |what: &str, text: &str| {
        for secret in [dir.as_str(), temp_name.as_str(), "broken.wasm"] {
            assert!(!text.contains(secret), "{what} shows `{secret}`: {text}");
        }
    };

    // A task on the broken plugin fails with its name and code, in the answer and the events.
    let key = server.key("bob", "developer");
    let session = server.session(&key).await;
    let task = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "broken.run", "input": {}}),
        )
        .await;
    assert_eq!(task.status(), StatusCode::OK);
    let task: Value = task.json().await.unwrap();
    assert_eq!(task["state"], "failed", "{task}");
    let message = task["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("plugin `broken`") && message.contains("core_module"),
        "{message}"
    );
    leaks("the task", &task.to_string());
    let events = server
        .client
        .get(server.url(&format!("/v1/sessions/{session}/events?after=0")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let events = read_events(events, |e| e.name == "task.failed").await;
    assert!(events.iter().any(|e| e.name == "task.failed"));
    for event in &events {
        leaks("an event", &event.data.to_string());
    }

    // Preflight, the server's info, the plugin list: names and codes only.
    let preflight = server
        .post(&key, "/v1/preflight", json!({"tools": ["broken.run"]}))
        .await;
    leaks("preflight", &preflight.text().await.unwrap());
    let info = server.get(&key, "/v1/info").await.text().await.unwrap();
    leaks("the info", &info);
    let broken = |plugins: &Value| -> Value {
        plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "broken")
            .cloned()
            .unwrap_or_else(|| panic!("no broken plugin in {plugins}"))
    };
    let listed: Value = server.get(&key, "/v1/plugins").await.json().await.unwrap();
    leaks("the plugin list", &listed.to_string());
    let entry = broken(&listed);
    assert_eq!(entry["error_code"], "core_module", "{entry}");
    assert!(entry.get("error_detail").is_none(), "{entry}");

    // An admin sees where the files are and what is wrong with them.
    let info: Value = server
        .get(&server.admin, "/v1/info")
        .await
        .json()
        .await
        .unwrap();
    let origin = info["policy"]["origin"].as_str().unwrap();
    assert!(origin.contains(&temp_name), "{info}");
    let listed: Value = server
        .get(&server.admin, "/v1/plugins")
        .await
        .json()
        .await
        .unwrap();
    let entry = broken(&listed);
    let detail = entry["error_detail"].as_str().unwrap();
    assert!(
        detail.contains(&dir) && detail.contains("core WebAssembly module"),
        "{entry}"
    );
    server.stop().await;
}
