//! Tasks through the Cedar gate, with real components.

use crate::common::*;
use std::collections::BTreeMap;
use toolgate::policy::PolicyLimits;
use toolgate::sandbox::{DirGrant, Grants, NetworkGrant, Secret, TaskRequest};

const ENTITIES: &str = r#"[
  { "uid": { "type": "Profile", "id": "dev" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "Profile", "id": "viewer" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "Tool", "id": "fs.read" }, "attrs": {}, "parents": [{ "type": "Plugin", "id": "fs" }] },
  { "uid": { "type": "Tool", "id": "fs.write" }, "attrs": {}, "parents": [{ "type": "Plugin", "id": "fs" }] },
  { "uid": { "type": "Tool", "id": "hostile.spin" }, "attrs": {}, "parents": [{ "type": "Plugin", "id": "hostile" }] },
  { "uid": { "type": "Tool", "id": "hostile.fetch" }, "attrs": {}, "parents": [{ "type": "Plugin", "id": "hostile" }] },
  { "uid": { "type": "Tool", "id": "hostile.secret" }, "attrs": {}, "parents": [{ "type": "Plugin", "id": "hostile" }] },
  { "uid": { "type": "Tool", "id": "hostile.read" }, "attrs": {}, "parents": [{ "type": "Plugin", "id": "hostile" }] }
]"#;

fn policies(shared: &str) -> String {
    format!(
        r#"
@id("dev.hostile")
@fuel("3000000")
@timeout_ms("20000")
permit (principal, action == Action::"invoke", resource in Plugin::"hostile")
when {{ principal in context.profile && context.profile == Profile::"dev" }};

@id("dev.fs")
permit (principal, action == Action::"invoke", resource in Plugin::"fs")
when {{ principal in context.profile && context.profile == Profile::"dev" }};

@id("viewer.fs-read")
permit (principal, action == Action::"invoke", resource == Tool::"fs.read")
when {{ principal in context.profile }};

@id("dev.loopback")
permit (principal, action == Action::"connect", resource == Domain::"127.0.0.1")
when {{ context.tool == "hostile.fetch" && context.scheme == "http" }};

@id("no.port-9")
forbid (principal, action == Action::"connect", resource)
when {{ context.port == 9 }};

@id("dev.api-key")
permit (principal, action == Action::"read_secret", resource == Secret::"api_key")
when {{ context.tool == "hostile.secret" }};

@id("dev.shared-read")
permit (principal, action == Action::"read_file", resource)
when {{ context.path like "{shared}*" }};
"#
    )
}

struct Setup {
    policy: std::sync::Arc<toolgate::policy::PolicyEngine>,
    shared: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let shared = tempfile::tempdir().unwrap();
    let dir = policy_dir(&policies(&shared.path().display().to_string()), ENTITIES);
    let policy = load(dir.path());
    member(&policy, "dana", "dev");
    member(&policy, "vic", "viewer");
    Setup {
        policy,
        shared,
        _dir: dir,
    }
}

fn in_workspace(ws: &std::path::Path, tool: &str, input: serde_json::Value) -> TaskRequest {
    TaskRequest {
        grants: Grants {
            dirs: vec![DirGrant {
                host: ws.into(),
                guest: "/workspace".into(),
                writable: true,
                quota: None,
            }],
            ..Grants::default()
        },
        ..TaskRequest::new(tool, input.to_string())
    }
}

