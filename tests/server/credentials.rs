//! Credentials bound to hosts (`[[credentials]]`): the host adds the secret to a tool's
//! requests to that host when policy allows reading it, and the tool never holds it.

use crate::common::{Server, test_policies};
use crate::fake_model::secrets_file;
use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use toolgate::secrets::CredentialBinding;

const TOKEN: &str = "tok-3f7d2c9b8a1e4d6f";

/// An API on loopback that answers 200 only with the right bearer token, and keeps the
/// `authorization` headers it got.
async fn api() -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let app = axum::Router::new()
        .route(
            "/echo",
            axum::routing::get(|headers: HeaderMap| async move {
                // A debug endpoint that reflects its request, in a header and in the body.
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap_or("?").to_owned())
                    .unwrap_or_default();
                let split = auth.len() / 2;
                (
                    [("x-seen-auth", auth.clone())],
                    format!(
                        "you sent {auth}; in two: {} {}",
                        &auth[..split],
                        &auth[split..]
                    ),
                )
            }),
        )
        .route(
            "/whoami",
            axum::routing::get(move |headers: HeaderMap| {
                let kept = kept.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap_or("?").to_owned())
                        .unwrap_or_default();
                    kept.lock().unwrap().push(auth.clone());
                    if auth == format!("Bearer {TOKEN}") {
                        (StatusCode::OK, "{\"who\": \"bot\"}")
                    } else {
                        (StatusCode::UNAUTHORIZED, "{\"error\": \"who are you\"}")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

fn binding(host: &str, port: Option<u16>, allow_http: bool) -> CredentialBinding {
    CredentialBinding {
        secret: "api_token".into(),
        host: host.into(),
        port,
        header: "authorization".into(),
        value: "Bearer {secret}".into(),
        allow_http,
    }
}

const POLICY: &str = r#"@id("test.api-host")
permit (principal, action == Action::"connect", resource)
when { principal in context.profile && context.profile in Profile::"networked" &&
       (resource == Domain::"127.0.0.1" || resource == Domain::"localhost") };
@id("test.api-token")
permit (principal, action == Action::"read_secret", resource == Secret::"api_token")
when { principal in context.profile && context.profile in Profile::"networked" };
@id("test.no-admin")
forbid (principal, action == Action::"connect", resource == Domain::"127.0.0.1")
when { context has path && context.path like "/admin*" };
@id("test.only-as-credential")
forbid (principal, action == Action::"read_secret", resource == Secret::"api_token")
unless { context has host };
@id("test.not-for-hostile")
forbid (principal, action == Action::"read_secret", resource == Secret::"api_token")
when { context has tool && context.tool like "hostile.*" };
"#;

async fn fetch(server: &Server, key: &str, session: &str, tool: &str, input: Value) -> Value {
    let response = server
        .post(
            key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": tool, "input": input}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_host_adds_a_bound_credential_and_the_tool_never_holds_it() {
    let (port, seen) = api().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = secrets_file(dir.path(), &[("api_token", TOKEN)]);
    let policies = test_policies(dir.path());
    std::fs::write(policies.join("credentials.cedar"), POLICY).unwrap();
    let server = Server::start_with(move |config| {
        config.secrets_file = Some(secrets);
        config.policies = Some(policies);
        config.sessions_allow_private_network = true;
        config.credentials = vec![
            binding("127.0.0.1", Some(port), true),
            binding("localhost", Some(port), false),
        ];
    })
    .await;
    let key = server.key("nina", "networked");
    let opened = server
        .post(&key, "/v1/sessions", json!({"secrets": ["api_token"]}))
        .await;
    assert_eq!(opened.status(), StatusCode::CREATED);
    let session = opened.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("http://127.0.0.1:{port}/whoami");

    // The tool asks with a header of its own: the host's replaces it.
    let task = fetch(
        &server,
        &key,
        &session,
        "http.fetch",
        json!({"url": url, "headers": {"Authorization": "Bearer chosen-by-the-tool"}}),
    )
    .await;
    assert_eq!(task["state"], "completed", "{task}");
    assert_eq!(task["output"]["status"], 200, "{task}");
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        &format!("Bearer {TOKEN}")
    );

    // An endpoint that echoes its request: the tool reads `[redacted]` where the value was.
    let echo = format!("http://127.0.0.1:{port}/echo");
    let echoed = fetch(&server, &key, &session, "http.fetch", json!({"url": echo})).await;
    assert_eq!(echoed["output"]["status"], 200, "{echoed}");
    assert_eq!(
        echoed["output"]["headers"]["x-seen-auth"], "[redacted]",
        "{echoed}"
    );
    assert!(
        echoed["output"]["body"]
            .as_str()
            .unwrap()
            .starts_with("you sent [redacted];"),
        "{echoed}"
    );

    // A path rule holds however the tool spells the path: the server would read `/admin`.
    for spelling in [
        "/admin/users",
        "/x/../admin/users",
        "/%61dmin/users",
        "//admin/users",
        "/x/%2e%2e/admin",
    ] {
        let url = format!("http://127.0.0.1:{port}{spelling}");
        let refused = fetch(&server, &key, &session, "http.fetch", json!({"url": url})).await;
        assert_eq!(refused["error"]["kind"], "denied", "{spelling}: {refused}");
    }

    // The policy lets the host add it but no tool read it (`context has host` only then).
    let read = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "hostile.secret", "input": {"name": "api_token"}}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(read["error"]["kind"], "denied", "{read}");
    assert!(
        read.to_string().contains("test.only-as-credential"),
        "{read}"
    );

    // The tool's environment has no trace of it; neither has any record.
    let env = fetch(&server, &key, &session, "hostile.env", json!({})).await;
    assert_eq!(env["state"], "completed", "{env}");
    // A tool the policy may not read it for gets no credential, and the refusal is recorded.
    let refused = fetch(
        &server,
        &key,
        &session,
        "hostile.fetch",
        json!({"url": url}),
    )
    .await;
    assert_eq!(refused["output"]["status"], 401, "{refused}");
    assert_eq!(seen.lock().unwrap().last().unwrap(), "");
    server.app.store.flush().unwrap();
    let decisions: Vec<Value> = server
        .app
        .store
        .decisions(&session, refused["id"].as_str())
        .unwrap();
    assert!(
        decisions
            .iter()
            .any(|d| d.to_string().contains("test.not-for-hostile")),
        "{decisions:?}"
    );
    // Over plain HTTP only where the binding allows it (`localhost`'s does not).
    let local = format!("http://localhost:{port}/whoami");
    let plain = fetch(&server, &key, &session, "http.fetch", json!({"url": local})).await;
    assert_eq!(plain["output"]["status"], 401, "{plain}");

    // A session that did not name the secret gets no credential.
    let other = server
        .post(&key, "/v1/sessions", json!({}))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let unnamed = fetch(&server, &key, &other, "http.fetch", json!({"url": url})).await;
    assert_eq!(unnamed["output"]["status"], 401, "{unnamed}");

    let events = server
        .get(&key, &format!("/v1/sessions/{session}/events?after=0"))
        .await;
    let stream = crate::common::read_events(events, |e| {
        e.name == "task.completed" && e.data["task"] == plain["id"]
    })
    .await;
    let everything = format!(
        "{task}{echoed}{read}{env}{refused}{plain}{unnamed}{}{}",
        stream
            .iter()
            .map(|e| e.data.to_string())
            .collect::<String>(),
        Value::from(decisions)
    );
    assert!(!everything.contains(TOKEN), "the credential leaked");
    assert!(
        !everything.contains(&TOKEN[4..12]),
        "part of the credential leaked"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_credential_bindings_stop_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = secrets_file(dir.path(), &[("api_token", TOKEN)]);
    let cases = [
        (
            CredentialBinding {
                secret: "missing".into(),
                ..binding("api.example.com", None, false)
            },
            "no secret `missing`",
        ),
        (
            binding("https://api.example.com/", None, false),
            "host name",
        ),
        (binding("127.0.0.1:8080", None, false), "host name"),
        (binding(":::::", None, false), "host name"),
        (
            CredentialBinding {
                header: "keep-alive".into(),
                ..binding("api.example.com", None, false)
            },
            "frames the request",
        ),
        (
            CredentialBinding {
                value: "Bearer\n{secret}".into(),
                ..binding("api.example.com", None, false)
            },
            "control character",
        ),
        (
            CredentialBinding {
                header: "bad header".into(),
                ..binding("api.example.com", None, false)
            },
            "not a header name",
        ),
        (
            CredentialBinding {
                header: "Host".into(),
                ..binding("api.example.com", None, false)
            },
            "frames the request",
        ),
        (
            CredentialBinding {
                value: "Bearer".into(),
                ..binding("api.example.com", None, false)
            },
            "exactly once",
        ),
    ];
    for (bad, reason) in cases {
        let mut config = toolgate::server::ServeConfig::for_data_dir(&dir.path().join("data"));
        config.secrets_file = Some(secrets.clone());
        config.credentials = vec![bad];
        let error = match toolgate::server::build(config).await {
            Ok(_) => panic!("a bad binding was accepted ({reason})"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains(reason), "{error}");
        assert!(!error.contains(TOKEN), "{error}");
    }
}

/// On a remote sidecar too: the credential travels with the task, and the sidecar's host adds
/// it (`toolgate sidecar --allow-private-network` lets its tools reach loopback).
#[tokio::test]
async fn a_remote_sidecar_adds_the_credential_too() {
    use crate::processes::{call, orchestrator_with, sidecar};
    let (port, seen) = api().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = secrets_file(dir.path(), &[("api_token", TOKEN)]);
    let (_sidecar, url) = sidecar(dir.path(), &["--allow-private-network"]);
    let tables = format!(
        "secrets_file = \"{}\"\n[[sidecars]]\nid = \"far\"\nurl = \"{url}\"\ntoken_file = \"{}\"\n\
         [[credentials]]\nsecret = \"api_token\"\nhost = \"127.0.0.1\"\nport = {port}\nallow_http = true\n",
        secrets.display(),
        dir.path().join("sidecar.token").display(),
    );
    let (_orchestrator, base, admin) = orchestrator_with(dir.path(), &tables, |policies| {
        std::fs::write(policies.join("credentials.cedar"), POLICY).unwrap();
    });
    let client = reqwest::Client::new();
    let (status, key) = call(
        &client,
        &admin,
        format!("{base}/v1/keys"),
        json!({"principal": "nina", "profile": "networked"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();
    let (status, session) = call(
        &client,
        &key,
        format!("{base}/v1/sessions"),
        json!({"secrets": ["api_token"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!(session["sidecar"], "far");
    let (_, task) = call(
        &client,
        &key,
        format!(
            "{base}/v1/sessions/{}/tasks",
            session["id"].as_str().unwrap()
        ),
        json!({"tool": "http.fetch", "input": {"url": format!("http://127.0.0.1:{port}/whoami")}}),
    )
    .await;
    assert_eq!(task["output"]["status"], 200, "{task}");
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        &format!("Bearer {TOKEN}")
    );
    assert!(!task.to_string().contains(TOKEN));
}
