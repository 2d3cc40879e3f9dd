//! The shipped policy set: valid, tested, and usable by the CLI.

use crate::common::*;
use std::process::Command;

fn toolgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(args)
        .output()
        .expect("run toolgate")
}

#[test]
fn the_shipped_policies_pass_their_tests() {
    let dir = repo_policies();
    let out = toolgate(&["policy", "test", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    // Every action is covered with an allow and a deny.
    let results = toolgate::policy::run_tests(&dir).unwrap();
    for action in toolgate::policy::Action::ALL {
        for expect in [
            toolgate::policy::Expect::Allow,
            toolgate::policy::Expect::Deny,
        ] {
            assert!(
                results
                    .iter()
                    .any(|r| r.action == action.as_str() && r.expected == expect),
                "no {expect:?} case for {}",
                action.as_str()
            );
        }
    }
}

#[test]
fn validate_and_fmt_check_accept_the_shipped_set() {
    let dir = repo_policies();
    let out = toolgate(&["policy", "validate", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
    let out = toolgate(&["policy", "fmt", "--check", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_failing_policy_test_exits_one() {
    let dir = policy_dir(
        "@id(\"p\") permit (principal, action == Action::\"use_model\", resource);",
        "[]",
    );
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    let case = r#"{"cases": [{"name": "wrong on purpose", "principal": "x", "action": "use_model",
        "resource": "ModelProvider::\"m\"", "context": {"session": "s", "profile": {"__entity": {"type": "Profile", "id": "p"}}, "tool": "t"},
        "expect": "deny"}]}"#;
    std::fs::write(dir.path().join("tests/case.json"), case).unwrap();
    let out = toolgate(&["policy", "test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL wrong on purpose"));
}

#[test]
fn explain_gives_the_decision_and_why() {
    let context = r#"{"session": "s", "profile": {"__entity": {"type": "Profile", "id": "developer"}}, "tool": "fs.read",
        "path": "/srv/toolgate/shared/a.md"}"#;
    let out = toolgate(&[
        "policy",
        "explain",
        "--principal",
        "local",
        "--action",
        "read_file",
        "--resource",
        "Path::\"/srv/toolgate/shared/a.md\"",
        "--context",
        context,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["decision"], "allow");
    assert_eq!(
        report["reasons"],
        serde_json::json!(["developer.read-shared"])
    );
    assert!(report["policy_version"].as_str().unwrap().len() == 16);

    let out = toolgate(&[
        "policy",
        "explain",
        "--principal",
        "local",
        "--action",
        "read_file",
        "--resource",
        "Path::\"/etc/shadow\"",
        "--context",
        &context.replace("/srv/toolgate/shared/a.md", "/etc/shadow"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["decision"], "deny");
    assert!(report["why"][0].as_str().unwrap().contains("default deny"));

    let out = toolgate(&[
        "policy",
        "explain",
        "--principal",
        "local",
        "--action",
        "fly",
        "--resource",
        "Tool::\"x\"",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
