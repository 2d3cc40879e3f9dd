//! `toolgate policy validate | explain | fmt` as an operator runs them: every problem with
//! its cause and place, contexts from the command line, a file or stdin, and the format of
//! the official `cedar format -l 100 -i 4`.

use crate::common::repo_policies;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn toolgate(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run toolgate");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// The shipped policy directory, copied, with `edit` applied.
fn shipped_copy(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["schema.cedarschema", "entities.json", "profiles.cedar"] {
        std::fs::copy(repo_policies().join(file), dir.path().join(file)).unwrap();
    }
    edit(dir.path());
    dir
}

fn validate(dir: &Path) -> (i32, String) {
    let out = toolgate(&["policy", "validate", dir.to_str().unwrap()], None);
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_names_the_entity_and_attribute_of_bad_entities_with_their_place() {
    let dir = shipped_copy(|dir| {
        let entities = r#"[
  { "uid": { "type": "Profile", "id": "readonly" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "Profile", "id": "developer" }, "attrs": { "colour": "red" },
    "parents": [{ "type": "Profile", "id": "readonly" }] },
  { "uid": { "type": "ToolGroup", "id": "network" }, "attrs": {},
    "parents": [{ "type": "Nope", "id": "x" }] }
]"#;
        std::fs::write(dir.join("entities.json"), entities).unwrap();
    });
    let (code, stderr) = validate(dir.path());
    assert_eq!(code, 1, "{stderr}");
    let file = dir.path().join("entities.json").display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    let colour = lines
        .iter()
        .find(|l| l.contains("colour"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        colour.starts_with(&format!("{file}:3:3: entity Profile::\"developer\"")),
        "{colour}"
    );
    let parent = lines
        .iter()
        .find(|l| l.contains("Nope"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        parent.starts_with(&format!("{file}:5:3: entity ToolGroup::\"network\"")),
        "{parent}"
    );
    assert!(stderr.contains("invalid: 2 problem(s)"), "{stderr}");
}

#[test]
fn validate_locates_bad_annotations_and_duplicate_ids_by_line_and_column() {
    let policies = r#"@id("dup")
permit (principal, action == Action::"use_model", resource);

@id("bad.fuel")
  @fuel("abc")
permit (principal, action == Action::"invoke", resource);

@id("dup")
permit (principal, action == Action::"use_model", resource);

@id("limits.on.forbid")
@memory_mb("64")
forbid (principal, action == Action::"invoke", resource);
"#;
    let dir = shipped_copy(|dir| std::fs::write(dir.join("extra.cedar"), policies).unwrap());
    let (code, stderr) = validate(dir.path());
    assert_eq!(code, 1, "{stderr}");
    let file = dir.path().join("extra.cedar").display().to_string();
    for expected in [
        format!("{file}:5:3: policy `bad.fuel`: @fuel(\"abc\") must be a positive whole number"),
        format!("{file}:8:1: policy `dup`: policy id `dup` is also used at {file}:1:1"),
        format!("{file}:12:1: policy `limits.on.forbid`: limit annotations"),
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(&expected)),
            "no line starting with {expected}:\n{stderr}"
        );
    }
    assert!(stderr.contains("invalid: 3 problem(s)"), "{stderr}");
}

const INVOKE_CONTEXT: &str = r#"{
  "session": "s_1",
  "profile": { "__entity": { "type": "Profile", "id": "developer" } },
  "resources": { "cpu_millis": 1000, "memory_mb": 128, "disk_mb": 512, "timeout_ms": 10000 },
  "input": { "path": "notes.txt" }
}"#;

fn explain(context: &str, stdin: Option<&str>) -> Output {
    let policies = repo_policies();
    toolgate(
        &[
            "policy",
            "explain",
            "--policies",
            policies.to_str().unwrap(),
            "--principal",
            "local",
            "--action",
            "invoke",
            "--resource",
            "Tool::\"fs.read\"",
            "--context",
            context,
        ],
        stdin,
    )
}

#[test]
fn explain_takes_the_context_as_json_a_file_or_stdin_and_refuses_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("context.json");
    std::fs::write(&file, INVOKE_CONTEXT).unwrap();
    let at_file = format!("@{}", file.display());
    for (context, stdin) in [
        (INVOKE_CONTEXT, None),
        (at_file.as_str(), None),
        ("-", Some(INVOKE_CONTEXT)),
    ] {
        let out = explain(context, stdin);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{context}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["decision"], "allow");
        assert_eq!(
            report["reasons"],
            serde_json::json!(["readonly.read-tools"])
        );
    }

    // A context the action does not take is a usage error naming what is wrong, not a deny.
    let out = explain(r#"{"session": "s_1"}"#, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a context of `invoke`"), "{stderr}");
    for (bad, says) in [
        ("{not json", "is not JSON"),
        ("[1]", "must be a JSON object"),
        (
            "@/no/such/context.json",
            "reading --context from /no/such/context.json",
        ),
    ] {
        let out = explain(bad, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains(says), "{bad}: {stderr}");
    }
}

/// What `cedar format -l 100 -i 4` (cedar-policy-cli 4.14) writes for [`UNFORMATTED`].
const FORMATTED: &str = r#"// a comment
@id("x.one")
@fuel("100")
permit (
    principal in Profile::"developer",
    action == Action::"invoke",
    resource in ToolGroup::"workspace-read"
)
when
{
    context.input has path &&
    context.input.path like "src/*" &&
    context.resources.memory_mb <= 256 &&
    principal in context.profile
};

@id("x.two")
forbid (
    principal,
    action == Action::"connect",
    resource
)
unless { resource in DomainList::"networked" };
"#;

const UNFORMATTED: &str = r#"// a comment
@id("x.one")   @fuel("100")
permit(principal in Profile::"developer",action==Action::"invoke",resource in ToolGroup::"workspace-read") when {context.input has path && context.input.path like "src/*" && context.resources.memory_mb <= 256 && principal in context.profile};
@id("x.two")
forbid (principal, action == Action::"connect", resource) unless { resource in DomainList::"networked" };
"#;

#[test]
fn fmt_writes_what_cedar_format_with_width_100_and_indent_4_writes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("messy.cedar");
    std::fs::write(&file, UNFORMATTED).unwrap();
    let path = dir.path().to_str().unwrap();
    let check = toolgate(&["policy", "fmt", "--check", path], None);
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        UNFORMATTED,
        "--check changes nothing"
    );
    let out = toolgate(&["policy", "fmt", path], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), FORMATTED);
    let again = toolgate(&["policy", "fmt", "--check", path], None);
    assert_eq!(again.status.code(), Some(0));
    // The shipped policies are in that form.
    let shipped = toolgate(
        &[
            "policy",
            "fmt",
            "--check",
            repo_policies().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(
        shipped.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&shipped.stdout)
    );
}
