//! `patch`: apply a unified diff (one or more files) atomically in memory.
//!
//! Every file's hunks are applied to in-memory copies first; only when all
//! of them apply is anything written, so a bad hunk leaves no file changed.

use crate::split::{recount, split};
use diffy::Patch;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use toolgate_plugin_sdk::{self as sdk, Tool, ToolError, ToolResult, paths};

pub const TOOL: Tool = Tool {
    name: "patch",
    description: "Apply a unified diff (as produced by diff -u or git diff) to one or more files. \
                  Handles /dev/null for creating and deleting files. If any hunk does not apply, \
                  no file is changed.",
    schema,
    run,
};

fn schema() -> Value {
    sdk::object_schema(
        json!({
            "diff": {"type": "string", "description": "Unified diff text with --- a/path and +++ b/path headers and @@ hunks; several files may follow each other."},
            "path": {"type": "string", "description": "For a diff of a single file: the file to patch (overrides its headers, needed when it has none)."}
        }),
        &["diff"],
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    diff: String,
    path: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Modified,
    Created,
    Deleted,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Modified => "modified",
            Action::Created => "created",
            Action::Deleted => "deleted",
        }
    }
}

/// A file as the patch leaves it; `None` means absent.
struct Pending {
    shown: String,
    content: Option<String>,
}

fn run(input: &str) -> ToolResult {
    let input: Input = sdk::parse_input(input)?;
    let mut diff = input.diff;
    // A diff pasted without its final newline would not match the file's last line.
    if !diff.ends_with('\n') {
        diff.push('\n');
    }
    let sections = split(&diff);
    if sections.len() > 1 && input.path.is_some() {
        return Err(ToolError::InvalidInput(
            "path can only be given for a diff of a single file".into(),
        ));
    }

    // Full guest path -> its state; insertion order kept for writing.
    let mut files: BTreeMap<String, Pending> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut report = Vec::new();

    let many = sections.len() > 1;
    let recounted: Vec<String> = sections.iter().map(|s| recount(s)).collect();
    for (n, section) in sections.iter().enumerate() {
        let patch = match Patch::from_str(section) {
            Ok(patch) => patch,
            // Retry with the hunk counts recomputed; report the first error.
            Err(first) => Patch::from_str(&recounted[n]).map_err(|_| {
                let which = if many {
                    format!(" (file #{})", n + 1)
                } else {
                    String::new()
                };
                ToolError::InvalidInput(format!("cannot parse the diff{which}: {first}"))
            })?,
        };
        if patch.hunks().is_empty() {
            return Err(ToolError::InvalidInput(
                "the diff has a file with no hunks".into(),
            ));
        }
        let (shown, action) = target(&patch, input.path.as_deref())?;
        let full = paths::resolve(&shown)?;
        if !files.contains_key(&full) {
            let content = load(&full, &shown)?;
            files.insert(
                full.clone(),
                Pending {
                    shown: shown.clone(),
                    content,
                },
            );
            order.push(full.clone());
        }
        let file = files.get_mut(&full).expect("inserted above");
        file.content = apply(&patch, action, file.content.take(), &shown)?;
        report.push(
            json!({ "path": shown, "action": action.as_str(), "hunks": patch.hunks().len() }),
        );
    }

    for full in &order {
        let file = &files[full];
        let err = |e: std::io::Error| sdk::io::error(&file.shown, &e);
        match &file.content {
            Some(text) => {
                if let Some(parent) = Path::new(full).parent() {
                    fs::create_dir_all(parent).map_err(err)?;
                }
                fs::write(full, text).map_err(err)?
            }
            None => fs::remove_file(full).map_err(err)?,
        }
    }
    sdk::output(&json!({ "files": report }))
}