#[tokio::test]
async fn a_denied_task_never_instantiates_its_component() {
    let s = setup();
    let ws = tempfile::tempdir().unwrap();
    let fs = plugin("fs").await;
    let request = in_workspace(
        ws.path(),
        "write",
        serde_json::json!({"path": "planted.txt", "content": "x"}),
    );
    let outcome = run(
        &s.policy,
        &fs,
        identity("vic", "viewer", "fs.write"),
        request,
    )
    .await;
    assert_eq!(kind(&outcome), "denied");
    assert!(!outcome.ran);
    assert!(!outcome.decision.allowed);
    assert_eq!(outcome.decision.policy_version, s.policy.version());
    assert_eq!(outcome.outcome.usage.instantiate_us, 0);
    assert_eq!(outcome.outcome.usage.fuel_consumed, 0);
    assert!(
        reasons(&outcome).iter().any(|r| r.contains("default deny")),
        "{:?}",
        reasons(&outcome)
    );
    assert!(!ws.path().join("planted.txt").exists());

    // The same principal may read: the decision names the permit.
    std::fs::write(ws.path().join("a.txt"), "hello").unwrap();
    let read = in_workspace(ws.path(), "read", serde_json::json!({"path": "a.txt"}));
    let outcome = run(&s.policy, &fs, identity("vic", "viewer", "fs.read"), read).await;
    assert!(outcome.ran);
    assert_eq!(outcome.decision.reasons, ["viewer.fs-read"]);
    assert!(
        outcome.outcome.result.is_ok(),
        "{:?}",
        outcome.outcome.result
    );
}

#[tokio::test]
async fn a_principal_outside_the_profile_is_denied() {
    let s = setup();
    let fs = plugin("fs").await;
    let ws = tempfile::tempdir().unwrap();
    let request = in_workspace(ws.path(), "read", serde_json::json!({"path": "a.txt"}));
    let outcome = run(&s.policy, &fs, identity("vic", "dev", "fs.read"), request).await;
    assert_eq!(kind(&outcome), "denied");
    assert!(!outcome.ran);
}

#[tokio::test]
async fn limits_come_from_the_permit_annotations() {
    let s = setup();
    let hostile = plugin("hostile").await;
    let who = || identity("dana", "dev", "hostile.spin");
    let outcome = run(&s.policy, &hostile, who(), TaskRequest::new("spin", "{}")).await;
    assert_eq!(kind(&outcome), "fuel_exhausted");
    assert_eq!(outcome.outcome.limits.fuel, 3_000_000);
    assert_eq!(outcome.outcome.limits.timeout.as_millis(), 20_000);
    assert_eq!(outcome.decision.limits.fuel, Some(3_000_000));

    // Asking for more gets the policy's limit, and the decision says so; asking for less
    // gets less. The recorded decision carries the limits in force either way.
    let ask = |fuel| PolicyLimits {
        fuel: Some(fuel),
        ..PolicyLimits::default()
    };
    let spin = || TaskRequest::new("spin", "{}");
    let greedy = run_asking(&s.policy, &hostile, who(), ask(10_000_000_000), spin()).await;
    assert_eq!(greedy.outcome.limits.fuel, 3_000_000);
    assert_eq!(greedy.decision.limits.fuel, Some(3_000_000));
    assert_eq!(greedy.decision.capped, vec!["fuel".to_owned()]);
    let modest = run_asking(&s.policy, &hostile, who(), ask(1_000_000), spin()).await;
    assert_eq!(modest.outcome.limits.fuel, 1_000_000);
    assert_eq!(kind(&modest), "fuel_exhausted");
    assert_eq!(modest.decision.limits.fuel, Some(1_000_000));
    assert_eq!(
        modest.decision.policy_limits.and_then(|l| l.fuel),
        Some(3_000_000)
    );
    assert!(modest.decision.capped.is_empty());
    assert_eq!(
        modest.decision.limits.timeout_ms,
        Some(20_000),
        "every bound in force is recorded"
    );
}

fn fetch(url: String) -> TaskRequest {
    TaskRequest {
        grants: Grants {
            network: NetworkGrant {
                http: true,
                allow_private_addresses: true,
            },
            ..Grants::default()
        },
        ..TaskRequest::new("fetch", serde_json::json!({ "url": url }).to_string())
    }
}

