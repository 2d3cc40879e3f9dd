//! The OpenAPI document: generated from the code, checked in, served, and true of every route.

use crate::common::{Server, artifact, problem, read_events};
use crate::contract::Contract;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
const REGENERATE: &str =
    "regenerate it with `cargo run -p toolgate -- openapi > runtime/openapi.json`";

/// The first line where two texts differ, to say where a copy drifted.
fn first_difference(a: &str, b: &str) -> String {
    let line = a
        .lines()
        .zip(b.lines())
        .position(|(x, y)| x != y)
        .unwrap_or_else(|| a.lines().count().min(b.lines().count()));
    format!(
        "line {}: `{}` / `{}`",
        line + 1,
        a.lines().nth(line).unwrap_or("<end>"),
        b.lines().nth(line).unwrap_or("<end>")
    )
}

#[tokio::test]
async fn the_checked_in_document_is_the_generated_one_and_is_served() {
    let generated = toolgate::server::api_doc::document_text();
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap();
    assert!(
        checked_in == generated,
        "runtime/openapi.json is not the document the code generates ({}); {REGENERATE}",
        first_difference(&checked_in, &generated)
    );
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(printed.status.success());
    assert!(
        printed.stdout == generated.as_bytes(),
        "`toolgate openapi` prints another document"
    );
    let server = Server::start().await;
    let served = server
        .send(server.client.get(server.url("/openapi.json")))
        .await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "application/json");
    assert!(served.text().await.unwrap() == generated);
    server.stop().await;
}

#[test]
fn the_document_is_openapi_3_1_with_bearer_keys_and_unique_operation_ids() {
    let doc = toolgate::server::api_doc::document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"], json!([{ "bearer": [] }]));
    let mut ids = BTreeMap::new();
    for (method, template) in Contract::get().operations() {
        let operation = &doc["paths"][&template][method.to_lowercase()];
        let id = operation["operationId"].as_str().unwrap().to_owned();
        if let Some(other) = ids.insert(id.clone(), format!("{method} {template}")) {
            panic!("`{id}` names both {other} and {method} {template}");
        }
        // Health, metrics and this document need no key; everything else does.
        let keyless = operation.get("security") == Some(&json!([]));
        assert_eq!(
            keyless,
            !template.starts_with("/v1/"),
            "{method} {template}"
        );
        if !keyless {
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {template}"
            );
        }
        assert!(
            operation["responses"]["500"].is_object(),
            "{method} {template}"
        );
    }
    // Every reference points at something.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap();
        let pointer = target.strip_prefix('#').unwrap();
        assert!(
            doc.pointer(pointer).is_some(),
            "`{target}` points at nothing"
        );
    }
    // The stream is documented as one.
    let stream = &doc["paths"]["/v1/sessions/{id}/events"]["get"]["responses"]["200"];
    assert!(
        stream["content"]["text/event-stream"].is_object(),
        "{stream}"
    );
}

/// Routes added to the router outside `routes!(...)` would be served but not documented.
#[test]
fn every_route_of_the_router_is_documented() {
    let doc = toolgate::server::api_doc::document();
    let router = include_str!("../../runtime/src/server/mod.rs");
    for after in router.split(".route(").skip(1) {
        let path = after.split('"').nth(1).unwrap();
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} is routed but not in the OpenAPI document: register it with `routes!(handler)`"
        );
    }
}

