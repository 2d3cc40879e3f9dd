//! Tools written in Python and JavaScript through the real server: the plugins of
//! `plugins/python/textstats` (componentize-py) and `plugins/js/slugify` (componentize-js),
//! built by `plugins/build-other-languages.sh`, uploaded by an admin, permitted by one extra
//! policy and called in a session like any Rust tool.
//!
//! The build script installs its pinned toolchain from PyPI / npm on first use. Where one
//! cannot be had (no Python >= 3.11 or Node >= 18, no registry) it exits 3, and that
//! language's part is skipped with a `SKIPPED:` line on stderr; set
//! `TOOLGATE_REQUIRE_OTHER_LANGUAGES=1` to make that a failure instead. Any other build
//! failure fails the test with the script's output.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The script's exit status for "this language's toolchain is unavailable".
const UNAVAILABLE: i32 = 3;

/// Uploading compiles the component: about 10 s each in a debug build, more on a busy machine.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Lets developers run the two plugins (the shipped policies permit only the tool groups of
/// `entities.json`; a tool is in its plugin, `Plugin::"NAME"`, without being listed there).
const PERMIT: &str = r#"@id("test.other-languages")
permit (principal, action == Action::"invoke", resource)
when
{
    (resource in Plugin::"textstats" || resource in Plugin::"slugify") &&
    principal in context.profile &&
    context.profile in Profile::"developer"
};
"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds one language's plugin with the build script: the component's path, or `None`
/// (said on stderr) when the toolchain is unavailable.
fn build(language: &str, plugin: &str) -> Option<PathBuf> {
    let root = repo_root();
    let out = root.join("target/other-languages");
    let script = root.join("plugins/build-other-languages.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args(["--only", language])
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => Some(out.join(format!("{plugin}.wasm"))),
        Some(UNAVAILABLE) => {
            let why = stderr
                .lines()
                .rev()
                .find(|l| l.starts_with("toolgate: cannot build"))
                .unwrap_or("the build script exited 3 without saying why");
            if std::env::var_os("TOOLGATE_REQUIRE_OTHER_LANGUAGES").is_some() {
                panic!("TOOLGATE_REQUIRE_OTHER_LANGUAGES is set, but: {why}\n{stderr}");
            }
            eprintln!("SKIPPED: the {language} plugin `{plugin}` is not tested: {why}");
            None
        }
        _ => panic!(
            "plugins/build-other-languages.sh --only {language} failed ({}):\n{}\n{stderr}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        ),
    }
}

async fn upload(server: &Server, name: &str, path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let response = server
        .send(
            server
                .client
                .put(server.url(&format!("/v1/plugins/{name}")))
                .bearer_auth(&server.admin)
                .header("content-type", "application/wasm")
                .timeout(UPLOAD_TIMEOUT)
                .body(bytes),
        )
        .await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "uploading {name}: {body}");
}

/// Runs `tool` on `input` in `session` and gives back the finished task.
async fn run(server: &Server, key: &str, session: &str, tool: &str, input: Value) -> Value {
    let response = server
        .post(
            key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": tool, "input": input}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{tool}");
    response.json().await.unwrap()
}

/// Asserts that `task` completed and gives back its output.
fn completed(task: &Value) -> &Value {
    assert_eq!(task["state"], "completed", "{task}");
    &task["output"]
}

/// Asserts that `task` failed as the tool's own `invalid-input` (the component ran, no
/// trap) with a message containing `says`.
fn refused_by_the_tool(task: &Value, says: &str) {
    assert_eq!(task["state"], "failed", "{task}");
    assert_eq!(task["error"]["kind"], "invalid_input", "{task}");
    let message = task["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
    assert!(!message.contains("trap"), "{message}");
    assert!(
        task["usage"]["fuel_consumed"].as_u64().unwrap() > 0,
        "the component itself said so: {task}"
    );
}

/// Asserts that `tools` lists `name` with an input schema of draft 2020-12 that requires
/// `required` and allows only `properties`.
fn listed(tools: &Value, name: &str, required: &[&str], properties: &[&str]) {
    let tool = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in {tools}"));
    assert!(!tool["description"].as_str().unwrap().is_empty(), "{tool}");
    let schema = &tool["input_schema"];
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{tool}"
    );
    assert_eq!(schema["type"], "object", "{tool}");
    assert_eq!(schema["required"], json!(required), "{tool}");
    assert_eq!(schema["additionalProperties"], false, "{tool}");
    let mut keys: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = properties.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{tool}");
}

/// The `tool.log` messages and `tool.progress` reports `(done, total, message)` of `task`.
fn tool_events(events: &[SseEvent], task: &Value) -> (Vec<String>, Vec<(u64, u64, Value)>) {
    let id = &task["id"];
    let mine = || events.iter().filter(move |e| &e.data["task"] == id);
    let logs = mine()
        .filter(|e| e.name == "tool.log")
        .map(|e| e.data["message"].as_str().unwrap().to_owned())
        .collect();
    let progress = mine()
        .filter(|e| e.name == "tool.progress")
        .map(|e| {
            (
                e.data["done"].as_u64().unwrap(),
                e.data["total"].as_u64().unwrap(),
                e.data["message"].clone(),
            )
        })
        .collect();
    (logs, progress)
}

