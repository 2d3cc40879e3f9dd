//! The `toolgate` binary, driven as a user would.

use crate::common::artifact;
use std::process::{Command, Output};

fn toolgate(args: &[&str], cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(args)
        .env("TOOLGATE_CACHE_DIR", cache)
        .env_remove("TOOLGATE_PLUGINS")
        .output()
        .expect("run toolgate")
}

/// A policy set that lets the local principal run the test-only plugins.
fn test_policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    std::fs::copy(
        root.join("schema.cedarschema"),
        dir.path().join("schema.cedarschema"),
    )
    .unwrap();
    std::fs::copy(root.join("entities.json"), dir.path().join("entities.json")).unwrap();
    let policy = r#"@id("test.hostile")
permit (principal, action == Action::"invoke", resource in Plugin::"hostile")
when { principal in context.profile };
"#;
    std::fs::write(dir.path().join("test.cedar"), policy).unwrap();
    dir
}

fn stdout_json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn run_reads_a_file_through_the_fs_plugin() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hi there").unwrap();
    let grant = format!("{}:/data:ro", dir.path().display());
    let out = toolgate(
        &[
            "run",
            "--plugin",
            "fs",
            "--tool",
            "fs.read",
            "--dir",
            &grant,
            "--input",
            r#"{"path":"hello.txt"}"#,
        ],
        cache.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    assert_eq!(report["output"]["content"], "hi there");
    assert!(report["usage"]["fuel_consumed"].as_u64().unwrap() > 0);
    assert!(report["usage"]["peak_memory_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn a_failed_task_prints_its_error_kind_and_exits_one() {
    let cache = tempfile::tempdir().unwrap();
    let hostile = artifact("hostile");
    let policies = test_policies();
    let out = toolgate(
        &[
            "run",
            "--plugin",
            hostile.to_str().unwrap(),
            "--tool",
            "spin",
            "--fuel",
            "1000000",
            "--policies",
            policies.path().to_str().unwrap(),
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let report = stdout_json(&out);
    assert_eq!(report["error"]["kind"], "fuel_exhausted", "{report}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fuel")
    );
    assert!(report["usage"]["fuel_consumed"].as_u64().unwrap() > 0);
}

#[test]
fn bad_plugins_and_bad_arguments_exit_two_with_a_message() {
    let cache = tempfile::tempdir().unwrap();
    let not_a_tool = artifact("not-a-tool");
    let out = toolgate(
        &[
            "run",
            "--plugin",
            not_a_tool.to_str().unwrap(),
            "--tool",
            "x",
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing export"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = toolgate(
        &[
            "run", "--plugin", "fs", "--tool", "read", "--input", "not json",
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JSON object"));

    let out = toolgate(&["run", "--plugin", "nope", "--tool", "read"], cache.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no plugin named `nope`"));

    let out = toolgate(
        &[
            "run", "--plugin", "fs", "--tool", "read", "--dir", "nocolon",
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_mistyped_grant_mode_is_a_usage_error_not_a_read_write_grant() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for mode in ["RO", "readonly", "rx", ""] {
        let grant = format!("{}:/w:{mode}", dir.path().display());
        let out = toolgate(
            &[
                "run",
                "--plugin",
                "fs",
                "--tool",
                "write",
                "--dir",
                &grant,
                "--input",
                r#"{"path": "x.txt", "content": "x"}"#,
            ],
            cache.path(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{grant}: {stderr}");
        assert!(stderr.contains("HOST:GUEST:ro"), "{stderr}");
        assert!(!dir.path().join("x.txt").exists());
    }
}

#[test]
fn an_unknown_tool_is_a_usage_error_not_a_denial() {
    let cache = tempfile::tempdir().unwrap();
    let out = toolgate(
        &["run", "--plugin", "json", "--tool", "json.nope"],
        cache.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown tool `json.nope`"), "{stderr}");
    assert!(out.stdout.is_empty(), "no task report for a usage error");
}

#[test]
fn run_checks_input_against_the_tools_schema() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let grant = format!("{}:/w", dir.path().display());
    let out = toolgate(
        &[
            "run",
            "--plugin",
            "fs",
            "--tool",
            "write",
            "--dir",
            &grant,
            "--input",
            r#"{"path": "x.txt", "content": ["not", "a", "string"]}"#,
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let report = stdout_json(&out);
    assert_eq!(report["error"]["kind"], "invalid_input", "{report}");
    assert_eq!(report["error"]["path"], "/content", "{report}");
    assert_eq!(report["usage"]["fuel_consumed"], 0, "{report}");
    assert!(!dir.path().join("x.txt").exists());
}

#[test]
fn plugin_inspect_shows_tools_imports_and_digest() {
    let cache = tempfile::tempdir().unwrap();
    let out = toolgate(&["plugin", "inspect", "fs"], cache.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    assert!(report["digest"].as_str().unwrap().starts_with("sha256:"));
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"fs.read") && tools.contains(&"fs.patch"),
        "{tools:?}"
    );
    let imports = report["imports"].as_array().unwrap();
    assert!(
        imports
            .iter()
            .any(|i| i["name"].as_str().unwrap().starts_with("wasi:filesystem/")),
        "{imports:?}"
    );

    // The host interface shows up in a plugin that uses it.
    let hostile = artifact("hostile");
    let out = toolgate(
        &["plugin", "inspect", hostile.to_str().unwrap()],
        cache.path(),
    );
    let report = stdout_json(&out);
    let imports = report["imports"].as_array().unwrap();
    assert!(
        imports.iter().any(|i| i["name"]
            .as_str()
            .unwrap()
            .starts_with("toolgate:plugin/host")),
        "{imports:?}"
    );
}

#[test]
fn help_is_available_everywhere() {
    let cache = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["plugin", "--help"],
        &["plugin", "inspect", "--help"],
    ] {
        let out = toolgate(args, cache.path());
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn without_address_space_for_the_pool_it_falls_back_to_on_demand_and_says_so() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "x").unwrap();
    let grant = format!("{}:/w", dir.path().display());
    // 2 GiB of address space cannot hold the pool's reservations.
    let script = r#"ulimit -v 2000000 && exec "$0" "$@""#;
    let out = Command::new("sh")
        .args(["-c", script, env!("CARGO_BIN_EXE_toolgate")])
        .args(["run", "--plugin", "fs", "--tool", "list", "--dir", &grant])
        .env("TOOLGATE_CACHE_DIR", cache.path())
        .env("TOOLGATE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("falling back to on-demand allocation"),
        "{stderr}"
    );
    assert_eq!(stdout_json(&out)["output"]["entries"][0]["path"], "a.txt");
    // Limits hold without the pool too.
    let hostile = artifact("hostile");
    let policies = test_policies();
    let out = Command::new("sh")
        .args(["-c", script, env!("CARGO_BIN_EXE_toolgate")])
        .args([
            "run",
            "--plugin",
            hostile.to_str().unwrap(),
            "--tool",
            "alloc",
            "--memory-mb",
            "16",
        ])
        .arg("--policies")
        .arg(policies.path())
        .env("TOOLGATE_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert_eq!(stdout_json(&out)["error"]["kind"], "memory_limit");
}

#[test]
fn run_goes_through_the_policy_gate() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let grant = format!("{}:/w", dir.path().display());
    // The shipped readonly profile may not write: the component is never run.
    let out = toolgate(
        &[
            "run",
            "--plugin",
            "fs",
            "--tool",
            "write",
            "--profile",
            "readonly",
            "--dir",
            &grant,
            "--input",
            r#"{"path":"x.txt","content":"x"}"#,
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let report = stdout_json(&out);
    assert_eq!(report["error"]["kind"], "denied", "{report}");
    assert_eq!(report["decision"]["allowed"], false);
    assert_eq!(report["usage"]["fuel_consumed"], 0);
    assert!(!dir.path().join("x.txt").exists());
    // The developer profile may, with the limits its permit sets.
    let out = toolgate(
        &[
            "run",
            "--plugin",
            "fs",
            "--tool",
            "write",
            "--dir",
            &grant,
            "--input",
            r#"{"path":"x.txt","content":"x"}"#,
        ],
        cache.path(),
    );
    let report = stdout_json(&out);
    assert!(out.status.success(), "{report}");
    assert_eq!(
        report["decision"]["reasons"],
        serde_json::json!(["developer.write-tools"])
    );
    assert_eq!(report["limits"]["memory_bytes"], 256 << 20);
    assert!(dir.path().join("x.txt").exists());
}
