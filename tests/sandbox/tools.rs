//! The shipped tool plugins, run for real.

use crate::common::*;
use serde_json::json;
use toolgate::sandbox::{DirGrant, Grants, TaskOutcome, TaskRequest};

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn request(&self, tool: &str, input: serde_json::Value) -> TaskRequest {
        TaskRequest {
            grants: Grants {
                dirs: vec![DirGrant {
                    host: self.dir.path().into(),
                    guest: "/workspace".into(),
                    writable: true,
                    quota: None,
                }],
                ..Grants::default()
            },
            ..TaskRequest::new(tool, input.to_string())
        }
    }
}

async fn fs(ws: &Workspace, tool: &str, input: serde_json::Value) -> TaskOutcome {
    run(&plugin("fs").await, ws.request(tool, input)).await
}

#[tokio::test]
async fn fs_write_then_read_with_relative_paths() {
    let ws = Workspace::new();
    let written = fs(
        &ws,
        "write",
        json!({"path": "notes/today.txt", "content": "hello\nworld\n", "create_dirs": true}),
    )
    .await;
    assert_eq!(output(&written)["bytes_written"], 12);
    assert_eq!(
        std::fs::read_to_string(ws.path("notes/today.txt")).unwrap(),
        "hello\nworld\n"
    );

    let read = fs(&ws, "read", json!({"path": "notes/today.txt"})).await;
    assert_eq!(output(&read)["content"], "hello\nworld\n");
    let absolute = fs(&ws, "read", json!({"path": "/workspace/notes/today.txt"})).await;
    assert_eq!(output(&absolute)["content"], "hello\nworld\n");
    assert!(read.usage.fuel_consumed > 0 && read.usage.peak_memory_bytes > 0);
}

#[tokio::test]
async fn fs_refuses_paths_outside_the_workspace() {
    let ws = Workspace::new();
    for path in [
        "../etc/passwd",
        "/etc/passwd",
        "/workspace/../../etc/passwd",
    ] {
        let outcome = fs(&ws, "read", json!({ "path": path })).await;
        assert_eq!(
            error_kind(&outcome),
            "denied",
            "{path}: {:?}",
            outcome.result
        );
    }
    let missing = fs(&ws, "read", json!({"path": "absent.txt"})).await;
    assert_eq!(error_kind(&missing), "tool_error");
    let bad = fs(&ws, "read", json!({"nope": 1})).await;
    assert_eq!(error_kind(&bad), "invalid_input");
}

#[tokio::test]
async fn fs_list_and_search() {
    let ws = Workspace::new();
    std::fs::create_dir(ws.path("src")).unwrap();
    std::fs::write(
        ws.path("src/main.rs"),
        "fn main() {\n    println!(\"hi\");\n}\n",
    )
    .unwrap();
    std::fs::write(ws.path("README.md"), "# demo\nfn is not here\n").unwrap();

    let listed = output(&fs(&ws, "list", json!({"recursive": true})).await);
    let paths: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.iter().any(|p| p.ends_with("src/main.rs")), "{listed}");
    assert!(paths.iter().any(|p| p.ends_with("README.md")), "{listed}");

    let found = output(
        &fs(
            &ws,
            "search",
            json!({"pattern": r"^fn \w+", "include": "*.rs"}),
        )
        .await,
    );
    let matches = found["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 1, "{found}");
    assert_eq!(matches[0]["line"], 1);
    assert!(
        matches[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("src/main.rs")
    );

    let bad = fs(&ws, "search", json!({"pattern": "("})).await;
    assert_eq!(error_kind(&bad), "invalid_input");
}

#[tokio::test]
async fn fs_patch_applies_unified_diffs_atomically() {
    let ws = Workspace::new();
    std::fs::write(ws.path("a.txt"), "one\ntwo\nthree\n").unwrap();
    let diff = "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n";
    let patched = output(&fs(&ws, "patch", json!({ "diff": diff })).await);
    assert_eq!(patched["files"][0]["action"], "modified", "{patched}");
    assert_eq!(
        std::fs::read_to_string(ws.path("a.txt")).unwrap(),
        "one\nTWO\nthree\n"
    );

    // A second file whose hunk does not apply: nothing is written at all.
    let both = "--- a/new.txt\n+++ b/new.txt\n@@ -0,0 +1 @@\n+created\n--- a/a.txt\n+++ b/a.txt\n@@ -1,1 +1,1 @@\n-nope\n+never\n";
    let failed = fs(&ws, "patch", json!({ "diff": both })).await;
    assert_eq!(error_kind(&failed), "tool_error", "{:?}", failed.result);
    assert!(!ws.path("new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(ws.path("a.txt")).unwrap(),
        "one\nTWO\nthree\n"
    );
}

#[tokio::test]
async fn json_query_selects_with_jsonpath() {
    let json_plugin = plugin("json").await;
    let input = json!({
        "document": {"items": [{"name": "a", "price": 3}, {"name": "b", "price": 12}]},
        "query": "$.items[?@.price > 5].name"
    });
    let outcome = run(&json_plugin, TaskRequest::new("query", input.to_string())).await;
    let result = output(&outcome);
    assert_eq!(result["matches"], json!(["b"]), "{result}");
    assert_eq!(result["count"], 1);

    let bad = run(
        &json_plugin,
        TaskRequest::new("query", json!({"document": {}, "query": "$[("}).to_string()),
    )
    .await;
    assert_eq!(error_kind(&bad), "invalid_input");
}

#[tokio::test]
async fn bundled_plugins_describe_their_tools() {
    let catalog = catalog();
    let mut names = Vec::new();
    for plugin in ["fs", "http", "json"] {
        let plugin = catalog.get(plugin).await.unwrap();
        for tool in plugin.tools() {
            assert!(!tool.description.is_empty());
            assert_eq!(
                tool.input_schema["type"],
                "object",
                "{}.{}",
                plugin.name(),
                tool.name
            );
            names.push(format!("{}.{}", plugin.name(), tool.name));
        }
    }
    for expected in [
        "fs.read",
        "fs.write",
        "fs.list",
        "fs.search",
        "fs.patch",
        "http.fetch",
        "json.query",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}