/// Hits every documented operation, with a success and an error, and checks each answer
/// against the document (the request helpers do that for every response they see).
#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    use crate::fake_model::{FakeModel, Turn, answer, secrets_file};
    use toolgate::agents::ProviderKind;
    // A model provider for the runs: one answer, then one that never comes (to cancel).
    let model = FakeModel::start(
        ProviderKind::Openai,
        vec![answer(ProviderKind::Openai, "done", (5, 1)), Turn::Hang],
    )
    .await;
    let secrets = tempfile::tempdir().unwrap();
    let secrets_path = secrets_file(secrets.path(), &[]);
    let provider = model.provider("local", 30_000, 0);
    let server = Server::start_with(move |config| {
        config.model_providers = vec![provider];
        config.secrets_file = Some(secrets_path);
    })
    .await;
    let key = server.key("olga", "developer");
    let admin = server.admin.clone();
    let anonymous =
        |method: reqwest::Method, path: &str| server.client.request(method, server.url(path));

    for path in ["/v1/info", "/v1/tools", "/v1/plugins", "/v1/hosts"] {
        assert_eq!(
            server.get(&key, path).await.status(),
            StatusCode::OK,
            "{path}"
        );
        let refused = server.send(anonymous(reqwest::Method::GET, path)).await;
        problem(refused, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    for path in ["/livez", "/readyz", "/metrics", "/openapi.json"] {
        let answer = server.send(anonymous(reqwest::Method::GET, path)).await;
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        let refused = server.send(anonymous(reqwest::Method::POST, path)).await;
        problem(
            refused,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
    }

    // Hosts: one, drained and undrained by an admin, its changes on the admins' stream.
    assert_eq!(
        server.get(&key, "/v1/hosts/local").await.status(),
        StatusCode::OK
    );
    problem(
        server.get(&key, "/v1/hosts/nowhere").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    for action in ["drain", "undrain"] {
        let path = format!("/v1/hosts/local/{action}");
        assert_eq!(
            server.post(&admin, &path, json!({})).await.status(),
            StatusCode::OK,
            "{path}"
        );
        problem(
            server.post(&key, &path, json!({})).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    let host_events = server.get(&admin, "/v1/hosts/events?after=0").await;
    assert_eq!(host_events.status(), StatusCode::OK);
    drop(host_events);
    problem(
        server.get(&key, "/v1/hosts/events").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    let echo = std::fs::read(artifact("echo")).unwrap();
    let upload = |key: &str, name: &str| {
        server
            .client
            .put(server.url(&format!("/v1/plugins/{name}")))
            .bearer_auth(key)
            .header("content-type", "application/wasm")
            .body(echo.clone())
    };
    assert_eq!(
        server.send(upload(&admin, "echo")).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        server.send(upload(&admin, "echo")).await.status(),
        StatusCode::OK
    );
    problem(
        server.send(upload(&key, "echo")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    let decision = server
        .post(
            &key,
            "/v1/authorize",
            json!({"action": "invoke", "resource": "Tool::\"fs.read\""}),
        )
        .await;
    assert_eq!(decision.status(), StatusCode::OK);
    let unknown = server
        .post(
            &key,
            "/v1/authorize",
            json!({"action": "fly", "resource": "Tool::\"fs.read\""}),
        )
        .await;
    problem(unknown, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;

    let ready = server
        .post(&key, "/v1/preflight", json!({"tools": ["fs.read"]}))
        .await;
    assert_eq!(ready.status(), StatusCode::OK);
    let not_json = server
        .send(
            server
                .client
                .post(server.url("/v1/preflight"))
                .bearer_auth(&key)
                .body("{}"),
        )
        .await;
    problem(
        not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let created = server
        .post(&key, "/v1/sessions", json!({"tools": ["fs.read"]}))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let session = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown_field = server
        .post(&key, "/v1/sessions", json!({"colour": "blue"}))
        .await;
    problem(
        unknown_field,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    let denied = server
        .post(&key, "/v1/sessions", json!({"profile": "admin-only-nope"}))
        .await;
    assert!(denied.status().is_client_error());

    let session_path = format!("/v1/sessions/{session}");
    assert_eq!(
        server.get(&key, &session_path).await.status(),
        StatusCode::OK
    );
    problem(
        server.get(&key, "/v1/sessions/s_nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let tasks = format!("{session_path}/tasks");
    let ran = server
        .post(
            &key,
            &tasks,
            json!({"tool": "fs.list", "input": {"path": "."}}),
        )
        .await;
    assert_eq!(ran.status(), StatusCode::OK);
    let ran: Value = ran.json().await.unwrap();
    let queued = server
        .post(
            &key,
            &tasks,
            json!({"tool": "hostile.spin", "wait": false, "limits": {"fuel": 40000000000u64}}),
        )
        .await;
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    let queued: Value = queued.json().await.unwrap();
    problem(
        server
            .post(
                &key,
                "/v1/sessions/s_nope/tasks",
                json!({"tool": "fs.list"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let task = |id: &Value| format!("{tasks}/{}", id["id"].as_str().unwrap());
    assert_eq!(server.get(&key, &task(&ran)).await.status(), StatusCode::OK);
    problem(
        server.get(&key, &format!("{tasks}/t_nope")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let cancelled = server
        .post(&key, &format!("{}/cancel", task(&queued)), json!({}))
        .await;
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    let finished = server
        .post(&key, &format!("{}/cancel", task(&ran)), json!({}))
        .await;
    problem(finished, StatusCode::CONFLICT, "conflict").await;

    // Approvals: a supervised write waits for one; `approver` (test policies) answers.
    let sue = server.key("sue", "supervised");
    let approver = server.key("approver", "readonly");
    let sue_session = server.session(&sue).await;
    let waiting: Value = server
        .post(
            &sue,
            &format!("/v1/sessions/{sue_session}/tasks"),
            json!({"tool": "fs.write", "input": {"path": "a.txt", "content": "b"}, "wait": false}),
        )
        .await
        .json()
        .await
        .unwrap();
    let approval = format!(
        "/v1/sessions/{sue_session}/tasks/{}/approval",
        waiting["id"].as_str().unwrap()
    );
    let mut pending = false;
    for _ in 0..200 {
        let response = server.get(&sue, &approval).await;
        if response.status() == StatusCode::OK {
            pending = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(pending, "the approval was never requested");
    problem(
        server
            .get(
                &sue,
                &format!("/v1/sessions/{sue_session}/tasks/t_nope/approval"),
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        server.post(&sue, &approval, json!({"approve": true})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let inbox = server.get(&approver, "/v1/approvals").await;
    assert_eq!(inbox.status(), StatusCode::OK);
    let keyless = server
        .send(server.client.get(server.url("/v1/approvals")))
        .await;
    problem(keyless, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let answered = server
        .post(&approver, &approval, json!({"approve": true}))
        .await;
    assert_eq!(answered.status(), StatusCode::OK);
    problem(
        server
            .post(&approver, &approval, json!({"approve": false}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    let events = format!("{session_path}/events");
    let stream = server.get(&key, &format!("{events}?after=0")).await;
    assert_eq!(stream.status(), StatusCode::OK);
    drop(stream);
    let bad_cursor = server.get(&key, &format!("{events}?after=soon")).await;
    problem(
        bad_cursor,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;

    let closed = server.delete(&key, &session_path).await;
    assert_eq!(closed.status(), StatusCode::OK);
    let last = closed.json::<Value>().await.unwrap()["last_event_id"]
        .as_u64()
        .unwrap();
    problem(
        server.delete(&key, "/v1/sessions/s_nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let after_close = server.post(&key, &tasks, json!({"tool": "fs.list"})).await;
    problem(after_close, StatusCode::CONFLICT, "conflict").await;
    // The whole story replayed; `read_events` checks each event's data against its schema.
    let replay = server.get(&key, &format!("{events}?after=0")).await;
    let told = read_events(replay, |e| e.name == "session.closed").await;
    let names: Vec<&str> = told.iter().map(|e| e.name.as_str()).collect();
    for name in [
        "session.created",
        "policy.decision",
        "task.queued",
        "task.started",
        "task.completed",
        "session.closed",
    ] {
        assert!(names.contains(&name), "no `{name}` in {names:?}");
    }
    let nothing_new = server.get(&key, &format!("{events}?after={last}")).await;
    assert_eq!(nothing_new.status(), StatusCode::NO_CONTENT);

    // Listings, keys and plugin versions.
    let listed = server.get(&key, "/v1/sessions?state=closed").await;
    assert_eq!(listed.status(), StatusCode::OK);
    let bad_state = server.get(&key, "/v1/sessions?state=nope").await;
    problem(bad_state, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query").await;
    let listed = server.get(&key, &format!("{tasks}?limit=1")).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let bad_cursor = server.get(&key, &format!("{tasks}?cursor=nope")).await;
    problem(
        bad_cursor,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_cursor",
    )
    .await;
    assert_eq!(
        server.get(&admin, "/v1/keys").await.status(),
        StatusCode::OK
    );
    problem(
        server.get(&key, "/v1/keys").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let new_key = json!({"principal": "pia", "profile": "developer"});
    let created = server.post(&admin, "/v1/keys", new_key).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let key_id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let nope = json!({"principal": "pia", "profile": "nope"});
    let refused = server.post(&admin, "/v1/keys", nope).await;
    problem(refused, StatusCode::UNPROCESSABLE_ENTITY, "unknown_profile").await;
    let revoked = server.delete(&admin, &format!("/v1/keys/{key_id}")).await;
    assert_eq!(revoked.status(), StatusCode::OK);
    let unknown_key = server.delete(&admin, "/v1/keys/key_nope").await;
    problem(unknown_key, StatusCode::NOT_FOUND, "not_found").await;
    let rollback = |key: &str| {
        server
            .client
            .post(server.url("/v1/plugins/echo/rollback"))
            .bearer_auth(key)
    };
    assert_eq!(server.send(rollback(&admin)).await.status(), StatusCode::OK);
    problem(
        server.send(rollback(&key)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let deleted = server.delete(&admin, "/v1/plugins/echo").await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let bundled = server.delete(&admin, "/v1/plugins/fs").await;
    problem(bundled, StatusCode::CONFLICT, "plugin_not_uploaded").await;

    // Workspace files in and out: a file and the workspace as a tar.
    let session = server.session(&key).await;
    let file = format!("/v1/sessions/{session}/files/docs/notes.txt");
    let put_file = server
        .send(
            server
                .client
                .put(server.url(&file))
                .bearer_auth(&key)
                .body("hello"),
        )
        .await;
    assert_eq!(put_file.status(), StatusCode::CREATED);
    assert_eq!(server.get(&key, &file).await.status(), StatusCode::OK);
    let missing = server
        .get(&key, &format!("/v1/sessions/{session}/files/nope.txt"))
        .await;
    problem(missing, StatusCode::NOT_FOUND, "not_found").await;
    let escaping = server
        .send(
            server
                .client
                .put(server.url(&format!("/v1/sessions/{session}/files/..%2Fx")))
                .bearer_auth(&key)
                .body("x"),
        )
        .await;
    problem(escaping, StatusCode::UNPROCESSABLE_ENTITY, "invalid_path").await;
    let tar = format!("/v1/sessions/{session}/workspace.tar");
    let archive = server.get(&key, &tar).await;
    assert_eq!(archive.status(), StatusCode::OK);
    let archive = archive.bytes().await.unwrap();
    let put_tar = |content_type: &'static str| {
        server
            .client
            .put(server.url(&tar))
            .bearer_auth(&key)
            .header("content-type", content_type)
            .body(archive.clone())
    };
    assert_eq!(
        server.send(put_tar("application/x-tar")).await.status(),
        StatusCode::OK
    );
    let wrong = server.send(put_tar("text/plain")).await;
    problem(
        wrong,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let other = server.key("oscar", "developer");
    problem(
        server.get(&other, &tar).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Runs: one to its end, one cancelled; their errors.
    let session = server.session(&key).await;
    let runs = format!("/v1/sessions/{session}/runs");
    let ran = server
        .post(
            &key,
            &runs,
            json!({"agent": "tool-loop", "input": {"prompt": "hi"}}),
        )
        .await;
    assert_eq!(ran.status(), StatusCode::OK);
    let ran: Value = ran.json().await.unwrap();
    assert_eq!(ran["state"], "completed", "{ran}");
    let run_path = format!("{runs}/{}", ran["id"].as_str().unwrap());
    assert_eq!(server.get(&key, &run_path).await.status(), StatusCode::OK);
    problem(
        server
            .post(&key, &format!("{run_path}/cancel"), json!({}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    problem(
        server.get(&key, &format!("{runs}/r_nope")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        server.post(&key, &runs, json!({"agent": "nope"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_agent",
    )
    .await;
    let waiting = server
        .post(
            &key,
            &runs,
            json!({"agent": "tool-loop", "input": {"prompt": "hi"}, "wait": false}),
        )
        .await;
    assert_eq!(waiting.status(), StatusCode::ACCEPTED);
    let waiting: Value = waiting.json().await.unwrap();
    let cancel = format!("{runs}/{}/cancel", waiting["id"].as_str().unwrap());
    assert_eq!(
        server.post(&key, &cancel, json!({})).await.status(),
        StatusCode::ACCEPTED
    );

    // Every operation was seen answering with a success, and with an error when it documents
    // one a client can cause at will (a timeout or a full server cannot be).
    let doc = toolgate::server::api_doc::document();
    let checked = server.checked.lock().unwrap().clone();
    for (method, template) in Contract::get().operations() {
        let answered = |ok: bool| {
            checked
                .iter()
                .any(|a| a.method == method && a.template == template && (a.status < 400) == ok)
        };
        assert!(
            answered(true),
            "no success of {method} {template} was checked"
        );
        let responses = doc["paths"][&template][method.to_lowercase()]["responses"]
            .as_object()
            .unwrap();
        let provokable = responses
            .keys()
            .any(|status| status.starts_with('4') && !["408", "429"].contains(&status.as_str()));
        if provokable {
            assert!(
                answered(false),
                "no error of {method} {template} was checked"
            );
        }
    }
    server.stop().await;
}