#[tokio::test]
async fn each_outbound_request_is_decided_by_policy() {
    let s = setup();
    let hostile = plugin("hostile").await;
    let server = crate::server::TestServer::start().await;
    let who = || identity("dana", "dev", "hostile.fetch");

    let allowed = run(
        &s.policy,
        &hostile,
        who(),
        fetch(format!("http://127.0.0.1:{}/", server.port)),
    )
    .await;
    assert!(
        allowed.outcome.result.is_ok(),
        "{:?}",
        allowed.outcome.result
    );
    assert_eq!(server.connections(), 1);
    let records = &allowed.outcome.decisions;
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records
            .iter()
            .all(|r| r.decision.allowed && r.decision.policy_version.is_some())
    );
    assert!(
        records[0]
            .decision
            .reasons
            .iter()
            .any(|r| r.contains("dev.loopback"))
    );

    // An unlisted domain: denied by default, never contacted.
    let unlisted = run(
        &s.policy,
        &hostile,
        who(),
        fetch(format!("http://localhost:{}/", server.port)),
    )
    .await;
    assert_eq!(kind(&unlisted), "denied");
    assert!(
        reasons(&unlisted)
            .iter()
            .any(|r| r.contains("default deny")),
        "{:?}",
        reasons(&unlisted)
    );
    // A forbid names itself.
    let forbidden = run(
        &s.policy,
        &hostile,
        who(),
        fetch("http://127.0.0.1:9/".into()),
    )
    .await;
    assert!(
        reasons(&forbidden).iter().any(|r| r.contains("no.port-9")),
        "{:?}",
        reasons(&forbidden)
    );
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn each_secret_read_is_decided_by_policy() {
    let s = setup();
    let hostile = plugin("hostile").await;
    let grants = Grants {
        secrets: BTreeMap::from([
            ("api_key".to_owned(), Secret::new("value-of-api-key-77")),
            ("other".to_owned(), Secret::new("value-of-other-88")),
        ]),
        ..Grants::default()
    };
    let read = |name: &str| TaskRequest {
        grants: grants.clone(),
        ..TaskRequest::new("secret", format!(r#"{{"name":"{name}"}}"#))
    };
    let who = || identity("dana", "dev", "hostile.secret");

    let ok = run(&s.policy, &hostile, who(), read("api_key")).await;
    assert!(ok.outcome.result.is_ok(), "{:?}", ok.outcome.result);
    assert_eq!(
        ok.outcome.decisions[0].decision.reasons,
        ["policy `dev.api-key`"]
    );

    let unlisted = run(&s.policy, &hostile, who(), read("other")).await;
    assert_eq!(kind(&unlisted), "denied");
    for outcome in [&ok, &unlisted] {
        let shown = serde_json::to_string(outcome).unwrap();
        assert!(
            !shown.contains("value-of-api-key-77") && !shown.contains("value-of-other-88"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn directories_outside_the_workspace_are_decided_per_task() {
    let s = setup();
    std::fs::write(s.shared.path().join("guide.md"), "shared guide").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("private.md"), "not for tools").unwrap();
    let hostile = plugin("hostile").await;
    let who = || identity("dana", "dev", "hostile.read");
    let request = |path: &str| TaskRequest {
        grants: Grants {
            outside: vec![
                DirGrant {
                    host: s.shared.path().into(),
                    guest: "/shared".into(),
                    writable: false,
                    quota: None,
                },
                DirGrant {
                    host: elsewhere.path().into(),
                    guest: "/elsewhere".into(),
                    writable: false,
                    quota: None,
                },
            ],
            ..Grants::default()
        },
        ..TaskRequest::new("read", serde_json::json!({ "path": path }).to_string())
    };

    let shared = run(&s.policy, &hostile, who(), request("/shared/guide.md")).await;
    let output: serde_json::Value =
        serde_json::from_str(shared.outcome.result.as_ref().unwrap()).unwrap();
    assert_eq!(output["content"], "shared guide");
    let decided: Vec<(bool, String)> = shared
        .outcome
        .decisions
        .iter()
        .map(|d| {
            (
                d.decision.allowed,
                serde_json::to_value(&d.request).unwrap()["action"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        [
            (true, "read_file".to_owned()),
            (false, "read_file".to_owned())
        ]
    );

    let private = run(&s.policy, &hostile, who(), request("/elsewhere/private.md")).await;
    assert_eq!(kind(&private), "denied");
    assert!(
        !serde_json::to_string(&private)
            .unwrap()
            .contains("not for tools")
    );
}
