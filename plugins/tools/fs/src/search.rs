//! `search`: lines matching a regular expression, in one file or a tree.

use crate::glob;
use crate::walk::{self, Flow, Kind};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use serde_json::{Value, json};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::Path;
use toolgate_plugin_sdk::{self as sdk, Tool, ToolError, ToolResult, paths};

const DEFAULT_MAX_MATCHES: usize = 200;
/// Longer matching lines are cut (on a character boundary) in the result.
const MAX_LINE_CHARS: usize = 500;

pub const TOOL: Tool = Tool {
    name: "search",
    description: "Search files for lines matching a regular expression (Rust regex syntax), \
                  recursively from a directory; skips binary files and .git directories. \
                  Returns each match's path, 1-based line number and text.",
    schema,
    run,
};

fn schema() -> Value {
    sdk::object_schema(
        json!({
            "pattern": {"type": "string", "description": "Regular expression (Rust regex crate syntax), matched against each line."},
            "path": {"type": "string", "description": "File or directory to search, absolute or relative to the working directory (default \".\")."},
            "case_insensitive": {"type": "boolean", "description": "Ignore case (default false)."},
            "max_matches": {"type": "integer", "minimum": 0, "description": "Stop after this many matches and set truncated (default 200)."},
            "include": {"type": "string", "description": "Only search files whose name matches this glob (* and ?), for example \"*.rs\"."}
        }),
        &["pattern"],
    )
}

fn dot() -> String {
    ".".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    pattern: String,
    #[serde(default = "dot")]
    path: String,
    #[serde(default)]
    case_insensitive: bool,
    max_matches: Option<usize>,
    include: Option<String>,
}

struct Search {
    regex: Regex,
    max: usize,
    matches: Vec<Value>,
    files_scanned: u64,
    truncated: bool,
}

fn run(input: &str) -> ToolResult {
    let input: Input = sdk::parse_input(input)?;
    let regex = RegexBuilder::new(&input.pattern)
        .case_insensitive(input.case_insensitive)
        .build()
        .map_err(|e| ToolError::InvalidInput(format!("invalid pattern: {e}")))?;
    let full = paths::resolve(&input.path)?;
    let err = |e: std::io::Error| sdk::io::error(&input.path, &e);
    let mut s = Search {
        regex,
        max: input.max_matches.unwrap_or(DEFAULT_MAX_MATCHES),
        matches: Vec::new(),
        files_scanned: 0,
        truncated: false,
    };

    if fs::metadata(&full).map_err(err)?.is_file() {
        // A file named explicitly is searched whatever `include` says.
        s.scan(Path::new(&full), &input.path);
    } else {
        walk::walk(Path::new(&full), true, &mut |e| match e.kind {
            Kind::Dir if e.full.file_name().is_some_and(|n| n == ".git") => Flow::Skip,
            Kind::File => {
                let name = e
                    .full
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                if input
                    .include
                    .as_deref()
                    .is_none_or(|g| glob::matches(g, &name))
                {
                    s.scan(e.full, &paths::display(&input.path, e.rel));
                }
                if s.truncated {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            }
            _ => Flow::Continue,
        })
        .map_err(err)?;
    }

    sdk::output(&json!({
        "matches": s.matches,
        "files_scanned": s.files_scanned,
        "truncated": s.truncated,
    }))
}

impl Search {
    /// Scans one file line by line (streaming, so big files cost no memory).
    /// Unreadable and binary (NUL in the first block) files are skipped.
    fn scan(&mut self, full: &Path, shown: &str) {
        let Ok(file) = File::open(full) else { return };
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        match reader.fill_buf() {
            Ok(head) if !head.contains(&0) => {}
            _ => return,
        }
        self.files_scanned += 1;
        let mut buf = Vec::new();
        let mut number = 0u64;
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => number += 1,
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            if !self.regex.is_match(line) {
                continue;
            }
            if self.matches.len() >= self.max {
                self.truncated = true;
                return;
            }
            let text: String = line.chars().take(MAX_LINE_CHARS).collect();
            self.matches
                .push(json!({ "path": shown, "line": number, "text": text }));
        }
    }
}