/// Which file a section patches, as the agent would name it, and how.
fn target(patch: &Patch<'_, str>, path: Option<&str>) -> Result<(String, Action), ToolError> {
    let old = patch.original().map(|p| strip(p, "a/"));
    let new = patch.modified().map(|p| strip(p, "b/"));
    let (named, action) = match (old, new) {
        (Some("/dev/null"), Some("/dev/null")) => {
            return Err(ToolError::InvalidInput(
                "a diff header names /dev/null twice".into(),
            ));
        }
        (Some("/dev/null"), new) => (new, Action::Created),
        (old, Some("/dev/null")) => (old, Action::Deleted),
        (old, new) => (new.or(old), Action::Modified),
    };
    match path.or(named) {
        Some(p) if !p.trim().is_empty() => Ok((p.to_string(), action)),
        _ => Err(ToolError::InvalidInput(
            "the diff has no usable ---/+++ file header; pass path".into(),
        )),
    }
}

/// Drops git's `a/` / `b/` prefix.
fn strip<'a>(name: &'a str, prefix: &str) -> &'a str {
    name.strip_prefix(prefix).unwrap_or(name)
}

fn load(full: &str, shown: &str) -> Result<Option<String>, ToolError> {
    match fs::read(full) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ToolError::Failed(format!("{shown} is not a UTF-8 text file"))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(sdk::io::error(shown, &e)),
    }
}

fn apply(
    patch: &Patch<'_, str>,
    action: Action,
    current: Option<String>,
    shown: &str,
) -> Result<Option<String>, ToolError> {
    let base = match (action, current) {
        (Action::Created, Some(_)) => {
            return Err(ToolError::Failed(format!(
                "{shown} already exists, the diff creates it; no file was changed"
            )));
        }
        (Action::Created, None) => String::new(),
        (_, None) => {
            return Err(ToolError::Failed(format!(
                "{shown} not found; no file was changed"
            )));
        }
        (_, Some(text)) => text,
    };
    let result = diffy::apply(&base, patch).map_err(|e| {
        // diffy says "error applying hunk #N".
        ToolError::Failed(format!(
            "{shown}: {e}, its context does not match the file; no file was changed"
        ))
    })?;
    match action {
        Action::Deleted if !result.is_empty() => Err(ToolError::Failed(format!(
            "{shown}: the diff deletes the file but does not remove all of its lines; no file was changed"
        ))),
        Action::Deleted => Ok(None),
        _ => Ok(Some(result)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(diff: &str) -> Patch<'_, str> {
        Patch::from_str(diff).unwrap()
    }

    #[test]
    fn headers_pick_the_target_and_action() {
        let p = parse("--- a/src/x.rs\n+++ b/src/x.rs\n@@ -1 +1 @@\n-a\n+b\n");
        let (path, action) = target(&p, None).unwrap();
        assert_eq!((path.as_str(), action.as_str()), ("src/x.rs", "modified"));
        let p = parse("--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+x\n");
        assert_eq!(target(&p, None).unwrap().1.as_str(), "created");
        let p = parse("--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n");
        let (path, action) = target(&p, None).unwrap();
        assert_eq!((path.as_str(), action.as_str()), ("old.txt", "deleted"));
        let p = parse("@@ -1 +1 @@\n-a\n+b\n");
        assert!(matches!(target(&p, None), Err(ToolError::InvalidInput(_))));
        assert_eq!(target(&p, Some("given.txt")).unwrap().0, "given.txt");
    }

    #[test]
    fn apply_modifies_creates_and_deletes() {
        let p = parse("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n");
        let out = apply(&p, Action::Modified, Some("a\nb\n".into()), "x").unwrap();
        assert_eq!(out.as_deref(), Some("a\nc\n"));
        let p = parse("--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+new\n");
        assert_eq!(
            apply(&p, Action::Created, None, "x").unwrap().as_deref(),
            Some("new\n")
        );
        assert!(apply(&p, Action::Created, Some(String::new()), "x").is_err());
        let p = parse("--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n");
        assert_eq!(
            apply(&p, Action::Deleted, Some("gone\n".into()), "x").unwrap(),
            None
        );
        assert!(apply(&p, Action::Deleted, Some("gone\nkept\n".into()), "x").is_err());
    }

    #[test]
    fn a_hunk_that_does_not_apply_names_file_and_hunk() {
        let p = parse("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-nope\n+yes\n");
        let err = apply(&p, Action::Modified, Some("other\n".into()), "x").unwrap_err();
        assert!(
            matches!(&err, ToolError::Failed(m) if m.starts_with("x: error applying hunk #1")),
            "{err:?}"
        );
    }
}
