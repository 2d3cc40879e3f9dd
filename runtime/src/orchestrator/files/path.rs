//! A path inside a workspace, as a client or an archive names it: plain names only.

use super::FilesError;
use std::path::{Component, Path, PathBuf};

/// Names below the workspace root, at most (each is an open directory while merging).
pub(super) const MAX_DEPTH: usize = crate::confined::MAX_DEPTH;

/// A relative path of plain names: no `..`, no root, no empty or NUL names (`.` names and
/// repeated slashes are dropped, so `./a//b` is `a/b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspacePath(PathBuf);

impl WorkspacePath {
    /// Checks `raw`; `None` (not an error) for a path that names the root itself (`.`, `./`).
    pub fn parse(raw: &Path) -> Result<Option<Self>, FilesError> {
        let shown = raw.display().to_string();
        let invalid = |why: &str| FilesError::InvalidPath(format!("`{shown}` {why}"));
        if raw.as_os_str().is_empty() {
            return Err(invalid("is empty"));
        }
        if std::os::unix::ffi::OsStrExt::as_bytes(raw.as_os_str()).contains(&0) {
            return Err(invalid("contains a NUL byte"));
        }
        let mut clean = PathBuf::new();
        for component in raw.components() {
            match component {
                Component::Normal(name) => clean.push(name),
                Component::CurDir => {}
                Component::ParentDir => return Err(invalid("leaves its directory (`..`)")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(invalid("is absolute; paths are relative to the workspace"));
                }
            }
        }
        if clean.components().count() > MAX_DEPTH {
            return Err(invalid(&format!("is deeper than {MAX_DEPTH} directories")));
        }
        Ok((!clean.as_os_str().is_empty()).then_some(Self(clean)))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The directories above the last name, and the last name.
    pub fn split(&self) -> (Option<&Path>, &std::ffi::OsStr) {
        let parent = self.0.parent().filter(|p| !p.as_os_str().is_empty());
        (
            parent,
            self.0.file_name().expect("a parsed path has a last name"),
        )
    }

    /// Where the link target `target` of an entry at this path points, if it stays in the
    /// workspace (checked by its names alone: the target is never resolved).
    pub fn link_stays_inside(&self, target: &Path) -> bool {
        if target.has_root() {
            return false;
        }
        let mut depth = self.0.components().count().saturating_sub(1) as isize;
        for component in target.components() {
            match component {
                Component::Normal(_) => depth += 1,
                Component::CurDir => {}
                Component::ParentDir => {
                    depth -= 1;
                    if depth < 0 {
                        return false;
                    }
                }
                Component::RootDir | Component::Prefix(_) => return false,
            }
        }
        true
    }

    pub fn display(&self) -> String {
        self.0.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<String>, FilesError> {
        WorkspacePath::parse(Path::new(raw)).map(|p| p.map(|p| p.display()))
    }

    #[test]
    fn only_plain_relative_names_are_paths() {
        assert_eq!(parse("a/b.txt").unwrap(), Some("a/b.txt".into()));
        assert_eq!(parse("./a//b/").unwrap(), Some("a/b".into()));
        assert_eq!(parse("./").unwrap(), None);
        for bad in ["", "../x", "a/../../x", "a/..", "/etc/passwd", "a\0b"] {
            assert!(
                matches!(parse(bad), Err(FilesError::InvalidPath(_))),
                "{bad:?}"
            );
        }
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn links_must_stay_inside() {
        let at = |p: &str| WorkspacePath::parse(Path::new(p)).unwrap().unwrap();
        assert!(at("a/link").link_stays_inside(Path::new("b/c")));
        assert!(at("a/link").link_stays_inside(Path::new("../top.txt")));
        assert!(!at("a/link").link_stays_inside(Path::new("../../out")));
        assert!(!at("link").link_stays_inside(Path::new("/etc/passwd")));
        assert!(!at("a/link").link_stays_inside(Path::new("x/../../../out")));
    }
}
