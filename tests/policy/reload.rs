//! Loading and reloading: a broken set never replaces a good one, and a
//! broken set at startup fails with every error located.

use crate::common::*;
use std::process::Command;
use std::time::Duration;
use toolgate::policy::{Action, AuthzRequest, PolicyEngine, PolicyOrigin};

const ENTITIES: &str = r#"[
  { "uid": { "type": "Profile", "id": "dev" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "Principal", "id": "dana" }, "attrs": {}, "parents": [{ "type": "Profile", "id": "dev" }] },
  { "uid": { "type": "Tool", "id": "fs.read" }, "attrs": {}, "parents": [{ "type": "Plugin", "id": "fs" }] },
  { "uid": { "type": "Tool", "id": "fs.write" }, "attrs": {}, "parents": [{ "type": "Plugin", "id": "fs" }] }
]"#;

const GOOD: &str = r#"
@id("dev.read")
permit (principal, action == Action::"invoke", resource == Tool::"fs.read")
when { principal in context.profile };
"#;

const BETTER: &str = r#"
@id("dev.any-fs")
permit (principal, action == Action::"invoke", resource in Plugin::"fs")
when { principal in context.profile };
"#;

// A syntax error on line 3 and a type error (no attribute `nope`) in a valid policy.
const BROKEN: &str = "@id(\"ok-syntax\")\npermit (principal, action == Action::\"invoke\", resource)\nwhen { context.nope == 1 };\n";
const SYNTAX: &str = "permit (principal, action, resource)\nwhen { principal ==  };\n";

fn invoke(tool: &str) -> AuthzRequest {
    AuthzRequest {
        principal: "dana".into(),
        action: Action::Invoke,
        resource: ("Tool".into(), tool.into()),
        context: serde_json::json!({
            "session": "s",
            "profile": { "__entity": { "type": "Profile", "id": "dev" } },
            "resources": { "cpu_millis": 1, "memory_mb": 1, "disk_mb": 1, "timeout_ms": 1 },
            "input": {}
        }),
    }
}

#[test]
fn a_broken_file_is_refused_and_the_last_good_set_stays() {
    let dir = policy_dir(GOOD, ENTITIES);
    let engine = load(dir.path());
    let good_version = engine.version();
    assert!(engine.decide(&invoke("fs.read")).allowed);
    assert!(!engine.decide(&invoke("fs.write")).allowed);

    std::fs::write(dir.path().join("test.cedar"), BROKEN).unwrap();
    let error = engine.reload().unwrap_err();
    assert!(error.to_string().contains("nope"), "{error}");
    assert_eq!(engine.version(), good_version);
    assert!(
        engine.decide(&invoke("fs.read")).allowed,
        "decisions unchanged"
    );
    let status = engine.status();
    assert_eq!(status.failed_reloads, 1);
    assert!(status.last_error.as_deref().unwrap().contains("nope"));

    std::fs::write(dir.path().join("test.cedar"), BETTER).unwrap();
    assert!(engine.reload().unwrap());
    assert_ne!(engine.version(), good_version);
    let decision = engine.decide(&invoke("fs.write"));
    assert!(decision.allowed);
    assert_eq!(decision.reasons, ["dev.any-fs"]);
    assert_eq!(decision.policy_version, engine.version());
    assert!(engine.status().last_error.is_none());
}

#[tokio::test]
async fn the_watcher_picks_up_changes_by_itself() {
    let dir = policy_dir(GOOD, ENTITIES);
    let engine = load(dir.path());
    let first = engine.version();
    let _watch = engine
        .watch(Duration::from_millis(20))
        .expect("a directory is watched");

    std::fs::write(dir.path().join("test.cedar"), SYNTAX).unwrap();
    for _ in 0..200 {
        if engine.status().last_error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        engine.status().last_error.is_some(),
        "the broken file was seen"
    );
    assert_eq!(engine.version(), first);

    std::fs::write(dir.path().join("test.cedar"), BETTER).unwrap();
    for _ in 0..200 {
        if engine.version() != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_ne!(engine.version(), first, "the fixed file became active");
    assert!(engine.decide(&invoke("fs.write")).allowed);
}

#[test]
fn a_broken_set_fails_to_load_with_located_errors() {
    let dir = policy_dir(&format!("{GOOD}\n{BROKEN}"), ENTITIES);
    std::fs::write(dir.path().join("more.cedar"), SYNTAX).unwrap();
    let error = PolicyEngine::load(PolicyOrigin::Dir(dir.path().into()))
        .err()
        .expect("invalid set");
    let syntax = error
        .problems
        .iter()
        .find(|p| p.file.ends_with("more.cedar"))
        .expect("syntax error reported");
    assert_eq!(syntax.line, Some(2), "{syntax}");
    assert!(syntax.column.is_some());
    let typed = error
        .problems
        .iter()
        .find(|p| p.policy_id.as_deref() == Some("ok-syntax"))
        .expect("type error reported");
    assert!(typed.file.ends_with("test.cedar"));
    assert!(
        typed.line.is_some() && typed.message.contains("nope"),
        "{typed}"
    );

    // The CLI says the same, one located line per problem, and exits 1.
    let out = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["policy", "validate"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("more.cedar:2:"), "{stderr}");
    assert!(stderr.contains("policy `ok-syntax`"), "{stderr}");
}

#[test]
fn duplicate_ids_bad_annotations_and_bad_entities_are_reported() {
    let policies = r#"
@id("same") permit (principal, action == Action::"use_model", resource);
@id("same") permit (principal, action == Action::"use_model", resource);
@id("lim") @fuel("lots") permit (principal, action == Action::"invoke", resource);
@id("forbid-lim") @fuel("5") forbid (principal, action == Action::"invoke", resource);
@id("calls") @model_calls("-1") permit (principal, action == Action::"use_model", resource);
@id("forbid-tokens") @tokens_per_run("9") forbid (principal, action == Action::"use_model", resource);
@id("ask") @approval("maybe") permit (principal, action == Action::"invoke", resource);
@id("forbid-ask") @approval("required") forbid (principal, action == Action::"invoke", resource);
"#;
    let dir = policy_dir(
        policies,
        r#"[{ "uid": { "type": "Nope", "id": "x" }, "attrs": {}, "parents": [] }]"#,
    );
    let error = PolicyEngine::load(PolicyOrigin::Dir(dir.path().into()))
        .err()
        .expect("invalid");
    let text = error.to_string();
    assert!(text.contains("policy id `same` is also used"), "{text}");
    assert!(text.contains("@fuel(\"lots\")"), "{text}");
    assert!(text.contains("only apply to permit"), "{text}");
    assert!(text.contains("@model_calls(\"-1\")"), "{text}");
    assert!(text.contains("model limit annotations"), "{text}");
    assert!(
        text.contains("@approval(\"maybe\") must be @approval(\"required\")"),
        "{text}"
    );
    assert!(
        text.contains("@approval only applies to permit policies"),
        "{text}"
    );
    assert!(text.contains("entities.json"), "{text}");
}
