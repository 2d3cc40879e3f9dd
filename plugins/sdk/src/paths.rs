//! Resolving the paths an agent writes to guest paths inside the grants.
//!
//! A relative path is taken against the working directory the host gave the
//! component (`wasi:cli/environment.initial-cwd`, "/" if none), and `.`/`..`
//! are resolved lexically, so `../../etc` cannot climb out of a grant
//! before the host even sees it. The result must lie inside one preopened
//! directory; the host still enforces the real boundary (symlinks included),
//! this check only gives the agent a clear `denied` message early.

use crate::ToolError;

/// Resolves `path` for this component instance.
pub fn resolve(path: &str) -> Result<String, ToolError> {
    let cwd = cwd();
    let roots: Vec<String> = wasi::filesystem::preopens::get_directories()
        .into_iter()
        .map(|(_descriptor, name)| normalize(&cwd, &name))
        .collect();
    resolve_in(path, &cwd, &roots)
}

/// The working directory the host gave the component.
pub fn cwd() -> String {
    wasi::cli::environment::initial_cwd().unwrap_or_else(|| "/".to_string())
}

/// [`resolve`] with the environment passed in (testable anywhere).
pub fn resolve_in(path: &str, cwd: &str, roots: &[String]) -> Result<String, ToolError> {
    if path.is_empty() {
        return Err(ToolError::InvalidInput("path must not be empty".into()));
    }
    if path.contains('\0') {
        return Err(ToolError::InvalidInput("path must not contain NUL".into()));
    }
    let full = normalize(cwd, path);
    if roots.iter().any(|root| is_inside(&full, root)) {
        Ok(full)
    } else if full == path {
        Err(ToolError::Denied(format!(
            "path {path} is outside the granted directories"
        )))
    } else {
        Err(ToolError::Denied(format!(
            "path {path} ({full}) is outside the granted directories"
        )))
    }
}

/// Joins `path` to `base` (unless absolute) and resolves `.` and `..`
/// lexically; the result is absolute and has no trailing slash.
pub fn normalize(base: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let start = if path.starts_with('/') { "" } else { base };
    for part in start.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether normalised `path` is `root` or below it (component-wise).
pub fn is_inside(path: &str, root: &str) -> bool {
    root == "/"
        || path == root
        || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

/// How to show `rel` (a path below the directory the agent named as `base`)
/// so that the agent can pass it straight back to another tool.
pub fn display(base: &str, rel: &str) -> String {
    match base.trim_end_matches('/') {
        "" if base.starts_with('/') => format!("/{rel}"),
        "" | "." => rel.to_string(),
        base => format!("{base}/{rel}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Vec<String> {
        vec!["/work".to_string(), "/data/ro".to_string()]
    }

    #[test]
    fn normalises_lexically() {
        assert_eq!(normalize("/work/a", "b/../c/./d"), "/work/a/c/d");
        assert_eq!(normalize("/work", "../../.."), "/");
        assert_eq!(normalize("/work", "/etc//passwd/"), "/etc/passwd");
        assert_eq!(normalize("/", "."), "/");
    }

    #[test]
    fn relative_paths_use_the_cwd() {
        assert_eq!(
            resolve_in("src/x.rs", "/work", &roots()).unwrap(),
            "/work/src/x.rs"
        );
        assert_eq!(resolve_in(".", "/work", &roots()).unwrap(), "/work");
    }

    #[test]
    fn escapes_are_denied() {
        let err = resolve_in("../etc/passwd", "/work", &roots()).unwrap_err();
        assert_eq!(
            err,
            ToolError::Denied(
                "path ../etc/passwd (/etc/passwd) is outside the granted directories".into()
            )
        );
        let err = resolve_in("/etc/passwd", "/work", &roots()).unwrap_err();
        assert!(
            matches!(err, ToolError::Denied(m) if m == "path /etc/passwd is outside the granted directories")
        );
        // A sibling that merely shares a prefix is outside.
        assert!(resolve_in("/workshop", "/", &roots()).is_err());
        assert!(resolve_in("/data/ro/x", "/", &roots()).is_ok());
        assert!(resolve_in("x", "/", &[]).is_err());
    }

    #[test]
    fn root_grant_contains_everything() {
        assert!(resolve_in("/etc", "/", &["/".to_string()]).is_ok());
    }

    #[test]
    fn display_keeps_the_agents_base() {
        assert_eq!(display(".", "a/b"), "a/b");
        assert_eq!(display("./", "a"), "a");
        assert_eq!(display("src/", "a"), "src/a");
        assert_eq!(display("/", "a"), "/a");
        assert_eq!(display("/work", "a"), "/work/a");
    }
}