#[tokio::test]
async fn python_and_javascript_plugins_run_through_the_server() {
    let textstats = build("python", "textstats");
    let slugify = build("js", "slugify");
    if textstats.is_none() && slugify.is_none() {
        eprintln!("SKIPPED: no plugin in another language could be built (see above)");
        return;
    }

    // The test server's own policy set (a copy of the shipped one), plus the permit.
    let server = Server::start_with(|config| {
        let policies = config
            .policies
            .clone()
            .expect("the test server has its own policy directory");
        std::fs::write(policies.join("other-languages.cedar"), PERMIT).unwrap();
    })
    .await;
    // One after the other: each upload compiles its component (two cores at most).
    for (name, path) in [("textstats", &textstats), ("slugify", &slugify)] {
        if let Some(path) = path {
            upload(&server, name, path).await;
        }
    }
    let key = server.key("lena", "developer");
    let session = server.session(&key).await;

    // Every tool is listed with its real JSON Schema.
    let tools: Value = server.get(&key, "/v1/tools").await.json().await.unwrap();
    if textstats.is_some() {
        listed(&tools, "textstats.count", &["text"], &["text", "top"]);
        listed(
            &tools,
            "textstats.search",
            &["text", "pattern"],
            &["text", "pattern", "ignore_case", "max_matches"],
        );
    }
    if slugify.is_some() {
        listed(
            &tools,
            "slugify.make",
            &["text"],
            &["text", "separator", "max_length"],
        );
    }

    // The tasks whose events are checked below, and the text `textstats.count` read.
    let mut tasks = Vec::new();
    let text = "The cat and the dog.\nThe END, the end!\nnaïve café, don't stop";
    if textstats.is_some() {
        let count = run(
            &server,
            &key,
            &session,
            "textstats.count",
            json!({"text": text, "top": 3}),
        )
        .await;
        let output = completed(&count);
        assert_eq!(output["lines"], 3, "{output}");
        assert_eq!(output["words"], 13, "{output}");
        assert_eq!(output["characters"], text.chars().count(), "{output}");
        assert_eq!(
            output["top_words"],
            json!([
                {"word": "the", "count": 4},
                {"word": "end", "count": 2},
                {"word": "and", "count": 1},
            ]),
            "{output}"
        );
        tasks.push(count);

        let search = run(
            &server,
            &key,
            &session,
            "textstats.search",
            json!({"text": "alpha\nBeta\ngamma beta", "pattern": "beta", "ignore_case": true}),
        )
        .await;
        assert_eq!(
            completed(&search)["matches"],
            json!([{"line": 2, "text": "Beta"}, {"line": 3, "text": "gamma beta"}]),
            "{search}"
        );

        // A pattern the schema lets through but Python cannot compile: the tool says what
        // is wrong (a caught exception, not a trap).
        let bad = run(
            &server,
            &key,
            &session,
            "textstats.search",
            json!({"text": "x", "pattern": "(unclosed"}),
        )
        .await;
        refused_by_the_tool(&bad, "`pattern` is not a valid regular expression");
    }

    if slugify.is_some() {
        let make = run(
            &server,
            &key,
            &session,
            "slugify.make",
            json!({"text": "Grüße, Welt! Ærøskøbing & Đà Nẵng"}),
        )
        .await;
        assert_eq!(
            completed(&make)["slug"],
            "grusse-welt-aeroskobing-and-da-nang",
            "{make}"
        );
        tasks.push(make);

        let short = run(
            &server,
            &key,
            &session,
            "slugify.make",
            json!({"text": "One two three four", "separator": "_", "max_length": 9}),
        )
        .await;
        assert_eq!(completed(&short)["slug"], "one_two", "{short}");

        // Checked by the tool: a separator a URL would escape, a text with nothing to keep.
        let bad = run(
            &server,
            &key,
            &session,
            "slugify.make",
            json!({"text": "a b", "separator": "x"}),
        )
        .await;
        refused_by_the_tool(&bad, "`separator` must be one of - _ . ~");
        let empty = run(
            &server,
            &key,
            &session,
            "slugify.make",
            json!({"text": "!!! ???"}),
        )
        .await;
        refused_by_the_tool(&empty, "no letters or digits");

        // Checked by the host against the plugin's schema: the component never runs.
        let long = run(
            &server,
            &key,
            &session,
            "slugify.make",
            json!({"text": "a", "separator": "--"}),
        )
        .await;
        assert_eq!(long["error"]["kind"], "invalid_input", "{long}");
        assert_eq!(long["error"]["path"], "/separator", "{long}");
        assert_eq!(long["usage"]["fuel_consumed"], 0, "{long}");
    }

    // The tools' log records and progress reports are events of the session. Tasks answer
    // when they have ended, so the stream is read up to the end of the last one checked.
    let last = tasks.last().unwrap().clone();
    let stream = server
        .get(&key, &format!("/v1/sessions/{session}/events?after=0"))
        .await;
    assert_eq!(stream.status(), StatusCode::OK);
    let events = read_events(stream, |e| {
        e.data["task"] == last["id"] && (e.name == "task.completed" || e.name == "task.failed")
    })
    .await;
    for task in &tasks {
        let (logs, progress) = tool_events(&events, task);
        match task["tool"].as_str() {
            Some("textstats.count") => {
                let counting = format!("counting {} characters in 3 lines", text.chars().count());
                assert_eq!(logs, [counting], "{events:?}");
                assert_eq!(progress, [(3, 3, json!("counted 13 words"))], "{events:?}");
            }
            Some("slugify.make") => {
                assert_eq!(logs, ["slugifying 33 UTF-16 units"], "{events:?}");
                assert_eq!(
                    progress,
                    [
                        (1, 3, json!("lowercased")),
                        (2, 3, json!("accents removed")),
                        (3, 3, Value::Null),
                    ],
                    "{events:?}"
                );
            }
            other => panic!("unexpected task {other:?}: {task}"),
        }
    }
    server.stop().await;
}
