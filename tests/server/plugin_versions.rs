//! Uploads taken back: `DELETE /v1/plugins/{name}` brings back the bundled or `--plugins`
//! plugin an upload replaced, and the upload an upload replaced (or a delete removed) is kept
//! for `POST /v1/plugins/{name}/rollback`.

use crate::common::*;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

async fn upload(server: &Server, name: &str, bytes: Vec<u8>) -> Response {
    server
        .client
        .put(server.url(&format!("/v1/plugins/{name}")))
        .bearer_auth(&server.admin)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

async fn rollback(server: &Server, key: &str, name: &str) -> Response {
    server
        .client
        .post(server.url(&format!("/v1/plugins/{name}/rollback")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// The digest of the plugin in force called `name`, as `GET /v1/plugins` lists it.
async fn digest(server: &Server, name: &str) -> Option<String> {
    let listed: Value = server
        .get(&server.admin, "/v1/plugins")
        .await
        .json()
        .await
        .unwrap();
    listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["digest"].as_str().unwrap().to_owned())
}

/// The same component with a custom section appended: other bytes, so another digest.
fn with_custom_section(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.extend_from_slice(&[0, 5, 4, b'n', b'o', b't', b'e']);
    bytes
}

#[tokio::test]
async fn deleting_an_upload_brings_back_the_plugin_it_replaced_and_a_rollback_undoes_it() {
    let server = Server::start().await;
    let admin = server.admin.clone();
    let echo = std::fs::read(artifact("echo")).unwrap();
    let bundled_json = digest(&server, "json").await.unwrap();
    let directory_hostile = digest(&server, "hostile").await.unwrap();

    // Uploads replace the bundled `json` and the `--plugins` directory's `hostile`.
    for name in ["json", "hostile"] {
        let replaced = upload(&server, name, echo.clone()).await;
        assert_eq!(replaced.status(), StatusCode::OK);
    }
    let uploaded = digest(&server, "json").await.unwrap();
    assert_ne!(uploaded, bundled_json);

    // Only admins delete.
    let user = server.key("ursula", "developer");
    problem(
        server.delete(&user, "/v1/plugins/json").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // Deleted: the bundled plugin is back for the next task, and so is the directory's.
    let deleted = server.delete(&admin, "/v1/plugins/json").await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(
        deleted,
        json!({"name": "json", "restored": "bundled", "rollback_available": true})
    );
    assert_eq!(digest(&server, "json").await.unwrap(), bundled_json);
    let session = server.session(&user).await;
    let task: Value = server
        .post(
            &user,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "json.query", "input": {"document": {"a": 1}, "query": "$.a"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["state"], "completed", "{task}");
    let deleted: Value = server
        .delete(&admin, "/v1/plugins/hostile")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["restored"], "directory");
    assert_eq!(digest(&server, "hostile").await.unwrap(), directory_hostile);

    // What is not an upload cannot be deleted; what does not exist is not found.
    for name in ["json", "fs", "hostile"] {
        let refused = server.delete(&admin, &format!("/v1/plugins/{name}")).await;
        problem(refused, StatusCode::CONFLICT, "plugin_not_uploaded").await;
    }
    problem(
        server.delete(&admin, "/v1/plugins/nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // The deleted upload was kept: a rollback installs it again, and then nothing is kept.
    problem(
        rollback(&server, &user, "json").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let restored = rollback(&server, &admin, "json").await;
    assert_eq!(restored.status(), StatusCode::OK);
    let restored: Value = restored.json().await.unwrap();
    assert_eq!(restored["digest"], uploaded.as_str(), "{restored}");
    assert_eq!(digest(&server, "json").await.unwrap(), uploaded);
    problem(
        rollback(&server, &admin, "json").await,
        StatusCode::CONFLICT,
        "no_previous_version",
    )
    .await;
    // An upload that never replaced another has nothing to roll back to either.
    assert_eq!(
        upload(&server, "fresh", echo.clone()).await.status(),
        StatusCode::CREATED
    );
    problem(
        rollback(&server, &admin, "fresh").await,
        StatusCode::CONFLICT,
        "no_previous_version",
    )
    .await;
    // Deleting a plugin that only an upload had makes the name go away.
    let gone: Value = server
        .delete(&admin, "/v1/plugins/fresh")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(gone["restored"], Value::Null);
    assert_eq!(digest(&server, "fresh").await, None);
    server.stop().await;
}

#[tokio::test]
async fn an_upload_replaced_by_another_is_kept_for_a_rollback_across_restarts() {
    let server = Server::start().await;
    let first = std::fs::read(artifact("echo")).unwrap();
    let second = with_custom_section(first.clone());
    assert_eq!(
        upload(&server, "tool", first).await.status(),
        StatusCode::CREATED
    );
    let first_digest = digest(&server, "tool").await.unwrap();
    assert_eq!(
        upload(&server, "tool", second).await.status(),
        StatusCode::OK
    );
    let second_digest = digest(&server, "tool").await.unwrap();
    assert_ne!(first_digest, second_digest);

    // A rollback swaps the two; a second one swaps them back.
    let back: Value = rollback(&server, &server.admin, "tool")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["digest"], first_digest.as_str(), "{back}");
    assert_eq!(digest(&server, "tool").await.unwrap(), first_digest);
    let forth: Value = rollback(&server, &server.admin, "tool")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(forth["digest"], second_digest.as_str(), "{forth}");

    // Both are on disk: a restart keeps the one in force and the one kept.
    let server = server.restart().await;
    assert_eq!(digest(&server, "tool").await.unwrap(), second_digest);
    let back: Value = rollback(&server, &server.admin, "tool")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["digest"], first_digest.as_str(), "{back}");
    assert_eq!(digest(&server, "tool").await.unwrap(), first_digest);
    server.stop().await;
}
