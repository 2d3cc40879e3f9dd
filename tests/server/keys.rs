//! Keys: listed without secrets, created and revoked by admins over the API and with
//! `toolgate keys` next to a running server. A revoked key is refused from its next request
//! on and its open event streams end.

use crate::common::*;
use futures_util::StreamExt;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// Generous: a bound on a hang, not an expectation of speed.
const STREAM_ENDS_WITHIN: Duration = Duration::from_secs(30);

fn toolgate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(args)
        .env_remove("TOOLGATE_DATA_DIR")
        .output()
        .unwrap()
}

/// An event stream of `session` as `key`, from its first event.
async fn open_stream(server: &Server, key: &str, session: &str) -> Response {
    let response = server
        .get(key, &format!("/v1/sessions/{session}/events?after=0"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response
}

/// Reads the stream until `name` arrives, then hands it back still open.
async fn read_until(response: Response, name: &str) -> impl futures_util::Stream {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let needle = format!("event: {name}");
    while !text.contains(&needle) {
        let chunk = tokio::time::timeout(STREAM_ENDS_WITHIN, body.next())
            .await
            .expect("the backlog arrives")
            .expect("the stream is open")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    body
}

/// Whether a stream already read from ends within the bound.
async fn rest_ends<S: futures_util::Stream + Unpin>(mut body: S) -> bool {
    tokio::time::timeout(STREAM_ENDS_WITHIN, async {
        while body.next().await.is_some() {}
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_key_revoked_with_the_cli_while_the_server_runs_is_refused_and_its_stream_ends() {
    let server = Server::start().await;
    let alice = server.key("alice", "developer");
    let bob = server.key("bob", "developer");
    let session = server.session(&alice).await;
    let stream = read_until(
        open_stream(&server, &alice, &session).await,
        "policy.decision",
    )
    .await;
    let bobs_session = server.session(&bob).await;
    let bobs_stream = read_until(
        open_stream(&server, &bob, &bobs_session).await,
        "policy.decision",
    )
    .await;
    let data_dir = server.data_dir();
    let data_dir = data_dir.to_str().unwrap();

    // `keys list` shows every key, never a secret.
    let listed = toolgate(&["keys", "list", "--json", "--data-dir", data_dir]);
    assert!(listed.status.success(), "{listed:?}");
    let stdout = String::from_utf8_lossy(&listed.stdout);
    for secret in [&alice, &bob, &server.admin] {
        assert!(
            !stdout.contains(secret.as_str()),
            "a secret is listed: {stdout}"
        );
    }
    let keys: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(keys.len(), 3, "{stdout}");
    let id = keys
        .iter()
        .find(|k| k["principal"] == "alice")
        .and_then(|k| k["id"].as_str())
        .unwrap()
        .to_owned();
    let table = toolgate(&["keys", "list", "--data-dir", data_dir]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&id));

    // Alice works, then the CLI revokes her key while the server runs.
    assert_eq!(
        server.get(&alice, "/v1/sessions").await.status(),
        StatusCode::OK
    );
    let revoked = toolgate(&["keys", "revoke", &id, "--data-dir", data_dir]);
    assert!(revoked.status.success(), "{revoked:?}");

    // Her open stream ends (no request of hers needed for the server to notice), her next
    // request is refused; bob's key and stream are untouched.
    assert!(
        rest_ends(Box::pin(stream)).await,
        "the revoked key's stream ends"
    );
    problem(
        server.get(&alice, "/v1/sessions").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(
        server.get(&bob, "/v1/sessions").await.status(),
        StatusCode::OK
    );
    let listed: Vec<Value> = serde_json::from_slice(
        &toolgate(&["keys", "list", "--json", "--data-dir", data_dir]).stdout,
    )
    .unwrap();
    let alices = listed.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert!(alices["revoked_at_ms"].is_i64(), "{alices}");

    // Revoking again is no error; an unknown id is a message and exit 2; so is a directory
    // that holds no toolgate database (and none is made there).
    let again = toolgate(&["keys", "revoke", &id, "--data-dir", data_dir]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already revoked"));
    let unknown = toolgate(&["keys", "revoke", "key_nope", "--data-dir", data_dir]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("key_nope"));
    let empty = tempfile::tempdir().unwrap();
    let elsewhere = toolgate(&["keys", "list", "--data-dir", empty.path().to_str().unwrap()]);
    assert_eq!(elsewhere.status.code(), Some(2));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);

    // Bob's stream is still open: it ends with the server.
    let bob_ended = tokio::spawn(rest_ends(Box::pin(bobs_stream)));
    server.stop().await;
    assert!(bob_ended.await.unwrap());
}

#[tokio::test]
async fn admins_list_create_and_revoke_keys_over_the_api() {
    let server = Server::start().await;
    let admin = server.admin.clone();
    let user = server.key("ursula", "developer");

    // Admins only.
    problem(
        server.get(&user, "/v1/keys").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    problem(
        server
            .post(
                &user,
                "/v1/keys",
                json!({"principal": "x", "profile": "developer"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    problem(
        server.delete(&user, "/v1/keys/key_x").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // A key for a profile the policy entities have; not for one they lack.
    let created = server
        .post(
            &admin,
            "/v1/keys",
            json!({"principal": "carol", "profile": "developer"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let carol = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["admin"], false);
    problem(
        server
            .post(
                &admin,
                "/v1/keys",
                json!({"principal": "dan", "profile": "nope"}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_profile",
    )
    .await;
    problem(
        server
            .post(
                &admin,
                "/v1/keys",
                json!({"principal": "", "profile": "developer"}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;

    // Listed without a secret.
    let listed = server.get(&admin, "/v1/keys").await.text().await.unwrap();
    for secret in [&carol, &user, &admin] {
        assert!(!listed.contains(secret.as_str()), "{listed}");
    }
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let entry = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(entry["principal"], "carol");
    assert_eq!(entry["revoked_at_ms"], Value::Null);
    assert!(entry.get("key").is_none(), "{entry}");

    // Carol works and streams; once revoked, her next request is a 401 and the stream ends.
    let session = server.session(&carol).await;
    let stream = read_until(
        open_stream(&server, &carol, &session).await,
        "policy.decision",
    )
    .await;
    let revoked = server.delete(&admin, &format!("/v1/keys/{id}")).await;
    assert_eq!(revoked.status(), StatusCode::OK);
    let revoked: Value = revoked.json().await.unwrap();
    assert!(revoked["revoked_at_ms"].is_i64(), "{revoked}");
    problem(
        server.get(&carol, &format!("/v1/sessions/{session}")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(
        rest_ends(Box::pin(stream)).await,
        "the revoked key's stream ends"
    );
    // A new stream is refused too.
    problem(
        server
            .get(&carol, &format!("/v1/sessions/{session}/events"))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    // Revoking again answers the same revocation; an unknown id is 404.
    let again: Value = server
        .delete(&admin, &format!("/v1/keys/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["revoked_at_ms"], revoked["revoked_at_ms"]);
    problem(
        server.delete(&admin, "/v1/keys/key_nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    server.stop().await;
}
